/**
 * Model-based testing (test plan case 19) against the real program.
 *
 * fast-check generates 3-5 concurrent sessions per run. Each session has a
 * back-end kind (a plain account, or a fakeauth fault: e2, e3, e111, sig,
 * hang, slow by user-name prefix, set-… for the setpassword step, no-read
 * forced per client port) and a command sequence: user (own, unknown, bad
 * octets), pass (right, wrong, leading space, long, bad octets), newpass,
 * quit, junk octets, NUL/CR/control octets, overlong lines, in any keyword
 * case and with CRLF or LF, maybe an unterminated last line; sent one line
 * per reply, or all at once in random chunks; ended by EOF, by a disconnect
 * without reading the last reply (mid-check, mid-set), or by waiting for the
 * idle deadline. The sessions run against `main.ts` in stdio mode under
 * `tcpserver -R -H -l localhost` and against `main.ts --listen 127.0.0.1:0`.
 *
 * A small model (the reply table of `poppassd.md` §3, fakeauth's
 * behaviour by prefix) predicts each reply, or the set of replies a fault
 * allows, plus the back-end runs and the accounts. After every run the
 * model, the ledger checker (promises 1-3), the failure delay on every
 * failed pass/newpass (promise 5) and a secrets scan (promise 7) must hold.
 *
 * Environment: MODEL_SEED (default fixed), MODEL_RUNS (runs per mode),
 * MODEL_PATH (replay a failure's path), MODEL_SHRINK=0 (stop at the first
 * failure without shrinking).
 */

import fc from "fast-check";
import { readAccounts, writeAccounts } from "../support/accounts.ts";
import { bytes, hex, latin1, show } from "../support/bytes.ts";
import { checkLedger } from "../support/checker.ts";
import { SocketClient } from "../support/client.ts";
import type { LedgerEntry } from "../support/ledger.ts";
import { validPassword, validUser } from "../support/payload.ts";
import { waitUntil } from "../support/procs.ts";
import { sleep } from "../support/talk.ts";
import { R } from "../support/rows.ts";
import {
  baseEnv,
  FAKEAUTH,
  GREETING,
  HOST,
  MAIN,
  QUICK,
  Sandbox,
} from "../support/sandbox.ts";
import { Tcpserver } from "../support/tcpserver.ts";
import { buildStarter, missing, spawnerOf } from "../support/fd3exec.ts";
import { Server } from "../support/listen_server.ts";

const SEED = Number(Deno.env.get("MODEL_SEED") ?? 20261204);
const RUNS = Number(Deno.env.get("MODEL_RUNS") ?? 25);
const PATH = Deno.env.get("MODEL_PATH");
const SHRINK = Deno.env.get("MODEL_SHRINK") !== "0";

const TIMINGS = QUICK;
const FAIL_DELAY_MS = 100;
/** Timer slack when comparing the failure delay across two processes' clocks. */
const DELAY_SLACK_MS = 5;
const MAX_LINE = 512;
const PAYLOAD_MAX = 512;
/** Longest any reply or close may take: idle deadline 2 s + child 1 s + slack. */
const WAIT_MS = 8_000;

// ---------------------------------------------------------------- scripts

/** What fakeauth does in one mode: the reply class and the ledger's exit field. */
interface Act {
  readonly outcome: "normal" | "reject" | "temporary" | "slow";
  /** The ledger's exit field; for "normal" it depends on the password. */
  readonly exit?: string;
}

const NORMAL: Act = { outcome: "normal" };
const act = (outcome: Act["outcome"], exit: string): Act => ({ outcome, exit });

/** A session's back end: fakeauth's behaviour for its own user, or forced for its port. */
interface Kind {
  /** The user-name prefix fakeauth reads ("u" means none). */
  readonly prefix: string;
  readonly check: Act;
  readonly set: Act;
  /** Forced through the wrapper for every run of that mode on the session's port. */
  readonly force?: "check" | "set";
}

