/**
 * The one temporary directory a test works in (`Sandbox`, removed on
 * dispose): the fakeauth ledger and account file, trivial back-end
 * scripts, room for certificates and other files; plus the paths of the
 * fixture and of `main.ts`, the standard timings and the environment every
 * spawned program starts from.
 *
 * @module
 */

import {
  type Account,
  type Accounts,
  readAccounts,
  writeAccounts,
} from "./accounts.ts";
import { checkLedger } from "./checker.ts";
import { type LedgerEntry, readLedger } from "./ledger.ts";
import { greeting } from "./pinned_replies.ts";
import type { Transcript } from "./talk.ts";

const path = (relative: string) =>
  decodeURIComponent(new URL(relative, import.meta.url).pathname);

/** The fake checkpassword/setpassword program. */
export const FAKEAUTH = path("./fixtures/fakeauth");

/** The program under test. */
export const MAIN = path("../../main.ts");

/** The repository root (the working directory for `main.ts`). */
export const ROOT = path("../../");

/** Test timings for `main.ts`: failure delay 0.3 s, idle 1 s, session 3 s, child 2 s. */
export const SHORT = [
  "--fail-delay",
  "0.3",
  "--idle-timeout",
  "1",
  "--session-timeout",
  "3",
  "--child-timeout",
  "2",
] as const;

/** Faster timings for many-session runs: failure delay 0.1 s, idle 2 s, session 5 s, child 1 s. */
export const QUICK = [
  "--fail-delay",
  "0.1",
  "--idle-timeout",
  "2",
  "--session-timeout",
  "5",
  "--child-timeout",
  "1",
] as const;

/** The host name the tests give the server; it appears in the greeting. */
export const HOST = "poppass.test";

/** The greeting's exact text for `HOST` (from the pinned reply table). */
export const GREETING: string = greeting(HOST);

/**
 * Trivial back ends: they read fd 3 and exit at once. `rule` rejects user
 * names that start with `bad`; `ok` accepts everything; `slow` sleeps 1 s;
 * `env` appends its environment to `$ENV_LOG`.
 */
const SCRIPTS = {
  ok: "cat <&3 >/dev/null\nexit 0\n",
  rule:
    'u=$(head -c 3 <&3)\ncat <&3 >/dev/null\n[ "$u" = bad ] && exit 1\nexit 0\n',
  slow: "cat <&3 >/dev/null\nsleep 1\nexit 0\n",
  env: 'cat <&3 >/dev/null\nenv >>"$ENV_LOG"\nexit 0\n',
} as const;

/** The name of a trivial back-end script (see `Sandbox.script`). */
export type ScriptName = keyof typeof SCRIPTS;

/** fakeauth's files inside a sandbox, shaped to spread into `Server.start`. */
export interface FakeauthFiles {
  readonly ledger: string;
  readonly accounts: string;
  /** Environment for the server (the children inherit it). */
  readonly env: Record<string, string>;
  /** The checkpassword chain and `PASSWORD_COMMAND` that run fakeauth. */
  readonly check: string[];
  readonly password: string;
}

/**
 * A temporary directory for one test: fakeauth's ledger and account file
 * (written at creation), the trivial back-end scripts, and any other file
 * by `path`. Dispose removes it all.
 */
export class Sandbox implements AsyncDisposable {
  readonly dir: string;
  readonly ledgerPath: string;
  readonly accountsPath: string;
  /** The accounts as written at creation. */
  before: Accounts = new Map();

  private constructor(dir: string) {
    this.dir = dir;
    this.ledgerPath = `${dir}/ledger`;
    this.accountsPath = `${dir}/accounts`;
  }

  /** Create the directory, the back-end scripts and the account file. */
  static async create(pairs: readonly Account[] = []): Promise<Sandbox> {
    const box = new Sandbox(
      await Deno.makeTempDir({ prefix: "poppass-test-" }),
    );
    for (const [name, body] of Object.entries(SCRIPTS)) {
      const path = box.script(name as ScriptName);
      await Deno.writeTextFile(path, `#!/bin/sh\n${body}`);
      await Deno.chmod(path, 0o755);
    }
    box.before = await writeAccounts(box.accountsPath, pairs);
    return box;
  }

  /** A path inside the directory. */
  path(name: string): string {
    return `${this.dir}/${name}`;
  }

  /** The path of a trivial back-end script. */
  script(name: ScriptName): string {
    return this.path(`${name}.sh`);
  }

  /** Paths and settings for running fakeauth as both back ends (listen mode). */
  fakeauth(extra: Record<string, string> = {}): FakeauthFiles {
    return {
      ledger: this.ledgerPath,
      accounts: this.accountsPath,
      env: this.env(extra),
      check: [FAKEAUTH, "check"],
      password: `${FAKEAUTH} set`,
    };
  }

  /** The variables fakeauth reads, plus `extra`. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return {
      FAKEAUTH_LEDGER: this.ledgerPath,
      FAKEAUTH_ACCOUNTS: this.accountsPath,
      ...extra,
    };
  }

  /** Every run so far. */
  ledger(): Promise<LedgerEntry[]> {
    return readLedger(this.ledgerPath);
  }

  /** The account file now. */
  accounts(): Promise<Accounts> {
    return readAccounts(this.accountsPath);
  }

  /**
   * Run the ledger checker over these transcripts, this ledger and the
   * account file before and now. `sessionOf` maps a run to its session
   * (default: the server pid, right for stdio mode).
   */
  async verify(
    transcripts: readonly Transcript[],
    sessionOf?: (entry: LedgerEntry) => string,
  ): Promise<void> {
    checkLedger({
      transcripts,
      ledger: await this.ledger(),
      before: this.before,
      after: await this.accounts(),
      ...(sessionOf ? { sessionOf } : {}),
    });
  }

  /** Remove the directory and everything in it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** The environment every spawned program starts from: ours, minus test leftovers. */
export function baseEnv(): Record<string, string> {
  const keep = ["PATH", "HOME", "DENO_DIR", "LANG", "TMPDIR"];
  const env: Record<string, string> = {
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
  };
  for (const name of keep) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}
