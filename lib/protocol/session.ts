/**
 * Drives one poppassd dialogue over a connection: reads bounded lines,
 * feeds them to the pure state machine, runs the back end it asks for,
 * applies the failure delay and the deadlines, writes the replies. The
 * same code serves stdio mode and every listen-mode connection.
 *
 * @module
 */

import type { Backend, Outcome, Peer } from "../stores/backend.ts";
import type { Clock } from "../common/clock.ts";
import { wipe } from "../common/wipe.ts";
import type { Limits } from "../common/limits.ts";
import { type ChunkSource, type LineEvent, LineReader } from "./lines.ts";
import { sanitize, type SessionLog } from "../common/log.ts";
import { type Effect, INITIAL, settle, type State, step } from "./protocol.ts";
import { REPLIES, replyBytes, type ReplyName } from "./replies.ts";
import { errorMessage } from "../common/errors.ts";

/** The two directions of a client connection. */
export interface Connection {
  /** Next chunk from the client, `null` at EOF. May reject when the client is gone. */
  readonly read: ChunkSource;
  /** Send octets; rejects when the client is gone. */
  readonly write: (bytes: Uint8Array) => Promise<void>;
}

/** Everything a session needs besides its connection. */
export interface SessionOptions {
  /** The greeting's octets (`greetingBytes(hostname)`). */
  readonly greeting: Uint8Array;
  readonly backend: Backend;
  readonly limits: Limits;
  readonly clock: Clock;
  readonly log: SessionLog;
  readonly peer: Peer;
  /** Aborted on shutdown: a session waiting for a line then ends. */
  readonly shutdown?: AbortSignal;
}

/** Why a session ended. */
export type SessionEnd =
  | "quit"
  | "eof"
  | "failure"
  | "tooLong"
  | "idleTimeout"
  | "sessionTimeout"
  | "clientGone"
  | "shutdown";

type Wait = LineEvent | {
  readonly kind: "idleTimeout" | "sessionTimeout" | "shutdown";
};

/** Serve one session to its end; never throws for anything the client or a back end does. */
export async function runSession(
  conn: Connection,
  options: SessionOptions,
): Promise<SessionEnd> {
  const started = options.clock.now();
  const end = await dialogue(conn, options, started);
  const seconds = ((options.clock.now() - started) / 1000).toFixed(3);
  options.log(`session end: ${end}, ${seconds} s`);
  return end;
}

async function dialogue(
  conn: Connection,
  options: SessionOptions,
  started: number,
): Promise<SessionEnd> {
  const { log, limits } = options;
  const send = async (bytes: Uint8Array) => {
    try {
      await conn.write(bytes);
      return true;
    } catch {
      return false;
    }
  };
  const reply = async (name: ReplyName, end: SessionEnd): Promise<SessionEnd> =>
    (await send(replyBytes(name))) ? end : "clientGone";

  if (!(await send(options.greeting))) return "clientGone";
  const safeRead: ChunkSource = () => conn.read().catch(() => null);
  const reader = new LineReader(safeRead, limits.maxLine, options.clock.now);
  let state: State = INITIAL;
  try {
    for (;;) {
      const event = await nextLine(reader, options, started);
      switch (event.kind) {
        case "eof":
          return "eof";
        case "shutdown":
          return "shutdown";
        case "tooLong":
          log(`line too long: over ${limits.maxLine} octets`);
          return reply("lineTooLong", "tooLong");
        case "idleTimeout":
        case "sessionTimeout":
          log(
            `${
              event.kind === "idleTimeout" ? "idle" : "session"
            } deadline passed`,
          );
          return reply("timeout", event.kind);
      }
      const next = step(state, event.line);
      wipe(event.line);
      if (next.kind === "reply") {
        state = next.state;
        if (next.reply === "bye") return reply("bye", "quit");
        if (state.kind === "closed") {
          log(`protocol error: ${REPLIES[next.reply].slice(4)}`);
          return reply(next.reply, "failure");
        }
        if (!(await send(replyBytes(next.reply)))) return "clientGone";
        continue;
      }
      const settled = settle(next.effect, await perform(next.effect, options));
      if (settled.delay) {
        const waited = options.clock.now() - event.arrivedAt;
        await options.clock.timer(limits.failDelayMs - waited).done;
      }
      if (settled.state.kind !== "newpass") wipeEffect(next.effect);
      state = settled.state;
      if (state.kind === "closed") return reply(settled.reply, "failure");
      if (!(await send(replyBytes(settled.reply)))) return "clientGone";
    }
  } finally {
    reader.dispose();
    if (state.kind === "newpass") wipe(state.user, state.old);
  }
}

/** The next line, or whichever deadline or shutdown comes first. */
async function nextLine(
  reader: LineReader,
  options: SessionOptions,
  started: number,
): Promise<Wait> {
  const { clock, limits, shutdown } = options;
  if (shutdown?.aborted) return { kind: "shutdown" };
  const sessionLeft = started + limits.sessionTimeoutMs - clock.now();
  const idle = clock.timer(Math.min(limits.idleTimeoutMs, sessionLeft));
  const kind = limits.idleTimeoutMs <= sessionLeft
    ? "idleTimeout"
    : "sessionTimeout";
  const line = reader.next();
  // One promise settled by whichever comes first (an idle listen-mode
  // session holds this, so it is kept small: no Promise.race).
  let onAbort = () => {};
  try {
    return await new Promise<Wait>((resolve, reject) => {
      onAbort = () => resolve({ kind: "shutdown" });
      shutdown?.addEventListener("abort", onAbort, { once: true });
      idle.done.then(() => resolve({ kind }));
      line.then(resolve, reject);
    });
  } finally {
    idle.cancel();
    shutdown?.removeEventListener("abort", onAbort);
    // A read still pending here ends when the caller closes the connection.
    line.catch(() => {});
  }
}

/** Run the back end for an effect and log what came of it, never a password. */
async function perform(
  effect: Effect,
  options: SessionOptions,
): Promise<Outcome> {
  const { backend, peer, log } = options;
  const user = sanitize(effect.user);
  let outcome: Outcome;
  try {
    outcome = effect.kind === "check"
      ? await backend.check(effect.user, effect.old, peer)
      : await backend.change(effect.user, effect.old, effect.next, peer);
  } catch (error) {
    const message = errorMessage(error);
    outcome = {
      kind: "temporary",
      reason: `back end error: ${sanitize(message, { allowSpace: true })}`,
    };
  }
  if (effect.kind === "check") {
    log(
      outcome.kind === "ok"
        ? `authentication succeeded for ${user}`
        : `authentication failed for ${user}: ${outcome.kind}, ${outcome.reason}`,
    );
  } else {
    if (outcome.kind !== "ok") {
      log(`change failed for ${user}: ${outcome.kind}, ${outcome.reason}`);
    }
    log(
      `Password change for ${user} ${
        outcome.kind === "ok" ? "succeeded" : "failed"
      }`,
    );
  }
  return outcome;
}

function wipeEffect(effect: Effect): void {
  wipe(effect.user, effect.old);
  if (effect.kind === "change") wipe(effect.next);
}
