/**
 * Temporary files for listen-mode tests: trivial back-end scripts, the
 * fakeauth ledger and account file, self-signed certificates. Everything
 * lives in one temp directory that `dispose` removes.
 *
 * @module
 */

/** The fake checkpassword/setpassword program that keeps a ledger. */
export const FAKEAUTH =
  new URL("./fixtures/fakeauth", import.meta.url).pathname;

/**
 * Trivial back ends: they read fd 3 and exit at once. `rule` rejects user
 * names that start with `bad`; `ok` accepts everything; `slow` sleeps 1 s.
 */
const SCRIPTS = {
  ok: "cat <&3 >/dev/null\nexit 0\n",
  rule:
    'u=$(head -c 3 <&3)\ncat <&3 >/dev/null\n[ "$u" = bad ] && exit 1\nexit 0\n',
  slow: "cat <&3 >/dev/null\nsleep 1\nexit 0\n",
  env: 'cat <&3 >/dev/null\nenv >>"$ENV_LOG"\nexit 0\n',
} as const;

/** A temp directory with the back-end scripts written into it. */
export class Scratch {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async create(): Promise<Scratch> {
    const scratch = new Scratch(
      await Deno.makeTempDir({ prefix: "poppass-listen-" }),
    );
    for (const [name, body] of Object.entries(SCRIPTS)) {
      const path = scratch.path(`${name}.sh`);
      await Deno.writeTextFile(path, `#!/bin/sh\n${body}`);
      await Deno.chmod(path, 0o755);
    }
    return scratch;
  }

  /** A path inside the directory. */
  path(name: string): string {
    return `${this.dir}/${name}`;
  }

  /** The path of a trivial back end script. */
  script(name: keyof typeof SCRIPTS): string {
    return this.path(`${name}.sh`);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
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

/** A certificate and its key, as files and PEM text, with its SHA-256 fingerprint. */
export interface Cert {
  readonly certFile: string;
  readonly keyFile: string;
  readonly pem: string;
  /** `AB:CD:…` as `openssl x509 -fingerprint -sha256` prints it. */
  readonly fingerprint: string;
}

/**
 * A self-signed certificate for `localhost`. Deno's TLS client (rustls)
 * ignores the CN when it checks the name, so the SAN is needed, and it
 * refuses a CA certificate as a server's own (`CaUsedAsEndEntity`), so
 * `CA:FALSE` replaces `req -x509`'s default `CA:TRUE`.
 */
export async function makeCert(scratch: Scratch, name: string): Promise<Cert> {
  const certFile = scratch.path(`${name}.crt`);
  const keyFile = scratch.path(`${name}.key`);
  const subject = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1";
  const usage = "basicConstraints=critical,CA:FALSE";
  await run(
    ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
      .concat(["-subj", "/CN=localhost", "-addext", subject, "-addext", usage])
      .concat(["-keyout", keyFile, "-out", certFile]),
  );
  const text = await run([
    "openssl",
    "x509",
    "-noout",
    "-fingerprint",
    "-sha256",
    "-in",
    certFile,
  ]);
  return {
    certFile,
    keyFile,
    pem: await Deno.readTextFile(certFile),
    fingerprint: text.trim().replace(/^.*=/, "").toUpperCase(),
  };
}

/** The SHA-256 fingerprint of the certificate a TLS server presents now. */
export async function servedFingerprint(port: number): Promise<string> {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `timeout 10 openssl s_client -connect 127.0.0.1:${port} -servername localhost </dev/null 2>/dev/null |
       openssl x509 -noout -fingerprint -sha256`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const out = await child.output();
  return new TextDecoder().decode(out.stdout).trim().replace(/^.*=/, "")
    .toUpperCase();
}

/** fakeauth's files inside a scratch directory. */
export interface FakeauthFiles {
  readonly ledger: string;
  readonly accounts: string;
  /** Environment for the server (the children inherit it). */
  readonly env: Record<string, string>;
  /** The checkpassword chain and `PASSWORD_COMMAND` that run fakeauth. */
  readonly check: string[];
  readonly password: string;
}

/** Paths and settings for running fakeauth as both back ends. */
export function fakeauth(
  scratch: Scratch,
  extra: Record<string, string> = {},
): FakeauthFiles {
  const ledger = scratch.path("ledger");
  const accounts = scratch.path("accounts");
  return {
    ledger,
    accounts,
    env: { FAKEAUTH_LEDGER: ledger, FAKEAUTH_ACCOUNTS: accounts, ...extra },
    check: [FAKEAUTH, "check"],
    password: `${FAKEAUTH} set`,
  };
}
