/**
 * Runs one checkpassword or setpassword program with a payload on fd 3.
 * It and `spawner.ts` (which starts the long-lived fd3spawn) are the only
 * modules that use `Deno.Command`.
 *
 * `Deno.Command` cannot hand a child a fourth descriptor, so a tiny
 * `/bin/sh` shim moves the stdin pipe onto fd 3 and puts `/dev/null` on
 * fd 0 before it execs the program. `fd3exec.c`, when the operator
 * builds it and names it (`--fd3-helper`), does the same and the setsid in
 * one exec instead of three. With `--fd3-spawner`, a long-lived
 * `fd3spawn.c` does all of it instead (`spawner.ts`). The child
 * runs in its own process group, which is killed on timeout and again
 * after a normal exit so no grandchild survives. Its stdout and stderr are captured for the log and
 * can never reach the client.
 *
 * @module
 */

import { realClock } from "../../common/clock.ts";
import {
  CHILD_DRAIN_MS,
  CHILD_LINE_MAX,
  CHILD_LOG_LINES,
  CHILD_LOG_MAX,
  CHILD_READ_SIZE,
  CHILD_READ_SMALL,
} from "../../common/limits.ts";
import { sanitize } from "../../common/log.ts";
import { errorMessage } from "../../common/errors.ts";
import { executableState } from "../../common/executable.ts";

/** How a child run ended. */
export type ChildResult =
  | {
    readonly kind: "exited";
    readonly code: number;
    readonly delivered: boolean;
  }
  | { readonly kind: "signaled"; readonly signal: string }
  | { readonly kind: "timeout"; readonly ms: number }
  | { readonly kind: "spawnFailed"; readonly message: string };

/** What to run and how. */
export interface ChildOptions {
  /** The program and its arguments; `argv[0]` is a path. */
  readonly argv: readonly string[];
  /** Octets written to the child's fd 3, then EOF. */
  readonly payload: Uint8Array;
  /** Deadline for the whole run, payload write included. */
  readonly timeoutMs: number;
  /** Variables added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Receives the child's output, one sanitised line at a time. */
  readonly onOutput?: (stream: "stdout" | "stderr", line: string) => void;
  /** Octet strings (passwords) blanked out of captured output before logging. */
  readonly redact?: readonly Uint8Array[];
  /** The compiled shim (`fd3exec.c`); without it, `/bin/sh` and `setsid`. */
  readonly helper?: string;
  /** A running `fd3spawn.c` (`spawner.ts`); it replaces `helper`. */
  readonly spawner?: ChildSpawner;
}

/** Something that runs a child for `runChild` in another process. */
export interface ChildSpawner {
  /** Same contract as `runChild`: never throws. */
  run(options: ChildOptions): Promise<ChildResult>;
}

/** The shim: payload pipe (stdin) onto fd 3, `/dev/null` onto fd 0, exec the program. */
export const FD3_SHIM = 'exec 3<&0 </dev/null; exec "$@"';

/**
 * util-linux `setsid`: it makes the program the leader of a new session and
 * process group without forking (the shell it replaces is no group leader),
 * so the group can be killed as a whole. Spawning with `detached: true`
 * would do the same, but it makes Deno fork() its whole address space on
 * the event-loop thread (1.7 ms at 31 MB RSS, 13 ms at 280 MB, measured),
 * where a plain spawn costs 0.2-0.4 ms.
 */
const SETSID = "/usr/bin/setsid";
let setsidPresent: boolean | undefined;

function spawnShim(options: ChildOptions): Deno.ChildProcess {
  if (options.helper !== undefined) {
    return new Deno.Command(options.helper, {
      args: [...options.argv],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { ...options.env },
    }).spawn();
  }
  setsidPresent ??= isExecutable(SETSID);
  const program = setsidPresent ? [SETSID, ...options.argv] : options.argv;
  return new Deno.Command("/bin/sh", {
    args: ["-c", FD3_SHIM, "qmail-poppass", ...program],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    detached: !setsidPresent,
    env: { ...options.env },
  }).spawn();
}

function isExecutable(path: string): boolean {
  return executableState(path) === "ok";
}

/** Run a program with `payload` on fd 3; never throws. */
export async function runChild(options: ChildOptions): Promise<ChildResult> {
  if (options.spawner) return await options.spawner.run(options);
  let child: Deno.ChildProcess;
  try {
    child = spawnShim(options);
  } catch (error) {
    return { kind: "spawnFailed", message: errorText(error) };
  }
  const redact = options.redact ?? [];
  const drains = [
    drain(child.stdout, (line) => options.onOutput?.("stdout", line), redact),
    drain(child.stderr, (line) => options.onOutput?.("stderr", line), redact),
  ];
  const result = await waitWithDeadline(
    child,
    options.payload,
    options.timeoutMs,
  );
  killGroup(child.pid);
  await finishDrains(drains);
  return result;
}

async function waitWithDeadline(
  child: Deno.ChildProcess,
  payload: Uint8Array,
  timeoutMs: number,
): Promise<ChildResult> {
  const timer = realClock.timer(timeoutMs);
  const expired = timer.done.then(() => "timeout" as const);
  const finished = (async () => {
    const delivered = await writePayload(child.stdin, payload);
    return { status: await child.status, delivered };
  })();
  try {
    const first = await Promise.race([finished, expired]);
    if (first === "timeout") {
      // In the first instant after spawn, before setsid has run, there is
      // no group yet: then kill the child itself (not yet reaped, so its pid
      // is still its own).
      if (!killGroup(child.pid)) killChild(child);
      await finished;
      return { kind: "timeout", ms: timeoutMs };
    }
    const { status, delivered } = first;
    if (status.signal !== null) {
      return { kind: "signaled", signal: status.signal };
    }
    return { kind: "exited", code: status.code, delivered };
  } finally {
    timer.cancel();
  }
}

