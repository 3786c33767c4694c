/**
 * The ledger checker (tests/support/checker.ts) catches what it promises to
 * catch: synthetic transcripts and ledgers, one broken promise per row.
 */

import assert from "node:assert/strict";
import { accounts } from "../support/accounts.ts";
import { bytes, changePayload, checkPayload } from "../support/bytes.ts";
import { checkLedger } from "../support/checker.ts";
import type { LedgerEntry } from "../support/ledger.ts";
import type { Transcript } from "../support/talk.ts";

const G = "200 h hello, who are you?\r\n";
const U = "200 Your password please.\r\n";
const P = "200 Your new password please.\r\n";
const C = "200 Password changed, thank-you.\r\n";
const F = "500 Password change failed.\r\n";
const LINES = "user bob\r\npass old\r\nnewpass new\r\n";

const t = (sent: string, received: string, session = "1"): Transcript => ({
  session,
  sent: bytes(sent),
  received: bytes(received),
});

const run = (
  mode: string,
  payload: Uint8Array,
  exit = "0",
  ppid = 1,
): LedgerEntry => ({ mode, pid: 9, ppid, argv: [], payload, env: {}, exit });

const check = run("check", checkPayload("bob", "old"));
const set = run("set", changePayload("bob", "old", "new"));
const before = accounts([["bob", "old"]]);
const changed = accounts([["bob", "new"]]);

const rows: [string, Transcript[], LedgerEntry[], boolean, RegExp?][] = [
  ["a clean change passes", [t(LINES, G + U + P + C)], [check, set], true],
  ["a client that vanished during the change passes", [t(LINES, G + U + P)], [
    check,
    set,
  ], true],
  [
    "a set without any check fails",
    [t(LINES, G + U + P + C)],
    [set],
    false,
    /before a check|without a check/,
  ],
  [
    "a set for another old password fails",
    [t(LINES, G + U + P + C)],
    [check, run("set", changePayload("bob", "other", "new"))],
    false,
    /without an accepted newpass/,
  ],
  [
    "a success reply without a set fails",
    [t(LINES, G + U + P + C)],
    [check],
    false,
    /0 successful set/,
  ],
  [
    "two sets for one newpass fail",
    [t(LINES, G + U + P + C)],
    [check, set, set],
    false,
    /set ran 2 times/,
  ],
  [
    "a set that exited 0 behind a failure reply fails",
    [t(LINES, G + U + P + F)],
    [check, set],
    false,
    /set exited 0/,
  ],
  [
    "a check payload without its last NUL fails",
    [t("user bob\r\npass old\r\nquit\r\n", G + U + P + "200 Bye.\r\n")],
    [run("check", bytes("bob", 0, "old", 0, 0))],
    false,
    /wrong shape/,
  ],
  [
    "a check allowed in one session cannot authorise a set in another",
    [
      t("user bob\r\npass old\r\n", G + U + P, "1"),
      t("newpass new\r\n", G + "500 Username required.\r\n", "2"),
    ],
    [check, run("set", changePayload("bob", "old", "new"), "0", 2)],
    false,
    /without an accepted newpass/,
  ],
  [
    "a run no client caused fails",
    [],
    [check],
    false,
    /no client session caused/,
  ],
  [
    "a password in a back end's argv fails",
    [t("user bob\r\npass secret-pw\r\n", G + U + P)],
    [{
      ...run("check", checkPayload("bob", "secret-pw")),
      argv: [bytes("check"), bytes("secret-pw")],
    }],
    false,
    /argv or environment contains secret-pw/,
  ],
  [
    "a password echoed in a reply fails",
    [t("user bob\r\npass secret-pw\r\n", G + U + "500 no secret-pw\r\n")],
    [run("check", checkPayload("bob", "secret-pw"), "1")],
    false,
    /a reply contains secret-pw/,
  ],
];

Deno.test("the ledger checker accepts kept promises and reports broken ones", async (st) => {
  for (const [name, transcripts, ledger, ok, message] of rows) {
    await st.step(name, () => {
      const sets = ledger.filter((e) => e.mode === "set" && e.exit === "0");
      const input = {
        transcripts,
        ledger,
        before,
        after: sets.length > 0 ? changed : before,
      };
      if (ok) checkLedger(input);
      else assert.throws(() => checkLedger(input), message ?? /ledger checker/);
    });
  }
  await st.step("a password that changed without a set fails", () => {
    assert.throws(
      () =>
        checkLedger({
          transcripts: [t(LINES, G + U + P + F)],
          ledger: [check],
          before,
          after: changed,
        }),
      /account bob: password new, expected old/,
    );
  });
});
