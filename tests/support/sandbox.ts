/**
 * A temporary directory with a fakeauth ledger and account file, removed
 * on dispose, plus the paths of the fixture and of `main.ts`.
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

/** The greeting's exact text for `HOST`. */
export const GREETING = `200 ${HOST} hello, who are you?\r\n`;

/** A temporary ledger and account file for one test. */
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

  /** Create the directory and write the account file. */
  static async create(pairs: readonly Account[] = []): Promise<Sandbox> {
    const box = new Sandbox(
      await Deno.makeTempDir({ prefix: "poppass-test-" }),
    );
    box.before = await writeAccounts(box.accountsPath, pairs);
    return box;
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
