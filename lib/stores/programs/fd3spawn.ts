/**
 * The `fd3spawn` starter (`--fd3-spawner`): one long-lived
 * `lib/stores/programs/fd3spawn.c` process that vforks and execs every
 * checkpassword and setpassword run, so the server's event-loop thread
 * only writes a request and reads a reply instead of spawning a process
 * with three pipes itself. The frames are described at the top of
 * `fd3spawn.c`; the constants below carry the same names there.
 *
 * A run that gets no reply by its deadline plus `CHILD_DEADLINE_MARGIN_MS`
 * (fd3spawn stopped or wedged) kills fd3spawn, whose programs die with it
 * (their parent-death signal); the next run starts a new one.
 *
 * @module
 */

import { realClock, type Timer } from "../../common/clock.ts";
import { errorMessage } from "../../common/errors.ts";
import {
  CHILD_DEADLINE_MARGIN_MS,
  CHILD_DRAIN_MS,
} from "../../common/limits.ts";
import {
  type Captured,
  type ChildResult,
  NOTHING,
  type RunRequest,
  type RunResult,
  type Starter,
} from "./starter.ts";

/** Octets of fixed fields after a request's u32 size (`REQUEST_HEADER` in C). */
export const REQUEST_HEADER = 7 * 4;
/** Octets of fixed fields after a reply's u32 size (`REPLY_HEADER` in C). */
export const REPLY_HEADER = 8 * 4;
/** A reply's "how" (`enum how` in C). */
export const HOW = {
  exited: 0,
  signaled: 1,
  timeout: 2,
  spawnFailed: 3,
} as const;

/** The fd3spawn starter, with what only tests and the bench look at. */
export interface Fd3spawnStarter extends Starter {
  /** The helper's process id while it runs (it starts at the first run). */
  pid(): number | undefined;
}

const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Linux signal numbers, for the log (`killed by SIGKILL`). */
const SIGNALS = [
  "",
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
];

interface Pending {
  readonly request: RunRequest;
  readonly resolve: (result: RunResult) => void;
  readonly watchdog: Timer;
}

