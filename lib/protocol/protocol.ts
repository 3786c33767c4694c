/**
 * The poppassd dialogue as a pure state machine: no I/O, no clock, no
 * `Deno`. A session runner feeds it lines and outcomes and performs the
 * effects it asks for (`doc/protocol.md` §3).
 *
 * @module
 */

import type { Outcome } from "../stores/backend.ts";
import { USER_MAX } from "../common/limits.ts";
import type { ReplyName } from "./replies.ts";

/** Where the dialogue stands. Secrets are raw octets owned by the state. */
export type State =
  | { readonly kind: "user" }
  | { readonly kind: "pass"; readonly user: Uint8Array }
  | {
    readonly kind: "newpass";
    readonly user: Uint8Array;
    readonly old: Uint8Array;
  }
  | { readonly kind: "done" }
  | { readonly kind: "closed" };

/** Work the runner must do before the dialogue can go on. */
export type Effect =
  | {
    readonly kind: "check";
    readonly user: Uint8Array;
    readonly old: Uint8Array;
  }
  | {
    readonly kind: "change";
    readonly user: Uint8Array;
    readonly old: Uint8Array;
    readonly next: Uint8Array;
  };

/** What a line leads to: a reply now, or an effect whose outcome goes to `settle`. */
export type Step =
  | { readonly kind: "reply"; readonly reply: ReplyName; readonly state: State }
  | { readonly kind: "run"; readonly effect: Effect };

/** The result of an effect: the reply, the next state, and whether the failure delay applies. */
export interface Settled {
  readonly reply: ReplyName;
  readonly state: State;
  readonly delay: boolean;
}

/** The state a session starts in, after the greeting. */
export const INITIAL: State = { kind: "user" };

const SP = 0x20;
const CLOSED: State = { kind: "closed" };

type Handler = (state: State, arg: Uint8Array | undefined) => Step;

/** The reply for a line that is not the expected command in each state. */
const REQUIRED: Record<Exclude<State["kind"], "closed">, ReplyName> = {
  user: "usernameRequired",
  pass: "passwordRequired",
  newpass: "newPasswordRequired",
  done: "quitRequired",
};

const fail = (state: State): Step => ({
  kind: "reply",
  reply: state.kind === "closed" ? "quitRequired" : REQUIRED[state.kind],
  state: CLOSED,
});

const COMMANDS: Record<string, Handler> = {
  quit: () => ({ kind: "reply", reply: "bye", state: CLOSED }),
  user: (state, arg) =>
    state.kind === "user" && arg !== undefined && isValidUser(arg)
      ? {
        kind: "reply",
        reply: "userOk",
        state: { kind: "pass", user: arg.slice() },
      }
      : fail(state),
  pass: (state, arg) =>
    state.kind === "pass" && arg !== undefined && isValidPassword(arg)
      ? {
        kind: "run",
        effect: { kind: "check", user: state.user, old: arg.slice() },
      }
      : fail(state),
  newpass: (state, arg) =>
    state.kind === "newpass" && arg !== undefined && isValidPassword(arg)
      ? {
        kind: "run",
        effect: {
          kind: "change",
          user: state.user,
          old: state.old,
          next: arg.slice(),
        },
      }
      : fail(state),
};

/**
 * Feed one line (without its LF or CRLF) to the dialogue. The keyword is
 * matched case-insensitively; the argument is everything after exactly one
 * SP, verbatim. Arguments are copied, so the caller may wipe `line`.
 *
 * @example
 * ```ts
 * step(INITIAL, new TextEncoder().encode("USER bob"));
 * // { kind: "reply", reply: "userOk", state: { kind: "pass", user: … } }
 * ```
 */
export function step(state: State, line: Uint8Array): Step {
  const space = line.indexOf(SP);
  const verb = asciiLower(space < 0 ? line : line.subarray(0, space));
  const arg = space < 0 ? undefined : line.subarray(space + 1);
  const handler = Object.hasOwn(COMMANDS, verb) ? COMMANDS[verb] : undefined;
  return handler ? handler(state, arg) : fail(state);
}

/** Apply the outcome of the effect that `step` asked for. */
export function settle(effect: Effect, outcome: Outcome): Settled {
  if (effect.kind === "check") {
    if (outcome.kind === "ok") {
      return {
        reply: "passOk",
        state: { kind: "newpass", user: effect.user, old: effect.old },
        delay: false,
      };
    }
    const reply = outcome.kind === "temporary" ? "authTemporary" : "authFailed";
    return { reply, state: CLOSED, delay: true };
  }
  return outcome.kind === "ok"
    ? { reply: "changed", state: { kind: "done" }, delay: false }
    : { reply: "changeFailed", state: CLOSED, delay: true };
}

/** A user name is 1..255 octets, none below 0x21 and no 0x7F. */
export function isValidUser(user: Uint8Array): boolean {
  if (user.length < 1 || user.length > USER_MAX) return false;
  return user.every((octet) => octet > 0x20 && octet !== 0x7f);
}

/** A password is at least one octet with no NUL, CR or LF. */
export function isValidPassword(password: Uint8Array): boolean {
  if (password.length < 1) return false;
  return password.every((octet) =>
    octet !== 0x00 && octet !== 0x0d && octet !== 0x0a
  );
}

/** Lower-case ASCII letters only; other octets map to themselves. */
function asciiLower(bytes: Uint8Array): string {
  let out = "";
  for (const octet of bytes) {
    out += String.fromCharCode(
      octet >= 0x41 && octet <= 0x5a ? octet + 0x20 : octet,
    );
  }
  return out;
}
