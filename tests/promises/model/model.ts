/**
 * The model: the reply table of `doc/protocol.md` §3 and fakeauth's
 * behaviour by prefix, predicting every answer (or the set of answers a
 * fault allows) to a line in a state, with the back-end runs it implies.
 *
 * @module
 */

import { hex, latin1 } from "../../support/bytes.ts";
import { validPassword, validUser } from "../../support/payload.ts";
import { R } from "../../support/pinned_replies.ts";
import { MAX_LINE, PAYLOAD_MAX } from "./settings.ts";
import { type Act, NORMAL } from "./scripts.ts";
import type { World } from "./world.ts";

/** The model's protocol state. */
export type MState =
  | { readonly kind: "user" }
  | { readonly kind: "pass"; readonly user: Uint8Array }
  | {
    readonly kind: "newpass";
    readonly user: Uint8Array;
    readonly old: Uint8Array;
  }
  | { readonly kind: "done" }
  | { readonly kind: "closed" };

const CLOSED: MState = { kind: "closed" };

/** One possible answer to a line. */
export interface Branch {
  readonly reply: string;
  readonly next: MState;
  /** The back-end run it implies: mode and the exits the ledger may show. */
  readonly run?: { readonly mode: "check" | "set"; readonly exits: string[] };
  /** The run may be missing from the ledger (killed before it wrote its line). */
  readonly maybeUnrun?: boolean;
  /** The user's password afterwards. */
  readonly account?: {
    readonly user: Uint8Array;
    readonly password: Uint8Array;
  };
  /** The failure delay applies. */
  readonly delayed?: boolean;
}

const REQUIRED = {
  user: R.usernameRequired,
  pass: R.passwordRequired,
  newpass: R.newPasswordRequired,
  done: R.quitRequired,
} as const;

/**
 * Complete lines the client sent: LF-terminated, one CR before the LF
 * dropped (the spec's rule, written again here: the model must not share
 * code with the checker, whose helper is also moving between modules).
 */
export function clientLines(sent: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let lf = sent.indexOf(0x0a); lf >= 0; lf = sent.indexOf(0x0a, start)) {
    const end = lf > start && sent[lf - 1] === 0x0d ? lf - 1 : lf;
    out.push(sent.subarray(start, end));
    start = lf + 1;
  }
  return out;
}

function startsWith(data: Uint8Array, prefix: string): boolean {
  return latin1(data.subarray(0, prefix.length)) === prefix;
}

/** What fakeauth does for `user` in `mode` in this session. */
function actFor(w: World, user: Uint8Array, mode: "check" | "set"): Act {
  const k = w.kind;
  if (k.force) return k.force === mode ? k[mode] : NORMAL;
  return k.prefix !== "u" && startsWith(user, k.prefix) ? k[mode] : NORMAL;
}

/** Lower-case ASCII letters only, for keyword matching. */
export function asciiLower(data: Uint8Array): string {
  return latin1(data).replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Every answer the reply table and fakeauth allow for `line` in `state`. */
export function predict(state: MState, line: Uint8Array, w: World): Branch[] {
  if (state.kind === "closed") return [];
  if (line.length > MAX_LINE) return [{ reply: R.lineTooLong, next: CLOSED }];
  const space = line.indexOf(0x20);
  const verb = asciiLower(space < 0 ? line : line.subarray(0, space));
  const arg = space < 0 ? undefined : line.subarray(space + 1);
  if (verb === "quit") return [{ reply: R.bye, next: CLOSED }];
  if (verb === "user" && state.kind === "user" && arg && validUser(arg)) {
    return [{ reply: R.userOk, next: { kind: "pass", user: arg } }];
  }
  if (verb === "pass" && state.kind === "pass" && arg && validPassword(arg)) {
    return checkBranches(state.user, arg, w);
  }
  if (
    verb === "newpass" && state.kind === "newpass" && arg && validPassword(arg)
  ) {
    return setBranches(state.user, state.old, arg, w);
  }
  return [{ reply: REQUIRED[state.kind], next: CLOSED }];
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return hex(a) === hex(b);
}

function checkBranches(user: Uint8Array, old: Uint8Array, w: World): Branch[] {
  const no = (exits: string[]): Branch => ({
    reply: R.authFailed,
    next: CLOSED,
    delayed: true,
    run: { mode: "check", exits },
  });
  if (user.length + old.length + 4 > PAYLOAD_MAX) {
    return [{ reply: R.authFailed, next: CLOSED, delayed: true }];
  }
  const right = same(user, w.own) && same(old, w.right);
  const ok: Branch = {
    reply: R.passOk,
    next: { kind: "newpass", user, old },
    run: { mode: "check", exits: ["0"] },
  };
  const a = actFor(w, user, "check");
  switch (a.outcome) {
    case "normal":
      return [right ? ok : no(["1"])];
    case "reject":
      return [no([a.exit!])];
    case "temporary":
      return [{
        reply: R.authTemporary,
        next: CLOSED,
        delayed: true,
        run: { mode: "check", exits: [a.exit!] },
      }];
    case "slow":
      return [right ? ok : no(["1"]), {
        reply: R.authTemporary,
        next: CLOSED,
        delayed: true,
        run: { mode: "check", exits: ["0", "1"] },
        maybeUnrun: true,
      }];
  }
}

function setBranches(
  user: Uint8Array,
  old: Uint8Array,
  next: Uint8Array,
  w: World,
): Branch[] {
  const failed = (exits: string[], maybeUnrun = false): Branch => ({
    reply: R.changeFailed,
    next: CLOSED,
    delayed: true,
    run: { mode: "set", exits },
    maybeUnrun,
  });
  if (user.length + old.length + next.length + 4 > PAYLOAD_MAX) {
    return [{ reply: R.changeFailed, next: CLOSED, delayed: true }];
  }
  const changed: Branch = {
    reply: R.changed,
    next: { kind: "done" },
    run: { mode: "set", exits: ["0"] },
    account: { user, password: next },
  };
  const a = actFor(w, user, "set");
  switch (a.outcome) {
    case "normal":
      return [changed];
    case "reject":
    case "temporary":
      return [failed([a.exit!])];
    case "slow":
      return [changed, failed(["0"], true)];
  }
}
