/**
 * The ledger checker: a pure function over client transcripts, fakeauth's
 * ledger and account snapshots that asserts promises 1-3 of
 * `doc/test-plan.md`:
 *
 * 1. setpassword ran only after the checkpassword chain said yes for the
 *    same user and old password, in the same session, after the last `user`;
 * 2. `200 Password changed` only when setpassword exited 0 for exactly the
 *    octets the client sent; at most one setpassword per accepted `newpass`;
 * 3. fd-3 payloads are exactly `user\0old\0\0\0` and `user\0old\0\0new\0`.
 *
 * It replays each transcript through a small model of the protocol, so it
 * knows which payloads a session may have caused; a line the client sent
 * but never got a reply to (client gone, server closed) may or may not have
 * run, and the ledger decides.
 *
 * @module
 */

import { AssertionError } from "node:assert";
import { contains, hex, latin1, show, unhex } from "./bytes.ts";
import { changePayload, checkPayload } from "./bytes.ts";
import type { Accounts } from "./accounts.ts";
import type { LedgerEntry } from "./ledger.ts";
import type { Transcript } from "./talk.ts";
import {
  clientLines,
  hasShape,
  splitNul,
  validPassword,
  validUser,
} from "./payload.ts";

/** Everything the checker looks at. */
export interface LedgerCheck {
  readonly transcripts: readonly Transcript[];
  readonly ledger: readonly LedgerEntry[];
  readonly before: Accounts;
  readonly after: Accounts;
  /** The session a ledger entry belongs to; default: its parent's pid. */
  readonly sessionOf?: (entry: LedgerEntry) => string;
}

const PASS_OK = "200 Your new password please.";
const CHANGED = "200 Password changed, thank-you.";
const REPLY = /^(200|500) [\x20-\x7e]*$/;

/** What one session's transcript allows the back ends to have done. */
interface Allowed {
  /** Check payloads (hex) → how many `pass` lines could have caused them. */
  readonly checks: Map<string, number>;
  /** Change payloads (hex) → the check payload (hex) that must precede it. */
  readonly sets: Map<string, string>;
}

/** Throws an `AssertionError` listing every broken promise. */
export function checkLedger(input: LedgerCheck): void {
  const problems: string[] = [];
  const sessionOf = input.sessionOf ?? ((e: LedgerEntry) => String(e.ppid));
  const bySession = new Map<string, LedgerEntry[]>();
  for (const entry of input.ledger) {
    const key = sessionOf(entry);
    bySession.set(key, [...(bySession.get(key) ?? []), entry]);
  }
  for (const t of input.transcripts) {
    const entries = bySession.get(t.session) ?? [];
    bySession.delete(t.session);
    const allowed = replay(t, entries, problems);
    checkEntries(t.session, entries, allowed, problems);
  }
  for (const [session, entries] of bySession) {
    problems.push(
      `session ${session}: ${entries.length} back-end run(s) that no client session caused`,
    );
  }
  checkAccounts(input, problems);
  checkSecrets(input, problems);
  if (problems.length > 0) {
    throw new AssertionError({
      message: `ledger checker:\n  ${problems.join("\n  ")}`,
    });
  }
}

function serverReplies(t: Transcript, problems: string[]): string[] {
  const text = latin1(t.received);
  const parts = text.split("\r\n");
  const tail = parts.pop();
  if (tail !== "") {
    problems.push(
      `session ${t.session}: reply not ended by CRLF: ${JSON.stringify(tail)}`,
    );
  }
  for (const r of parts) {
    if (!REPLY.test(r)) {
      problems.push(
        `session ${t.session}: malformed reply ${JSON.stringify(r)}`,
      );
    }
  }
  return parts;
}

type Model =
  | { kind: "user" }
  | { kind: "pass"; user: Uint8Array }
  | { kind: "newpass"; user: Uint8Array; old: Uint8Array }
  | { kind: "done" | "closed" };

/** Walk the dialogue; reply i+1 answers line i (reply 0 is the greeting). */
function replay(
  t: Transcript,
  entries: readonly LedgerEntry[],
  problems: string[],
): Allowed {
  const allowed: Allowed = { checks: new Map(), sets: new Map() };
  const replies = serverReplies(t, problems);
  const say = (m: string) => problems.push(`session ${t.session}: ${m}`);
  const ran = (mode: string, payload: Uint8Array, exit?: string) =>
    entries.filter((e) =>
      e.mode === mode && hex(e.payload) === hex(payload) &&
      (exit === undefined || e.exit === exit)
    );
  let state: Model = { kind: "user" };
  clientLines(t.sent).forEach((line, i) => {
    const reply = replies[i + 1];
    if (state.kind === "closed") {
      if (reply !== undefined) {
        say(`reply ${JSON.stringify(reply)} after the session closed`);
      }
      return;
    }
    const space = line.indexOf(0x20);
    const verb = latin1(space < 0 ? line : line.subarray(0, space))
      .toLowerCase();
    const arg = space < 0 ? undefined : line.subarray(space + 1);
    const failed = reply !== undefined && !reply.startsWith("200");
    let next: Model = { kind: "closed" };
    if (verb === "user" && state.kind === "user" && arg && validUser(arg)) {
      if (!failed) next = { kind: "pass", user: arg };
    } else if (
      verb === "pass" && state.kind === "pass" && arg && validPassword(arg)
    ) {
      const payload = checkPayload(state.user, arg);
      const key = hex(payload);
      allowed.checks.set(key, (allowed.checks.get(key) ?? 0) + 1);
      const yes = ran("check", payload, "0").length > 0;
      if (reply === PASS_OK && !yes) {
        say(`"${PASS_OK}" without a check that exited 0 for ${show(payload)}`);
      }
      if (failed && yes) {
        say(
          `check exited 0 for ${show(payload)} but the client got ${
            JSON.stringify(reply)
          }`,
        );
      }
      if (reply === PASS_OK || (reply === undefined && yes)) {
        next = { kind: "newpass", user: state.user, old: arg };
      }
    } else if (
      verb === "newpass" && state.kind === "newpass" && arg &&
      validPassword(arg)
    ) {
      const payload = changePayload(state.user, state.old, arg);
      allowed.sets.set(hex(payload), hex(checkPayload(state.user, state.old)));
      const ok = ran("set", payload, "0").length;
      if (reply === CHANGED && (ok !== 1 || ran("set", payload).length !== 1)) {
        say(
          `"${CHANGED}" but ${ok} successful set run(s) for ${show(payload)}`,
        );
      }
      if (failed && ok > 0) {
        say(
          `set exited 0 for ${show(payload)} but the client got ${
            JSON.stringify(reply)
          }`,
        );
      }
      if (reply === CHANGED || (reply === undefined && ok > 0)) {
        next = { kind: "done" };
      }
    } else if (verb === "quit" && reply !== undefined && reply !== "200 Bye.") {
      say(`quit answered with ${JSON.stringify(reply)}`);
    }
    if (reply?.startsWith("500") || reply === "200 Bye.") {
      next = { kind: "closed" };
    }
    if (reply === CHANGED && verb !== "newpass") {
      say(`"${CHANGED}" for a ${verb} line`);
    }
    state = next;
  });
  return allowed;
}

