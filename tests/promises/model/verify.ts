/**
 * Judging one session: walk what the client saw through the model, match
 * the ledger's runs against the predicted ones, and scan for secrets.
 *
 * @module
 */

import { bytes, hex, latin1, show } from "../../support/bytes.ts";
import type { LedgerEntry } from "../../support/ledger.ts";
import { R } from "../../support/pinned_replies.ts";
import { GREETING } from "../../support/sandbox.ts";
import { DELAY_SLACK_MS, FAIL_DELAY_MS, MAX_LINE } from "./settings.ts";
import type { Script } from "./scripts.ts";
import type { World } from "./world.ts";
import {
  asciiLower,
  type Branch,
  clientLines,
  type MState,
  predict,
} from "./model.ts";

/** What the client saw of one session. */
export interface Seen {
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
export function verify(seen: Seen, ledger: readonly LedgerEntry[]): Verdict {
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
export function secretHits(
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