/** Encode one request; the caller wipes it after writing (it holds the payload). */
export function encodeRequest(id: number, request: RunRequest): Uint8Array {
  const env = Object.entries(request.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const strings = [...request.argv, ...env].map((s) => encoder.encode(s));
  const size = REQUEST_HEADER +
    strings.reduce((n, s) => n + s.length + 1, 0) + request.payload.length;
  const frame = new Uint8Array(4 + size);
  const view = new DataView(frame.buffer);
  const fields = [
    size,
    id,
    request.timeoutMs,
    CHILD_DRAIN_MS,
    request.keep,
    request.argv.length,
    env.length,
    request.payload.length,
  ];
  fields.forEach((value, i) => view.setUint32(i * 4, value, LITTLE));
  let at = 4 + REQUEST_HEADER;
  for (const s of strings) {
    frame.set(s, at);
    at += s.length + 1;
  }
  frame.set(request.payload, at);
  return frame;
}

const failed = (message: string): RunResult => ({
  ending: { kind: "spawnFailed", message },
  stdout: NOTHING,
  stderr: NOTHING,
});

/** Start the helper at `path` (absolute, checked by the caller) at the first run. */
export function fd3spawnStarter(
  path: string,
  log: (message: string) => void,
): Fd3spawnStarter {
  const pending = new Map<number, Pending>();
  let counter = 0;
  let helper: ReturnType<typeof launch> | undefined;

  function launch() {
    const process = new Deno.Command(path, {
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const writer = process.stdin.getWriter();
    const self = { process, writer, reading: Promise.resolve() };
    self.reading = readReplies(process.stdout, pending).then(async () => {
      // The helper is gone: every run it had is lost.
      if (helper === self) helper = undefined;
      const status = await process.status;
      const how = status.signal ?? `exit ${status.code}`;
      if (pending.size > 0) {
        log(`fd3spawn ended (${how}) during ${pending.size} runs`);
      }
      for (const [id, entry] of pending) {
        pending.delete(id);
        entry.watchdog.cancel();
        entry.resolve(failed(`fd3spawn ended (${how})`));
      }
      await writer.close().catch(() => {});
    });
    return self;
  }

  /** No reply in time: fd3spawn is stopped or wedged, so it goes. */
  function overdue(id: number, ms: number): void {
    const current = helper;
    if (!pending.has(id) || !current) return;
    log(`fd3spawn gave no reply within ${ms / 1000} s: killing it`);
    try {
      current.process.kill("SIGKILL");
    } catch {
      // It has exited meanwhile; its end resolves the runs.
    }
  }

  return {
    name: `fd-3 spawner ${path}`,
    async run(request) {
      const id = (counter = (counter + 1) >>> 0);
      const frame = encodeRequest(id, request);
      const limit = request.timeoutMs + CHILD_DEADLINE_MARGIN_MS;
      const watchdog = realClock.timer(limit);
      void watchdog.done.then(() => overdue(id, limit));
      const result = new Promise<RunResult>((resolve) =>
        pending.set(id, { request, resolve, watchdog })
      );
      try {
        helper ??= launch();
        await helper.writer.write(frame);
      } catch (error) {
        pending.delete(id);
        watchdog.cancel();
        return failed(`fd3spawn: ${errorMessage(error)}`);
      } finally {
        frame.fill(0);
      }
      return await result;
    },
    pid: () => helper?.process.pid,
    async close() {
      const current = helper;
      if (!current) return;
      await current.writer.close().catch(() => {});
      await current.reading;
    },
  };
}

/** Read reply frames until the helper's stdout ends. */
async function readReplies(
  stream: ReadableStream<Uint8Array>,
  pending: Map<number, Pending>,
): Promise<void> {
  let buffer = new Uint8Array(64 * 1024);
  let used = 0;
  try {
    for await (const chunk of stream) {
      if (used + chunk.length > buffer.length) {
        const bigger = new Uint8Array(
          Math.max(buffer.length * 2, used + chunk.length),
        );
        bigger.set(buffer.subarray(0, used));
        buffer.fill(0);
        buffer = bigger;
      }
      buffer.set(chunk, used);
      chunk.fill(0);
      used += chunk.length;
      let start = 0;
      while (used - start >= 4) {
        const view = new DataView(buffer.buffer, start);
        const size = view.getUint32(0, LITTLE);
        if (used - start < 4 + size) break;
        deliver(buffer.subarray(start + 4, start + 4 + size), pending);
        start += 4 + size;
      }
      buffer.copyWithin(0, start, used);
      buffer.fill(0, used - start, used);
      used -= start;
    }
  } catch {
    // The pipe failed: treated as the helper's end.
  }
  buffer.fill(0);
}

function deliver(frame: Uint8Array, pending: Map<number, Pending>): void {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  const field = (i: number) => view.getUint32(i * 4, LITTLE);
  const id = field(0);
  const entry = pending.get(id);
  if (!entry) return;
  pending.delete(id);
  entry.watchdog.cancel();
  const [how, value, delivered] = [field(1), field(2), field(3)];
  const [outKept, errKept, outTotal, errTotal] = [
    field(4),
    field(5),
    field(6),
    field(7),
  ];
  const at = REPLY_HEADER;
  // Copies: the caller wipes them once logged, and the frame is wiped now.
  const stdout: Captured = {
    kept: frame.slice(at, at + outKept),
    total: outTotal,
  };
  const stderr: Captured = {
    kept: frame.slice(at + outKept, at + outKept + errKept),
    total: errTotal,
  };
  const message = decoder.decode(frame.subarray(at + outKept + errKept));
  frame.fill(0);
  entry.resolve({
    ending: ending(how, value, delivered, message, entry.request),
    stdout,
    stderr,
  });
}

function ending(
  how: number,
  value: number,
  delivered: number,
  message: string,
  request: RunRequest,
): ChildResult {
  switch (how) {
    case HOW.exited:
      return { kind: "exited", code: value, delivered: delivered === 1 };
    case HOW.signaled:
      return { kind: "signaled", signal: SIGNALS[value] || `signal ${value}` };
    case HOW.timeout:
      return { kind: "timeout", ms: request.timeoutMs };
    default:
      return { kind: "spawnFailed", message };
  }
}