/** Every run must be one the transcript allows, with the exact payload shape. */
function checkEntries(
  session: string,
  entries: readonly LedgerEntry[],
  allowed: Allowed,
  problems: string[],
): void {
  const say = (m: string) => problems.push(`session ${session}: ${m}`);
  const seen = new Map<string, number>();
  entries.forEach((entry, index) => {
    const key = hex(entry.payload);
    const count = (seen.get(entry.mode + key) ?? 0) + 1;
    seen.set(entry.mode + key, count);
    const blind = entry.payload.length === 0 && entry.exit !== "0";
    if (entry.mode === "check") {
      if (!blind && !hasShape(entry.payload, "check")) {
        say(`check payload has the wrong shape: ${show(entry.payload)}`);
      }
      if (!blind && count > (allowed.checks.get(key) ?? 0)) {
        say(
          `check run #${count} for ${
            show(entry.payload)
          }, which no pass line allows`,
        );
      }
      if (blind && allowed.checks.size === 0) {
        say("a check ran although no pass line was accepted");
      }
    } else if (entry.mode === "set") {
      if (!blind && !hasShape(entry.payload, "set")) {
        say(`set payload has the wrong shape: ${show(entry.payload)}`);
      }
      const needs = blind
        ? [...allowed.sets.values()]
        : [allowed.sets.get(key)];
      if (needs[0] === undefined) {
        say(
          `set ran for ${
            show(entry.payload)
          } without an accepted newpass after a successful check`,
        );
      }
      const checked = entries.slice(0, index).some((e) =>
        e.mode === "check" && e.exit === "0" && needs.includes(hex(e.payload))
      );
      if (needs[0] !== undefined && !checked) {
        say(
          `set ran for ${
            show(entry.payload)
          } before a check for the same user and old password said yes`,
        );
      }
      if (!blind && count > 1) {
        say(`set ran ${count} times for ${show(entry.payload)}`);
      }
    } else {
      say(`unknown mode ${JSON.stringify(entry.mode)}`);
    }
  });
}

/**
 * Promise 7 where the checker can see it: no password the clients sent
 * (6 octets or more, so short ones cannot match by chance) comes back in a
 * reply or shows up in a back end's argv or recorded environment.
 */
function checkSecrets(input: LedgerCheck, problems: string[]): void {
  const secrets: Uint8Array[] = [];
  for (const t of input.transcripts) {
    for (const line of clientLines(t.sent)) {
      const space = line.indexOf(0x20);
      const verb = latin1(line.subarray(0, Math.max(space, 0))).toLowerCase();
      const arg = line.subarray(space + 1);
      if ((verb === "pass" || verb === "newpass") && arg.length >= 6) {
        secrets.push(arg);
      }
    }
  }
  const encoder = new TextEncoder();
  for (const secret of secrets) {
    for (const t of input.transcripts) {
      if (contains(t.received, secret)) {
        problems.push(`session ${t.session}: a reply contains ${show(secret)}`);
      }
    }
    for (const e of input.ledger) {
      const exposed = [
        ...e.argv,
        ...Object.values(e.env).map((v) => encoder.encode(v)),
      ];
      if (exposed.some((field) => contains(field, secret))) {
        problems.push(
          `run ${e.pid}: argv or environment contains ${show(secret)}`,
        );
      }
    }
  }
}

/** A user's password changes only through a set that exited 0; the last one wins. */
function checkAccounts(input: LedgerCheck, problems: string[]): void {
  const expected = new Map(input.before);
  for (const entry of input.ledger) {
    if (entry.mode !== "set" || entry.exit !== "0") continue;
    const fields = splitNul(entry.payload);
    expected.set(
      hex(fields[0] ?? new Uint8Array()),
      fields[3] ?? new Uint8Array(),
    );
  }
  const users = new Set([...expected.keys(), ...input.after.keys()]);
  for (const user of users) {
    const want = expected.get(user);
    const got = input.after.get(user);
    if (want === undefined || got === undefined || hex(want) !== hex(got)) {
      problems.push(
        `account ${show(unhex(user))}: password ${
          got ? show(got) : "(none)"
        }, expected ${want ? show(want) : "(none)"}`,
      );
    }
  }
}
