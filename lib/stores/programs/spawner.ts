/**
 * The client of `fd3spawn.c` (`--fd3-spawner`): one long-lived helper
 * process that forks and execs every checkpassword and setpassword run, so
 * the server's event-loop thread only writes a request and reads a reply
 * instead of spawning a process with three pipes itself. The frames are
 * described at the top of `fd3spawn.c`.
 *
 * @module
 */

import {
  type ChildOptions,
  type ChildResult,
  type ChildSpawner,
  emitChildOutput,
} from "./child.ts";
import { CHILD_DRAIN_MS, CHILD_LOG_MAX } from "../../common/limits.ts";

/** Runs programs through one fd3spawn process. */
export interface Spawner extends ChildSpawner {
  /** The helper's process id while it runs (it starts at the first run). */
  pid(): number | undefined;
  /** Let running programs finish, then end the helper. */
  close(): Promise<void>;
}

const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const HEADER = 4 * 8;
const REPLY_HEADER = 4 * 9;
const HOW = ["exited", "signaled", "timeout", "spawnFailed"] as const;
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
  readonly options: ChildOptions;
  readonly resolve: (result: ChildResult) => void;
}

/** Encode one request; the caller wipes it after writing (it holds the payload). */
export function encodeRequest(
  id: number,
  keep: number,
  options: ChildOptions,
): Uint8Array {
  const env = Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
  const strings = [...options.argv, ...env].map((s) => encoder.encode(s));
  const size = HEADER - 4 +
    strings.reduce((n, s) => n + s.length + 1, 0) + options.payload.length;
  const frame = new Uint8Array(4 + size);
  const view = new DataView(frame.buffer);
  const fields = [
    size,
    id,
    options.timeoutMs,
    CHILD_DRAIN_MS,
    keep,
    options.argv.length,
    env.length,
    options.payload.length,
  ];
  fields.forEach((value, i) => view.setUint32(i * 4, value, LITTLE));
  let at = HEADER;
  for (const s of strings) {
    frame.set(s, at);
    at += s.length + 1;
  }
  frame.set(options.payload, at);
  return frame;
}

/** Start the helper at `path` (absolute, checked by the caller). */
export function startSpawner(
  path: string,
  log: (message: string) => void,
): Spawner {
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
        entry.resolve({
          kind: "spawnFailed",
          message: `fd3spawn ended (${how})`,
        });
      }
      await writer.close().catch(() => {});
    });
    return self;
  }

  return {
    async run(options) {
      const id = (counter = (counter + 1) >>> 0);
      const longest = (options.redact ?? []).reduce(
        (max, s) => Math.max(max, s.length),
        0,
      );
      const frame = encodeRequest(id, CHILD_LOG_MAX + longest, options);
      const result = new Promise<ChildResult>((resolve) =>
        pending.set(id, { options, resolve })
      );
      try {
        helper ??= launch();
        await helper.writer.write(frame);
      } catch (error) {
        pending.delete(id);
        const message = error instanceof Error ? error.message : String(error);
        return { kind: "spawnFailed", message: `fd3spawn: ${message}` };
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
  const [how, value, delivered] = [field(1), field(2), field(3)];
  const [outKept, errKept, outTotal, errTotal] = [
    field(4),
    field(5),
    field(6),
    field(7),
  ];
  const at = REPLY_HEADER - 4;
  const out = frame.subarray(at, at + outKept);
  const err = frame.subarray(at + outKept, at + outKept + errKept);
  const { options } = entry;
  const redact = options.redact ?? [];
  emitChildOutput(
    out,
    outTotal,
    redact,
    (line) => options.onOutput?.("stdout", line),
  );
  emitChildOutput(
    err,
    errTotal,
    redact,
    (line) => options.onOutput?.("stderr", line),
  );
  const message = decoder.decode(
    frame.subarray(at + outKept + errKept),
  );
  frame.fill(0);
  switch (HOW[how]) {
    case "exited":
      return entry.resolve({
        kind: "exited",
        code: value,
        delivered: delivered === 1,
      });
    case "signaled":
      return entry.resolve({
        kind: "signaled",
        signal: SIGNALS[value] || `signal ${value}`,
      });
    case "timeout":
      return entry.resolve({ kind: "timeout", ms: options.timeoutMs });
    default:
      return entry.resolve({ kind: "spawnFailed", message });
  }
}