/** Write the payload and close fd 3; false if the child did not take it. */
async function writePayload(
  stdin: WritableStream<Uint8Array>,
  payload: Uint8Array,
): Promise<boolean> {
  const writer = stdin.getWriter();
  try {
    await writer.write(payload);
    await writer.close();
    return true;
  } catch {
    // Broken pipe: the child exited without reading fd 3.
    await writer.abort().catch(() => {});
    return false;
  }
}

/** SIGKILL the child's whole process group; false when no such group exists. */
function killGroup(pid: number): boolean {
  try {
    Deno.kill(-pid, "SIGKILL");
    return true;
  } catch {
    // ESRCH: no process is left in the group.
    return false;
  }
}

function killChild(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch {
    // It has exited meanwhile.
  }
}

interface Drain {
  readonly done: Promise<void>;
  readonly cancel: () => Promise<void>;
}

/**
 * Read a child stream to its end, keeping the first CHILD_LOG_MAX octets for
 * the log. Reads go into a reused buffer (BYOB), small at first and big
 * once the log's share is full, so a child that floods hundreds of MiB
 * costs no memory beyond them and a quiet one costs 4 KiB.
 */
function drain(
  stream: ReadableStream<Uint8Array>,
  emit: (line: string) => void,
  redact: readonly Uint8Array[],
): Drain {
  const reader = stream.getReader({ mode: "byob" });
  const longest = redact.reduce(
    (max, secret) => Math.max(max, secret.length),
    0,
  );
  let kept: Uint8Array | undefined;
  let scratch = new Uint8Array(CHILD_READ_SMALL);
  let used = 0;
  let total = 0;
  const done = (async () => {
    try {
      for (;;) {
        // The read transfers `scratch`'s memory; the result views the same memory again.
        const { value, done } = await reader.read(scratch);
        if (done || !value) break;
        kept ??= new Uint8Array(CHILD_LOG_MAX + longest);
        const room = Math.min(value.length, kept.length - used);
        kept.set(value.subarray(0, room), used);
        used += room;
        total += value.length;
        // Wipe what the child printed; keep the buffer until the log's
        // share is full, then drain into a big one.
        const wiped = new Uint8Array(value.buffer).fill(0);
        scratch = used < kept.length || wiped.length === CHILD_READ_SIZE
          ? wiped
          : new Uint8Array(CHILD_READ_SIZE);
      }
    } catch {
      // Cancelled after the drain deadline, or the pipe failed: log what we have.
    }
    if (kept === undefined) return;
    emitChildOutput(kept.subarray(0, used), total, redact, emit);
    kept.fill(0);
  })();
  return { done, cancel: () => reader.cancel().catch(() => {}) };
}

/** Wait for both output streams, but not for a grandchild that escaped the group. */
async function finishDrains(drains: readonly Drain[]): Promise<void> {
  const timer = realClock.timer(CHILD_DRAIN_MS);
  const all = Promise.all(drains.map((d) => d.done));
  const first = await Promise.race([
    all,
    timer.done.then(() => "late" as const),
  ]);
  timer.cancel();
  if (first === "late") {
    await Promise.all(drains.map((d) => d.cancel()));
    await all;
  }
}

/**
 * Log what a child printed on one stream: `kept` is its first octets
 * (CHILD_LOG_MAX plus the longest secret, so a password cut at the limit
 * is still found), `total` how many it printed. Passwords are blanked out
 * of `kept` in place.
 */
export function emitChildOutput(
  kept: Uint8Array,
  total: number,
  redact: readonly Uint8Array[],
  emit: (line: string) => void,
): void {
  if (total === 0) return;
  const logged = emitLines(kept, redact, emit);
  if (total > logged) emit(`(${total - logged} more octets not logged)`);
}

/** Emit at most CHILD_LOG_LINES lines of the captured octets; returns the octets logged. */
function emitLines(
  captured: Uint8Array,
  redact: readonly Uint8Array[],
  emit: (line: string) => void,
): number {
  for (const secret of redact) blankOut(captured, secret);
  const text = captured.subarray(0, Math.min(captured.length, CHILD_LOG_MAX));
  let start = 0;
  for (let lines = 0; start < text.length && lines < CHILD_LOG_LINES; lines++) {
    let end = text.indexOf(0x0a, start);
    if (end < 0) end = text.length;
    if (end > start) {
      emit(
        sanitize(text.subarray(start, end), {
          allowSpace: true,
          max: CHILD_LINE_MAX,
        }),
      );
    }
    start = end + 1;
  }
  return Math.min(start, text.length);
}

/** Replace every occurrence of `secret` in `buffer` with `*`. */
function blankOut(buffer: Uint8Array, secret: Uint8Array): void {
  if (secret.length === 0) return;
  for (
    let i = buffer.indexOf(secret[0]!);
    i >= 0;
    i = buffer.indexOf(secret[0]!, i + 1)
  ) {
    if (i + secret.length > buffer.length) break;
    let match = true;
    for (let j = 1; j < secret.length && match; j++) {
      match = buffer[i + j] === secret[j];
    }
    if (match) buffer.fill(0x2a, i, i + secret.length);
  }
}

const errorText = errorMessage;
