/**
 * The bench's dealings with the system: running a command, finding a
 * program, `apt-get install` and `apt-get download` (Debian's poppassd is
 * unpacked, never installed: the package would start inetd on port 106),
 * and the `setpriv` prefix for rows run as nobody.
 *
 * @module
 */

/** The back end without cc: the same rule as bench/c/trivial_backend.c. */
export const SHELL_BACKEND = `#!/bin/sh
old=$(tr '\\0' '\\n' <&3 | sed -n 2p)
[ "$old" = wrong ] && exit 1
exit 0
`;

/**
 * Debian's poppassd: the installed one, else the package downloaded and
 * unpacked into the work directory (installing it would also start inetd
 * on port 106 on every interface).
 */
export async function debianPoppassd(
  work: string,
  note: (text: string) => void,
): Promise<{ debianPoppassd?: string }> {
  const installed = which("poppassd") ?? "/usr/sbin/poppassd";
  if (await Deno.stat(installed).then(() => true, () => false)) {
    return { debianPoppassd: installed };
  }
  const dir = `${work}/debian`;
  try {
    await Deno.mkdir(dir);
    await run("apt-get", ["download", "-q", "poppassd"], dir);
    const deb = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".deb"));
    if (!deb) throw new Error("apt-get download left no .deb");
    await run("dpkg-deb", ["-x", `${dir}/${deb.name}`, `${dir}/root`]);
    note(
      "Debian poppassd: downloaded with apt-get and unpacked, not installed",
    );
    return { debianPoppassd: `${dir}/root/usr/sbin/poppassd` };
  } catch (error) {
    note(`no Debian poppassd: ${(error as Error).message}`);
    return {};
  }
}

/** The `setpriv` prefix that runs a server as nobody, when root, setpriv and nobody exist. */
export function asNobody(
  note: (text: string) => void,
): { asNobody?: string[] } {
  const setpriv = which("setpriv");
  const entry = Deno.readTextFileSync("/etc/passwd").split("\n")
    .find((line) => line.startsWith("nobody:"));
  const [, , uid, gid] = entry?.split(":") ?? [];
  if (!setpriv || !uid || !gid || Deno.uid() !== 0) {
    note(
      "the nobody rows are skipped: they need root, setpriv and a user nobody",
    );
    return {};
  }
  return {
    asNobody: [setpriv, `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups"],
  };
}

/** Install Debian package `pkg` with apt-get (root only), then find `command`. */
export async function aptInstall(
  pkg: string,
  command: string,
  note: (text: string) => void,
): Promise<string | undefined> {
  if (!which("apt-get") || Deno.uid() !== 0) return undefined;
  note(`installing ${pkg} with apt-get`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    run("apt-get", ["install", "-y", "-q", pkg], undefined, 300_000, env);
  await install().catch(async () => {
    await run("apt-get", ["update", "-q"], undefined, 300_000, env)
      .catch(() => {});
    await install().catch((e) => note(`apt-get install failed: ${e.message}`));
  });
  return which(command);
}

/** Run a command to its end; rejects with its last stderr lines on a non-zero exit. */
export async function run(
  program: string,
  args: string[],
  cwd?: string,
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<void> {
  const out = await new Deno.Command(program, {
    args,
    env,
    stdin: "null",
    signal: AbortSignal.timeout(timeoutMs),
    ...(cwd ? { cwd } : {}),
  }).output();
  if (out.success) return;
  const text = new TextDecoder().decode(out.stderr).trim().split("\n");
  throw new Error(`${program} ${args[0]}: exit ${out.code}: ${text.at(-1)}`);
}

/** The executable `name` on PATH, or undefined. */
export function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111)) return `${dir}/${name}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}
