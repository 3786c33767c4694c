/**
 * Real Unix accounts and a PAM service file for the PAM store's tests
 * (root only): `useradd`/`chpasswd` to make them, `/etc/shadow` and
 * crypt(3) through FFI to verify a changed password, `userdel` and removal
 * of the service file afterwards, also when a test fails.
 *
 * @module
 */

/** Is this process root (the tests create accounts and write /etc/pam.d)? */
export const IS_ROOT = Deno.uid() === 0;

/** Why the PAM tests are skipped, or `undefined` when they run. */
export const SKIP_REASON = IS_ROOT
  ? undefined
  : "PAM tests skipped: they create Unix accounts and write /etc/pam.d, so they need root";

/** A PAM stack of pam_unix alone, yescrypt for new hashes. */
export const PAM_UNIX_STACK = [
  "auth     required pam_unix.so",
  "account  required pam_unix.so",
  "password required pam_unix.so obscure yescrypt",
  "",
].join("\n");

/** One account made for a test. */
export interface UnixAccount {
  readonly name: string;
  readonly uid: number;
}

function random(): string {
  return crypto.getRandomValues(new Uint32Array(1))[0]!.toString(16)
    .padStart(8, "0");
}

async function run(argv: string[], stdin?: string): Promise<void> {
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(
      `${argv.join(" ")}: exit ${out.code}: ${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
}

function uidTaken(uid: number): boolean {
  const passwd = Deno.readTextFileSync("/etc/passwd");
  return passwd.split("\n").some((line) => line.split(":")[2] === String(uid));
}

/**
 * Accounts and a service file that are removed on dispose: `add()` makes
 * a user `ppt<random>` with a free uid from 2000 up and sets its password.
 */
export class UnixFixture implements AsyncDisposable {
  readonly accounts: UnixAccount[] = [];
  readonly service = `qmail-poppass-test-${Deno.pid}-${random()}`;
  readonly servicePath = `/etc/pam.d/${this.service}`;

  private constructor() {}

  /** Write `/etc/pam.d/<service>` with `stack`. */
  static async create(stack = PAM_UNIX_STACK): Promise<UnixFixture> {
    const fixture = new UnixFixture();
    await Deno.writeTextFile(fixture.servicePath, stack, { createNew: true });
    return fixture;
  }

  /** Make an account with `password`; `uid` picks a fixed one. */
  async add(password: string, uid?: number): Promise<UnixAccount> {
    let chosen = uid ?? 2000 + Math.floor(Math.random() * 50_000);
    while (uid === undefined && uidTaken(chosen)) chosen++;
    const account = { name: `ppt${random()}`, uid: chosen };
    await run(["useradd", "-M", "-u", String(chosen), account.name]);
    this.accounts.push(account);
    await setPassword(account.name, password);
    return account;
  }

  /** Remove every account and the service file; errors are collected. */
  async [Symbol.asyncDispose](): Promise<void> {
    const errors: unknown[] = [];
    for (const account of this.accounts.splice(0)) {
      await run(["userdel", account.name]).catch((e) => errors.push(e));
    }
    await Deno.remove(this.servicePath).catch((e) => errors.push(e));
    if (errors.length > 0) {
      throw new AggregateError(errors, "cleaning up the Unix fixture failed");
    }
  }
}

/** Set a password the way an administrator does (`chpasswd`). */
export async function setPassword(name: string, password: string) {
  await run(["chpasswd"], `${name}:${password}\n`);
}

/** The password hash of `name` in `/etc/shadow`. */
export async function shadowHash(name: string): Promise<string> {
  const shadow = await Deno.readTextFile("/etc/shadow");
  const line = shadow.split("\n").find((l) => l.startsWith(`${name}:`));
  if (line === undefined) throw new Error(`${name} is not in /etc/shadow`);
  return line.split(":")[1]!;
}

/** Does `password` hash to `hash` by crypt(3) (yescrypt included)? */
export function cryptMatches(password: string, hash: string): boolean {
  const lib = Deno.dlopen("libcrypt.so.1", {
    crypt: { parameters: ["buffer", "buffer"], result: "pointer" },
  });
  try {
    const c = (text: string) => new TextEncoder().encode(text + "\0");
    const out = lib.symbols.crypt(c(password), c(hash));
    return out !== null &&
      Deno.UnsafePointerView.getCString(out) === hash;
  } finally {
    lib.close();
  }
}
