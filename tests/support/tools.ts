/**
 * Outside tools: which ones a test can use (doveadm, openssl, mkpasswd …),
 * so tests that need one are ignored with a clear reason instead of
 * failing, and running one to its end.
 *
 * @module
 */

/** Is `name` an executable file in a folder of PATH? */
export function hasTool(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch { /* not in this folder */ }
  }
  return false;
}

/** Run a program to its end (bounded by its own simplicity); throws on failure. */
export async function run(argv: readonly string[]): Promise<string> {
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `${argv.join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

/** Where a tool is found and which Debian package installs it. */
interface ToolInfo {
  /** Absolute path the tests run, or undefined to look it up on PATH. */
  readonly path?: string;
  /** The Debian package that installs it. */
  readonly pkg: string;
}

/** Every outside tool a test may need, with its Debian package. */
export const TOOLS = {
  tcpserver: { pkg: "ucspi-tcp" },
  recordio: { pkg: "ucspi-tcp" },
  haproxy: { path: "/usr/sbin/haproxy", pkg: "haproxy" },
  nc: { pkg: "netcat-openbsd" },
  "poppass-cgi": { path: "/usr/lib/cgi-bin/poppass", pkg: "poppass-cgi" },
  perl: { pkg: "perl-base" },
  slapd: { path: "/usr/sbin/slapd", pkg: "slapd" },
  ldapadd: { pkg: "ldap-utils" },
  ldapwhoami: { pkg: "ldap-utils" },
  ldapsearch: { pkg: "ldap-utils" },
  doveadm: { pkg: "dovecot-core" },
  mkpasswd: { pkg: "whois" },
  "fail2ban-regex": { pkg: "fail2ban" },
  openssl: { pkg: "openssl" },
  gcc: { pkg: "gcc" },
  cc: { pkg: "gcc" },
  envdir: { pkg: "daemontools" },
  multilog: { pkg: "daemontools" },
  lintian: { pkg: "lintian" },
  python3: { pkg: "python3" },
  psql: { pkg: "postgresql" },
  mariadbd: { path: "/usr/sbin/mariadbd", pkg: "mariadb-server" },
  mariadb: { pkg: "mariadb-client" },
} as const satisfies Record<string, ToolInfo>;

/** A tool name known to {@link TOOLS}. */
export type Tool = keyof typeof TOOLS;

/** Is `tool` installed where the tests look for it? */
export function haveTool(tool: Tool): boolean {
  const info: ToolInfo = TOOLS[tool];
  if (info.path === undefined) return hasTool(tool);
  try {
    return Deno.statSync(info.path).isFile;
  } catch {
    return false;
  }
}

/** The `apt-get install …` line for the packages of `tools` (no repeats). */
export function aptLine(tools: readonly Tool[]): string {
  const pkgs = [...new Set(tools.map((t) => TOOLS[t].pkg))];
  return `apt-get install ${pkgs.join(" ")}`;
}

/** Lines and (file, tool) pairs already said on stderr in this process. */
const said = new Set<string>();

/** Print `line` to stderr once per process. */
function sayOnce(line: string): void {
  if (said.has(line)) return;
  said.add(line);
  console.error(line);
}

/** A test file's path relative to the repository, from its import.meta.url. */
function testPath(url: string): string {
  const root = new URL("../../", import.meta.url).href;
  return url.startsWith(root) ? url.slice(root.length) : url;
}

/**
 * Options for `Deno.test(name, needs(import.meta.url, "tcpserver"), fn)`:
 * `ignore` is true when any of `tools` is missing, and then (once per
 * process and file) stderr gets `skipped: FILE needs TOOLS: apt-get install
 * PKGS`. Use the same call for every test of a file that runs the tools.
 */
export function needs(url: string, ...tools: Tool[]): { ignore: boolean } {
  const missing = tools.filter((t) => !haveTool(t));
  if (missing.length === 0) return { ignore: false };
  const file = testPath(url);
  // Each missing tool is named once per file, however many gates name it.
  const fresh = missing.filter((t) => !said.has(`${file} ${t}`));
  for (const t of fresh) said.add(`${file} ${t}`);
  if (fresh.length > 0) {
    sayOnce(`skipped: ${file} needs ${fresh.join(" ")}: ${aptLine(fresh)}`);
  }
  return { ignore: true };
}

/**
 * Like {@link needs} for a reason that is not a missing tool (not root, a
 * server that cannot start …): `why` undefined means the test runs;
 * otherwise stderr gets `skipped: FILE: WHY` once and the test is ignored.
 */
export function skipUnless(url: string, why: string | undefined): {
  ignore: boolean;
} {
  if (why === undefined) return { ignore: false };
  sayOnce(`skipped: ${testPath(url)}: ${why}`);
  return { ignore: true };
}

/**
 * `Deno.test(name, fn)` under a gate from {@link needs}: `const tcpTest =
 * testWith(needs(import.meta.url, "tcpserver"))`, then `tcpTest(name, fn)`.
 */
export function testWith(
  gate: { ignore: boolean },
): (name: string, fn: (t: Deno.TestContext) => void | Promise<void>) => void {
  return (name, fn) => Deno.test(name, { ignore: gate.ignore }, fn);
}
