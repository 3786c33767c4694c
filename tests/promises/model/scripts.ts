/**
 * What fast-check generates: per session a back-end kind (a plain account
 * or a fakeauth fault chosen by user-name prefix or client port) and a
 * script of client lines, how they are sent and how the session ends.
 *
 * @module
 */

import fc from "fast-check";

/** What fakeauth does in one mode: the reply class and the ledger's exit field. */
export interface Act {
  readonly outcome: "normal" | "reject" | "temporary" | "slow";
  /** The ledger's exit field; for "normal" it depends on the password. */
  readonly exit?: string;
}

/** fakeauth behaving as its accounts say. */
export const NORMAL: Act = { outcome: "normal" };
const act = (outcome: Act["outcome"], exit: string): Act => ({ outcome, exit });

/** A session's back end: fakeauth's behaviour for its own user, or forced for its port. */
export interface Kind {
  /** The user-name prefix fakeauth reads ("u" means none). */
  readonly prefix: string;
  readonly check: Act;
  readonly set: Act;
  /** Forced through the wrapper for every run of that mode on the session's port. */
  readonly force?: "check" | "set";
}

/** Every back-end kind a session can have, by name. */
export const KINDS = {
  plain: { prefix: "u", check: NORMAL, set: NORMAL },
  e2: { prefix: "e2", check: act("reject", "2"), set: act("reject", "2") },
  e3: { prefix: "e3", check: act("reject", "3"), set: act("reject", "3") },
  e111: {
    prefix: "e111",
    check: act("temporary", "111"),
    set: act("temporary", "111"),
  },
  sig: {
    prefix: "sig",
    check: act("temporary", "SIGKILL"),
    set: act("temporary", "SIGKILL"),
  },
  hang: {
    prefix: "hang",
    check: act("temporary", "hang"),
    set: act("temporary", "hang"),
  },
  // slow sleeps 1 s, the child deadline is 1 s: usually a timeout, rarely in time.
  slow: { prefix: "slow", check: act("slow", ""), set: act("slow", "") },
  noread: {
    prefix: "u",
    check: act("reject", "1"),
    set: NORMAL,
    force: "check",
  },
  "set-e3": { prefix: "set-e3", check: NORMAL, set: act("reject", "3") },
  "set-e111": {
    prefix: "set-e111",
    check: NORMAL,
    set: act("temporary", "111"),
  },
  "set-sig": {
    prefix: "set-sig",
    check: NORMAL,
    set: act("temporary", "SIGKILL"),
  },
  "set-hang": {
    prefix: "set-hang",
    check: NORMAL,
    set: act("temporary", "hang"),
  },
  "set-noread": {
    prefix: "u",
    check: NORMAL,
    set: act("reject", "1"),
    force: "set",
  },
} as const satisfies Record<string, Kind>;

type KindName = keyof typeof KINDS;
/** How a keyword is cased on the wire. */
export type Case = "lower" | "upper" | "title";

/** One client line, before it is rendered into octets for a session. */
export type Cmd =
  | { op: "user"; who: "own" | "unknown"; verb: Case }
  | { op: "badUser"; octet: number; verb: Case }
  | { op: "pass"; pw: "right" | "wrong" | "spaced"; verb: Case }
  | { op: "longPass"; length: number }
  | { op: "badPass"; octet: number }
  | { op: "newpass"; verb: Case }
  | { op: "longNewpass"; length: number }
  | { op: "badNewpass"; octet: number }
  | { op: "quit"; verb: Case; arg: boolean }
  | { op: "junk"; octets: number[] }
  | { op: "edge"; text: string }
  | { op: "overlong"; length: number };

/** One session: its back end, its lines, how they are sent and how it ends. */
export interface Script {
  readonly kind: KindName;
  /** How many happy-path lines come first: user, pass (right), newpass. */
  readonly happy: number;
  readonly tail: readonly Cmd[];
  /** One line per reply, or everything in one write. */
  readonly send: "step" | "pipeline";
  /** EOF after the last line, disconnect without reading, or wait for the deadline. */
  readonly end: "eof" | "drop" | "wait";
  readonly eol: "\r\n" | "\n";
  /** A last line sent without its end of line (never to be run). */
  readonly partial: Cmd | null;
  /** Pipeline mode: split the octets at these offsets, a few ms apart. */
  readonly cuts: readonly number[];
}

const verbCase = fc.constantFrom<Case>("lower", "upper", "title");
/** Octets that make a user name invalid; NUL and CR also make a password invalid. */
const badOctet = fc.constantFrom(0x00, 0x0d, 0x09, 0x01, 0x20, 0x7f);

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("user" as const),
      who: fc.constantFrom("own" as const, "own" as const, "unknown" as const),
      verb: verbCase,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("badUser" as const),
      octet: badOctet,
      verb: verbCase,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("pass" as const),
      pw: fc.constantFrom(
        "right" as const,
        "wrong" as const,
        "spaced" as const,
      ),
      verb: verbCase,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("longPass" as const),
      length: fc.integer({ min: 480, max: 507 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("badPass" as const),
      octet: badOctet,
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("newpass" as const),
      verb: verbCase,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("longNewpass" as const),
      length: fc.integer({ min: 440, max: 504 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("badNewpass" as const),
      octet: badOctet,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("quit" as const),
      verb: verbCase,
      arg: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("junk" as const),
      octets: fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 24 })
        .map((a) => a.map((o) => (o === 0x0a ? 0x0b : o))),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("edge" as const),
      text: fc.constantFrom(
        "",
        "user",
        "user ",
        "user  x",
        "pass",
        "pass ",
        "newpass",
        "newpass ",
        "\r",
        "\0",
        "quit\0",
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("overlong" as const),
      length: fc.integer({ min: 513, max: 1_500 }),
    }),
  },
);

const kindNames = Object.keys(KINDS) as KindName[];
const kind: fc.Arbitrary<KindName> = fc.oneof(
  { weight: kindNames.length, arbitrary: fc.constant("plain" as const) },
  { weight: kindNames.length - 1, arbitrary: fc.constantFrom(...kindNames) },
);

const script: fc.Arbitrary<Script> = fc.record({
  kind,
  happy: fc.integer({ min: 0, max: 3 }),
  tail: fc.array(cmd, { maxLength: 5 }),
  send: fc.constantFrom("step" as const, "pipeline" as const),
  end: fc.oneof(
    { weight: 6, arbitrary: fc.constant("eof" as const) },
    { weight: 4, arbitrary: fc.constant("drop" as const) },
    { weight: 1, arbitrary: fc.constant("wait" as const) },
  ),
  eol: fc.constantFrom("\r\n" as const, "\n" as const),
  partial: fc.option(cmd, { freq: 4, nil: null }),
  cuts: fc.array(fc.integer({ min: 1, max: 1_600 }), { maxLength: 3 }),
});

/** 3-5 sessions at a time. */
export const SCRIPTS = fc.array(script, { minLength: 3, maxLength: 5 });
