/**
 * The reply table of `doc/protocol.md` §3 as test rows, shared
 * by the stdio and tcpserver suites: client lines, the exact replies after
 * the greeting, and the back-end runs (mode:exit) they must cause.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Account } from "./accounts.ts";
import type { Part } from "./bytes.ts";
import type { LedgerEntry } from "./ledger.ts";

import { R } from "./pinned_replies.ts";

// Unique password markers: none of them may ever show up in a log.
/** The accounts' password in the rows. */
export const OLD = "Old-mk1 pw";
/** The new password the rows set. */
export const NEW = "New-mk2 pw";
/** A password no account has. */
export const WRONG = "Wrong-mk3 pw";
/** Every marker (and its core) that must never appear in a log or reply. */
export const SECRETS = [OLD, NEW, WRONG, "mk1", "mk2", "mk3"] as const;

/** Users for the rows; prefixes pick fakeauth's behaviour. */
export const ROW_ACCOUNTS: readonly Account[] = [
  "bob",
  "e2bob",
  "e3bob",
  "e111bob",
  "sigbob",
  "set-e2bob",
  "set-e3bob",
  "set-e111bob",
  "set-sigbob",
].map((user) => [user, OLD] as const);

/** One dialogue: lines sent one at a time, replies expected, runs caused. */
export interface Row {
  readonly name: string;
  readonly lines: readonly Part[];
  readonly replies: readonly string[];
  readonly runs: readonly string[];
}

const login = (user = "bob") => [`user ${user}`, `pass ${OLD}`];
const ok = [R.userOk, R.passOk];

/** The rows of the table, one per state and kind of line. */
export const ROWS: readonly Row[] = [
  {
    name: "quit right after the greeting says bye",
    lines: ["quit"],
    replies: [R.bye],
    runs: [],
  },
  {
    name: "a valid user is asked for the password",
    lines: ["user bob", "quit"],
    replies: [R.userOk, R.bye],
    runs: [],
  },
  ...[
    ["pass before user", `pass ${OLD}`],
    ["newpass before user", `newpass ${NEW}`],
    ["user without an argument", "user"],
    ["user with an empty name", "user "],
    ["user with a space in the name", "user bo b"],
    ["user with two spaces before the name", "user  bob"],
    ["user separated by a tab", "user\tbob"],
    ["a 256-octet user name", `user ${"u".repeat(256)}`],
    ["an unknown command", "helo bob"],
    ["an empty line", ""],
  ].map(([what, line]) => ({
    name: `${what} gets Username required`,
    lines: [line!],
    replies: [R.usernameRequired],
    runs: [],
  })),
  {
    name: "a 255-octet user name is accepted",
    lines: [`user ${"u".repeat(255)}`, "quit"],
    replies: [R.userOk, R.bye],
    runs: [],
  },
  {
    name: "the right password is accepted",
    lines: [...login(), "quit"],
    replies: [...ok, R.bye],
    runs: ["check:0"],
  },
  {
    name: "a wrong password is rejected",
    lines: ["user bob", `pass ${WRONG}`],
    replies: [R.userOk, R.authFailed],
    runs: ["check:1"],
  },
  {
    name: "an unknown user is rejected",
    lines: ["user nobody", `pass ${OLD}`],
    replies: [R.userOk, R.authFailed],
    runs: ["check:1"],
  },
  {
    name: "a check that exits 2 is rejected",
    lines: login("e2bob"),
    replies: [R.userOk, R.authFailed],
    runs: ["check:2"],
  },
  {
    name: "a check that exits 3 is rejected",
    lines: login("e3bob"),
    replies: [R.userOk, R.authFailed],
    runs: ["check:3"],
  },
  {
    name: "a check that exits 111 is temporary",
    lines: login("e111bob"),
    replies: [R.userOk, R.authTemporary],
    runs: ["check:111"],
  },
  {
    name: "a check killed by a signal is temporary",
    lines: login("sigbob"),
    replies: [R.userOk, R.authTemporary],
    runs: ["check:SIGKILL"],
  },
  ...[
    ["user again", "user bob"],
    ["pass without an argument", "pass"],
    ["pass with an empty password", "pass "],
    ["newpass", `newpass ${NEW}`],
  ].map(([what, line]) => ({
    name: `${what} after user gets Password required`,
    lines: ["user bob", line!],
    replies: [R.userOk, R.passwordRequired],
    runs: [],
  })),
  {
    name: "the new password is set",
    lines: [...login(), `newpass ${NEW}`, "quit"],
    replies: [...ok, R.changed, R.bye],
    runs: ["check:0", "set:0"],
  },
  ...[["2", "e2"], ["3", "e3"], ["111", "e111"], ["SIGKILL", "sig"]].map((
    [exit, prefix],
  ) => ({
    name: `a set that ends with ${exit} fails`,
    lines: [...login(`set-${prefix}bob`), `newpass ${NEW}`],
    replies: [...ok, R.changeFailed],
    runs: ["check:0", `set:${exit}`],
  })),
  ...[
    ["pass again", `pass ${OLD}`],
    ["user again", "user bob"],
    ["newpass without an argument", "newpass"],
    ["newpass with an empty password", "newpass "],
  ].map(([what, line]) => ({
    name: `${what} after auth gets New Password required`,
    lines: [...login(), line!],
    replies: [...ok, R.newPasswordRequired],
    runs: ["check:0"],
  })),
  {
    name: "a second newpass gets Quit required",
    lines: [...login(), `newpass ${NEW}`, `newpass ${WRONG}`],
    replies: [...ok, R.changed, R.quitRequired],
    runs: ["check:0", "set:0"],
  },
  {
    name: "quit after user says bye",
    lines: ["user bob", "quit"],
    replies: [R.userOk, R.bye],
    runs: [],
  },
  {
    name: "quit after auth says bye",
    lines: [...login(), "QuIt"],
    replies: [...ok, R.bye],
    runs: ["check:0"],
  },
  {
    name: "quit after the change says bye",
    lines: [...login(), `newpass ${NEW}`, "quit"],
    replies: [...ok, R.changed, R.bye],
    runs: ["check:0", "set:0"],
  },
  {
    name: "a line over 512 octets gets Line too long",
    lines: [`user ${"x".repeat(600)}`],
    replies: [R.lineTooLong],
    runs: [],
  },
  {
    name: "a 512-octet line is not too long",
    lines: [`user ${"x".repeat(507)}`],
    replies: [R.usernameRequired],
    runs: [],
  },
];

/** `mode:exit` for each run, in order. */
export function runs(ledger: readonly LedgerEntry[]): string[] {
  return ledger.map((e) => `${e.mode}:${e.exit}`);
}

/** No password marker may appear in `text` (a log, a reply). */
export function assertNoSecrets(
  text: string,
  secrets: readonly string[] = SECRETS,
): void {
  for (const secret of secrets) {
    assert.ok(
      !text.includes(secret),
      `secret ${JSON.stringify(secret)} leaked:\n${text}`,
    );
  }
}