const KINDS = {
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
type Case = "lower" | "upper" | "title";

/** One client line, before it is rendered into octets for a session. */
type Cmd =
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
interface Script {
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
const SCRIPTS = fc.array(script, { minLength: 3, maxLength: 5 });

// --------------------------------------------------------------- sessions

/** Everything a session renders its lines from and the model predicts with. */
interface World {
  readonly kind: Kind;
  readonly own: Uint8Array;
  readonly unknown: Uint8Array;
  readonly right: Uint8Array;
  readonly wrong: Uint8Array;
  readonly fresh: Uint8Array;
  /** Each password starts with it: `Mk-<hex>`, unique per run. */
  readonly marker: string;
}

function world(s: Script, run: number, index: number, token: string): World {
  const id = `r${run}s${index}`;
  const kind: Kind = KINDS[s.kind];
  const marker = `Mk-${token}`;
  return {
    kind,
    own: bytes(`${kind.prefix}${id}`),
    unknown: bytes(`zz${id}`),
    right: bytes(`${marker}-${index} old \u00fc`),
    wrong: bytes(`${marker}-${index} wrong`),
    fresh: bytes(`${marker}-${index} new \u00e9`),
    marker,
  };
}

function keyword(word: string, c: Case): string {
  return c === "upper"
    ? word.toUpperCase()
    : c === "title"
    ? word[0]!.toUpperCase() + word.slice(1)
    : word;
}

/** `head` with `octet` put after its second octet. */
function spliced(head: Uint8Array, octet: number): Uint8Array {
  return bytes(head.subarray(0, 2), octet, head.subarray(2));
}

/** A password of exactly `length` octets that starts with the marker. */
function long(w: World, length: number): Uint8Array {
  const head = `${w.marker}-L`;
  return bytes(head, "L".repeat(Math.max(0, length - head.length)));
}

function render(c: Cmd, w: World): Uint8Array {
  switch (c.op) {
    case "user":
      return bytes(
        keyword("user", c.verb),
        " ",
        c.who === "own" ? w.own : w.unknown,
      );
    case "badUser":
      return bytes(keyword("user", c.verb), " ", spliced(w.own, c.octet));
    case "pass": {
      const pw = {
        right: w.right,
        wrong: w.wrong,
        spaced: bytes(" ", w.right),
      };
      return bytes(keyword("pass", c.verb), " ", pw[c.pw]);
    }
    case "longPass":
      return bytes("pass ", long(w, c.length));
    case "badPass":
      return bytes("pass ", spliced(w.right, c.octet));
    case "newpass":
      return bytes(keyword("newpass", c.verb), " ", w.fresh);
    case "longNewpass":
      return bytes("newpass ", long(w, c.length));
    case "badNewpass":
      return bytes("newpass ", spliced(w.fresh, c.octet));
    case "quit":
      return bytes(keyword("quit", c.verb), c.arg ? " now" : "");
    case "junk":
      return Uint8Array.from(c.octets);
    case "edge":
      return bytes(c.text);
    case "overlong":
      return bytes("user ", "x".repeat(c.length - 5));
  }
}

/** The unterminated last line, if any. */
function partial(s: Script, w: World): Uint8Array {
  return s.partial ? render(s.partial, w) : new Uint8Array(0);
}

/** The session's lines, each with its end of line. */
function lines(s: Script, w: World): Uint8Array[] {
  const happy: Cmd[] = [
    { op: "user", who: "own", verb: "lower" },
    { op: "pass", pw: "right", verb: "lower" },
    { op: "newpass", verb: "lower" },
  ];
  return [...happy.slice(0, s.happy), ...s.tail].map((c) =>
    bytes(render(c, w), s.eol)
  );
}

// ------------------------------------------------------------------ model

type MState =
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
interface Branch {
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
function clientLines(sent: Uint8Array): Uint8Array[] {
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

function asciiLower(data: Uint8Array): string {
  return latin1(data).replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/** Every answer the reply table and fakeauth allow for `line` in `state`. */
function predict(state: MState, line: Uint8Array, w: World): Branch[] {
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

// ----------------------------------------------------------------- verify

/** What the client saw of one session. */
interface Seen {
  readonly script: Script;
  readonly world: World;
  readonly port: number;
  readonly sent: Uint8Array;
  readonly received: Uint8Array;
  /** Milliseconds from sending line i to its reply (step mode only). */
  readonly times: readonly (number | undefined)[];
  /** The client closed without reading the last reply. */
  readonly dropped: boolean;
  /** Octets of the unterminated last line the client sent (0: none). */
  readonly partial: number;
  readonly problems: string[];
}

/** The model's verdict on one session: problems, and what the account may hold. */
interface Verdict {
  readonly problems: string[];
  /** Allowed passwords (hex) for the session's own user. */
  readonly account: Set<string>;
}

function describeState(state: MState): string {
  return state.kind === "pass"
    ? `pass(${show(state.user)})`
    : state.kind === "newpass"
    ? `newpass(${show(state.user)})`
    : state.kind;
}

/** Walk the transcript through the model; reply i+1 answers line i. */
function verify(seen: Seen, ledger: readonly LedgerEntry[]): Verdict {
  const { script: s, world: w } = seen;
  const problems = [...seen.problems];
  const say = (m: string) => problems.push(m);
  const account = new Set([hex(w.right)]);
  const text = latin1(seen.received);
  const replies = text.split(/(?<=\r\n)/).filter((r) => r !== "");
  if (replies.some((r) => !r.endsWith("\r\n"))) {
    say(`reply not ended by CRLF: ${JSON.stringify(text)}`);
  }
  if (replies[0] !== undefined && replies[0] !== GREETING) {
    say(`greeting ${JSON.stringify(replies[0])}`);
  }
  if (replies[0] === undefined && !seen.dropped) say("no greeting");
  const runs: { branch: Branch; optional: boolean }[] = [];
  let state: MState = { kind: "user" };
  let uncertain = false;
  const sentLines = clientLines(seen.sent);
  for (const [i, line] of sentLines.entries()) {
    const reply = replies[i + 1];
    if (state.kind === "closed") {
      if (reply !== undefined) {
        say(`reply ${JSON.stringify(reply)} after close`);
      }
      continue;
    }
    const branches = predict(state, line, w);
    if (reply === undefined) {
      if (!seen.dropped) {
        say(`no reply to line ${i} ${JSON.stringify(show(line))}`);
        break;
      }
      // The client left before this reply: this line and any later one may have run.
      for (const later of sentLines.slice(i)) {
        const space = later.indexOf(0x20);
        const arg = later.subarray(space + 1);
        if (space > 0 && asciiLower(later.subarray(0, space)) === "newpass") {
          account.add(hex(arg));
        }
      }
      uncertain = true;
      break;
    }
    const branch = branches.find((b) => b.reply === reply);
    if (!branch) {
      say(
        `line ${i} ${JSON.stringify(show(line))} in state ${
          describeState(state)
        }: expected ${
          branches.map((b) => JSON.stringify(b.reply)).join(" or ")
        }, got ${JSON.stringify(reply)}`,
      );
      return { problems, account };
    }
    const took = seen.times[i];
    if (branch.delayed && took !== undefined) {
      if (took < FAIL_DELAY_MS - DELAY_SLACK_MS) {
        say(`line ${i}: ${JSON.stringify(reply)} after ${took.toFixed(1)} ms`);
      }
    }
    if (branch.run) runs.push({ branch, optional: branch.maybeUnrun ?? false });
    if (branch.account) {
      account.clear();
      account.add(hex(branch.account.password));
    }
    state = branch.next;
  }
  const after = replies.slice(sentLines.length + 1);
  if (!uncertain) {
    // Still open: an unterminated line over the limit is refused at once;
    // otherwise EOF ends the session silently and waiting ends it at the
    // idle deadline (with or without "500 Timeout.").
    const open = state.kind !== "closed";
    const tooLong = open && seen.partial > MAX_LINE + 1;
    const allowed: string[] = tooLong
      ? [R.lineTooLong]
      : open && s.end === "wait"
      ? [R.timeout]
      : [];
    if (after.some((r) => !allowed.includes(r)) || after.length > 1) {
      say(`after the last line: ${JSON.stringify(after)}`);
    }
    if (tooLong && after.length === 0 && !seen.dropped) {
      say("no reply to an overlong unterminated line");
    }
    matchRuns(runs, ledger, say);
  } else if (ledger.length > 2) {
    say(`${ledger.length} runs for one session`);
  }
  return { problems, account };
}

/** The session's ledger entries must be the predicted runs, in order. */
function matchRuns(
  runs: readonly { branch: Branch; optional: boolean }[],
  ledger: readonly LedgerEntry[],
  say: (m: string) => void,
): void {
  let j = 0;
  for (const { branch, optional } of runs) {
    const entry = ledger[j];
    const run = branch.run!;
    if (entry && entry.mode === run.mode && run.exits.includes(entry.exit)) {
      j++;
    } else if (!optional) {
      say(
        `expected a ${run.mode} run exiting ${
          run.exits.join("/")
        }, ledger has ${entry ? `${entry.mode}:${entry.exit}` : "nothing"}`,
      );
      return;
    }
  }
  if (j < ledger.length) {
    say(
      `unexpected runs: ${
        ledger.slice(j).map((e) => `${e.mode}:${e.exit}`).join(", ")
      }`,
    );
  }
}

/** Every place a password must never appear: logs, replies, ledger argv and env. */
function secretHits(
  marker: string,
  logs: string,
  seen: readonly Seen[],
  ledger: readonly LedgerEntry[],
): string[] {
  const hits: string[] = [];
  const markerHex = hex(bytes(marker));
  if (logs.includes(marker)) hits.push("the server log");
  if (logs.includes(markerHex)) hits.push("the server log (as hex)");
  for (const s of seen) {
    if (latin1(s.received).includes(marker)) hits.push(`replies to ${s.port}`);
  }
  for (const e of ledger) {
    if (e.argv.some((a) => latin1(a).includes(marker))) {
      hits.push("ledger argv");
    }
    if (Object.values(e.env).some((v) => v.includes(marker))) {
      hits.push("ledger env");
    }
  }
  return hits;
}

// ----------------------------------------------------------------- driving

/** Run one session's lines over its connection. */
async function drive(
  client: SocketClient,
  s: Script,
  w: World,
): Promise<Seen> {
  const { talk } = client;
  const all = lines(s, w);
  const tail = partial(s, w);
  const times: (number | undefined)[] = [];
  const problems: string[] = [];
  let dropped = false;
  let sentTail = 0;
  try {
    if (s.send === "pipeline") {
      const data = bytes(...all, tail);
      const cuts = [...new Set(s.cuts.filter((c) => c < data.length))]
        .sort((a, b) => a - b);
      for (const [i, end] of [...cuts, data.length].entries()) {
        if (i > 0) await sleep(5);
        await talk.send(data.subarray(cuts[i - 1] ?? 0, end));
      }
      sentTail = tail.length;
      dropped = s.end === "drop";
    } else {
      await talk.reply(WAIT_MS);
      let open = true;
      for (const [i, line] of all.entries()) {
        const sentAt = performance.now();
        if (!(await talk.send(line))) {
          open = false;
          break;
        }
        if (i === all.length - 1 && s.end === "drop") break;
        const reply = await talk.reply(WAIT_MS);
        times[i] = performance.now() - sentAt;
        if (reply.startsWith("500") || reply === R.bye) {
          open = false;
          break;
        }
      }
      if (open && tail.length > 0 && await talk.send(tail)) {
        sentTail = tail.length;
      }
      dropped = open && s.end === "drop";
    }
    if (!dropped) {
      if (s.end === "eof") await client.closeWrite();
      await talk.closed(WAIT_MS);
    }
  } catch (error) {
    problems.push(`client: ${(error as Error).message}`);
  } finally {
    await client.close();
  }
  const t = talk.transcript();
  return {
    script: s,
    world: w,
    port: client.localPort,
    sent: t.sent,
    received: t.received,
    times,
    dropped,
    partial: sentTail,
    problems,
  };
}

/** A server under test: how to reach it and how to know its sessions are over. */
interface Target {
  readonly name: string;
  readonly box: Sandbox;
  /** Where the wrapper reads `PORT MODE BEHAVIOUR` lines. */
  readonly forcePath: string;
  connect(): Promise<SocketClient>;
  /** Wait (bounded) until every session so far has ended; a string says what is wrong. */
  settle(): Promise<string[]>;
  log(): string;
  /** The pid that must have run this session's children, if known. */
  parentOf?(runs: readonly LedgerEntry[]): string | undefined;
}

let runCounter = 0;

/** Counts for the summary line each model test prints. */
const stats = new Map<string, number>();
function count(key: string, n = 1): void {
  stats.set(key, (stats.get(key) ?? 0) + n);
}

/** Print and reset the counts: sessions, kinds, endings, replies. */
function summary(name: string): void {
  const line = [...stats].sort(([a], [b]) => a.localeCompare(b)).map((
    [k, v],
  ) => `${k}=${v}`).join(", ");
  console.log(`${name}: ${line}`);
  stats.clear();
}

/** One property run: fresh accounts and ledger, sessions at once, then every check. */
async function round(
  target: Target,
  scripts: readonly Script[],
): Promise<void> {
  const run = ++runCounter;
  const token = Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const worlds = scripts.map((s, i) => world(s, run, i, token));
  const { box } = target;
  await writeAccounts(box.accountsPath, []);
  await Deno.writeTextFile(box.ledgerPath, "");
  const clients: SocketClient[] = [];
  const before = new Map<string, Uint8Array>();
  let seen: Seen[];
  try {
    for (const _ of scripts) clients.push(await target.connect());
    for (const [i, c] of clients.entries()) {
      const w = worlds[i]!;
      const own = await writeAccounts(accountsOf(box, c.localPort), [[
        w.own,
        w.right,
      ]]);
      for (const [user, password] of own) before.set(user, password);
    }
    await Deno.writeTextFile(
      target.forcePath,
      worlds.map((w, i) =>
        w.kind.force ? `${clients[i]!.localPort} ${w.kind.force} noread\n` : ""
      ).join(""),
    );
    seen = await Promise.all(
      clients.map((c, i) => drive(c, scripts[i]!, worlds[i]!)),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  const problems = await target.settle();
  const ledger = await box.ledger();
  const after = new Map<string, Uint8Array>();
  for (const s of seen) {
    const path = accountsOf(box, s.port);
    for (const [user, password] of await readAccounts(path)) {
      after.set(user, password);
    }
    await Deno.remove(path);
  }
  const byPort = (port: number) =>
    ledger.filter((e) => e.env.TCPREMOTEPORT === String(port));
  count("runs");
  for (const [i, s] of seen.entries()) {
    count("sessions");
    count(`kind:${s.script.kind}`);
    count(`end:${s.script.send}/${s.script.end}`);
    for (const r of latin1(s.received).split("\r\n").slice(1, -1)) {
      count(`reply:${r.slice(0, 24)}`);
    }
    const mine = byPort(s.port);
    count("backend runs", mine.length);
    const verdict = verify(s, mine);
    const got = after.get(hex(s.world.own));
    if (!got || !verdict.account.has(hex(got))) {
      verdict.problems.push(`account holds ${got ? show(got) : "nothing"}`);
    }
    const parent = target.parentOf?.(mine);
    if (parent) verdict.problems.push(parent);
    for (const p of verdict.problems) problems.push(`session ${i}: ${p}`);
  }
  try {
    checkLedger({
      transcripts: seen.map((s) => ({
        session: String(s.port),
        sent: s.sent,
        received: s.received,
      })),
      ledger,
      before,
      after,
      sessionOf: (e) => e.env.TCPREMOTEPORT ?? "?",
    });
  } catch (error) {
    problems.push((error as Error).message);
  }
  const log = target.log();
  for (const where of secretHits(worlds[0]!.marker, log, seen, ledger)) {
    problems.push(`password marker found in ${where}`);
  }
  if (/\n\s+at |Uncaught|panicked/.test(log)) {
    problems.push(`stack trace in the log:\n${log.slice(-2_000)}`);
  }
  if (problems.length > 0) {
    throw new Error(
      `${target.name}, run ${run}:\n  ${problems.join("\n  ")}\nsessions: ${
        JSON.stringify(
          seen.map((s) => ({
            port: s.port,
            sent: show(s.sent),
            received: latin1(s.received),
            dropped: s.dropped,
          })),
          null,
          1,
        )
      }\nledger: ${
        JSON.stringify(ledger.map((e) => [e.env.TCPREMOTEPORT, e.mode, e.exit]))
      }`,
    );
  }
}

// ----------------------------------------------------------------- targets

/** The account file of the session on client port `port`. */
function accountsOf(box: Sandbox, port: number): string {
  return `${box.dir}/accounts-${port}`;
}

/**
 * A wrapper around fakeauth that uses, per client port (TCPREMOTEPORT, set
 * by tcpserver and by listen mode):
 * - its own account file: fakeauth's set rewrites the file without a lock,
 *   so concurrent sets on one shared file lose updates (seen in this test);
 * - a forced behaviour: fakeauth picks it from the user name on fd 3, which
 *   a child that must not read fd 3 never sees.
 * Loopback ports get reused (tcp_tw_reuse=2), but not within a run: all its
 * clients connect before any closes, and each run starts from fresh files.
 */
async function writeWrapper(box: Sandbox): Promise<[string, string]> {
  const wrapper = `${box.dir}/auth`;
  const force = `${box.dir}/force`;
  await Deno.writeTextFile(force, "");
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh
port=\${TCPREMOTEPORT:-none}
a='${box.dir}/accounts-'$port
[ -f "$a" ] && FAKEAUTH_ACCOUNTS=$a && export FAKEAUTH_ACCOUNTS
b=$(sed -n "s/^$port $1 //p" '${force}')
[ -n "$b" ] && FAKEAUTH_BEHAVE=$b && export FAKEAUTH_BEHAVE
exec '${FAKEAUTH}' "$@"
`,
  );
  await Deno.chmod(wrapper, 0o755);
  return [wrapper, force];
}

/** main.ts in stdio mode under tcpserver. */
async function withTcpserver(
  body: (target: Target) => Promise<void>,
): Promise<void> {
  await using box = await Sandbox.create();
  const [wrapper, forcePath] = await writeWrapper(box);
  await using server = await Tcpserver.start({
    program: [MAIN, ...TIMINGS, HOST, wrapper, "check"],
    env: { ...baseEnv(), ...box.env(), PASSWORD_COMMAND: `${wrapper} set` },
  });
  await body({
    name: "stdio under tcpserver",
    box,
    forcePath,
    connect: () => server.connect(),
    settle: async () => {
      const statuses = await server.idle(undefined, 15_000);
      return statuses.some((c) => c !== 0)
        ? [`session exit statuses ${statuses.join(",")}`]
        : [];
    },
    log: () => server.log,
    parentOf: (runs) =>
      new Set(runs.map((e) => e.ppid)).size > 1
        ? `runs of one session under different pids`
        : undefined,
  });
}

/** main.ts in listen mode on 127.0.0.1, port chosen by the kernel. */
async function withListener(
  body: (target: Target) => Promise<void>,
  spawner?: string,
): Promise<void> {
  await using box = await Sandbox.create();
  const [wrapper, forcePath] = await writeWrapper(box);
  const flags = spawner === undefined ? [] : ["--fd3-spawner", spawner];
  await using server = await Server.start({
    options: [...flags, "--listen", "127.0.0.1:0", ...TIMINGS],
    check: [wrapper, "check"],
    password: `${wrapper} set`,
    hostname: HOST,
    env: box.env(),
  });
  let connected = 0;
  await body({
    name: spawner === undefined ? "listen mode" : "listen mode with fd3spawn",
    box,
    forcePath,
    connect: () => {
      connected++;
      return SocketClient.connect(server.port());
    },
    settle: async () => {
      const ended = () => server.grep(/: session end: /).length;
      const done = await waitUntil(() => ended() >= connected, 15_000);
      const problems = done
        ? []
        : [`${connected - ended()} sessions still open`];
      if (server.stdout !== "") problems.push(`stdout: ${server.stdout}`);
      return problems;
    },
    log: () => server.logs.join("\n"),
    parentOf: (runs) => {
      // The server starts each program itself, or its one fd3spawn does.
      const parent = spawner === undefined ? server.pid : spawnerOf(server.pid);
      return runs.some((e) => e.ppid !== parent)
        ? `a run whose parent is not ${
          spawner === undefined ? "the server" : "fd3spawn"
        } ${parent}`
        : undefined;
    },
  });
}

const TARGETS = { tcpserver: withTcpserver, listen: withListener } as const;

/** fast-check's parameters, and a hint to replay a failure. */
async function check(target: Target, seed: number): Promise<void> {
  try {
    await fc.assert(
      fc.asyncProperty(SCRIPTS, (scripts) => round(target, scripts)),
      {
        seed,
        numRuns: RUNS,
        endOnFailure: !SHRINK,
        ...(PATH ? { path: PATH } : {}),
      },
    );
  } catch (error) {
    const { message, cause } = error as Error;
    const path = /path: "([\d:]*)"/.exec(message)?.[1] ?? PATH ?? "";
    throw new Error(
      `${message}\n${cause instanceof Error ? cause.message : ""}\n` +
        `replay the shrunk case: MODEL_SEED=${SEED} MODEL_PATH=${path} ` +
        `deno test --allow-all tests/promises/model_test.ts --filter "${target.name}"`,
    );
  }
}

Deno.test(`model: stdio under tcpserver, ${RUNS} runs of 3-5 concurrent sessions (seed ${SEED})`, async () => {
  await withTcpserver((target) => check(target, SEED));
  summary("tcpserver");
});

Deno.test(`model: listen mode, ${RUNS} runs of 3-5 concurrent sessions (seed ${SEED + 1})`, async () => {
  await withListener((target) => check(target, SEED + 1));
  summary("listen");
});

Deno.test({
  name:
    `model: listen mode with fd3spawn, ${RUNS} runs of 3-5 concurrent sessions (seed ${
      SEED + 2
    })${missing("spawner") ? ` (ignored: ${missing("spawner")})` : ""}`,
  ignore: missing("spawner") !== undefined,
  fn: async () => {
    const { dir, path } = await buildStarter("spawner");
    try {
      await withListener((target) => check(target, SEED + 2), path);
      summary("listen with fd3spawn");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The property's run function for one fixed set of scripts, for named regressions. */
async function replay(
  mode: keyof typeof TARGETS,
  scripts: readonly Script[],
): Promise<void> {
  await TARGETS[mode]((target) => round(target, scripts));
}

/** A script with defaults, for named tests. */
function scriptOf(part: Partial<Script>): Script {
  return {
    kind: "plain",
    happy: 0,
    tail: [],
    send: "step",
    end: "eof",
    eol: "\r\n",
    partial: null,
    cuts: [],
    ...part,
  };
}

Deno.test("model: fixed scripts — a full change, a set that hangs while the client leaves, a check that never reads fd 3, an unterminated quit", async (t) => {
  const scripts = [
    scriptOf({ happy: 3 }),
    scriptOf({ kind: "set-hang", happy: 3, end: "drop", eol: "\n" }),
    scriptOf({ kind: "noread", happy: 2, send: "pipeline", cuts: [3, 9] }),
    scriptOf({ happy: 1, partial: { op: "quit", verb: "lower", arg: false } }),
  ];
  for (const mode of ["tcpserver", "listen"] as const) {
    await t.step(mode, () => replay(mode, scripts));
  }
});
