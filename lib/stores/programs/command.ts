/**
 * The starters that spawn each program from the Deno process with
 * `Deno.Command`: the `/bin/sh` shim and the compiled `fd3exec`.
 *
 * `Deno.Command` cannot hand a child a fourth descriptor, so the payload
 * goes to the starter's stdin, which it moves onto fd 3 before it starts
 * the program with `/dev/null` on fd 0. The starter leads a new session
 * and process group, waits for the program, and turns an exit 0 that left
 * part of the payload unread into exit 111; the server kills the whole
 * group after the run (or at its deadline), so no grandchild survives.
 * The program's stdout and stderr are captured for the log and can never
 * reach the client.
 *
 * @module
 */

import { realClock } from "../../common/clock.ts";
import { UsageError } from "../../config/options.ts";
import { errorMessage } from "../../common/errors.ts";
import { executableState } from "../../common/executable.ts";
import {
  CHILD_DRAIN_MS,
  CHILD_READ_SIZE,
  CHILD_READ_SMALL,
} from "../../common/limits.ts";
import {
  type Captured,
  type ChildResult,
  NOTHING,
  type RunRequest,
  type RunResult,
  type Starter,
} from "./starter.ts";

/**
 * The shim, run as `sh -c SHIM qmail-poppass PROGRAM ARGS…`: payload pipe
 * (stdin) onto fd 3, `/dev/null` onto fd 0, descriptors the server
 * inherited closed (`CLOSE`), then the program as a child of the shell.
 * After it, an exit 0 with octets left on fd 3 (`wc -c` reads them) becomes
 * exit 111, and a death by signal N (status 128+N: the shell cannot tell
 * it from an exit 128+N) is passed on as the same signal.
 */
export const FD3_SHIM = [
  "exec 3<&0 </dev/null CLOSE",
  '"$@"',
  "s=$?",
  'if [ "$s" -eq 0 ] && [ "$(wc -c <&3)" -ne 0 ]; then',
  '  echo "qmail-poppass: $1 exited 0 without reading fd 3 to its end" >&2',
  "  exit 111",
  "fi",
  '[ "$s" -gt 128 ] && kill -"$((s - 128))" "$$"',
  'exit "$s"',
].join("\n");

/**
 * util-linux `setsid`: it makes the shell the leader of a new session and
 * process group without forking (the process Deno starts is no group
 * leader), so the group can be killed as a whole. Spawning with
 * `detached: true` would do the same, but it makes Deno fork() its whole
 * address space on the event-loop thread (1.7 ms at 31 MB RSS, 13 ms at
 * 280 MB, measured), where a plain spawn costs 0.2-0.4 ms; it is the
 * fallback where there is no `setsid`, decided once when the starter opens.
 */
const SETSID = "/usr/bin/setsid";
/** dash, Debian's /bin/sh, cannot name descriptors above 9; bash can. */
const BASH = "/bin/bash";
/** O_CLOEXEC in the octal `flags:` of /proc/self/fdinfo (Linux). */
const O_CLOEXEC = 0o2000000;

/**
 * Descriptors above 2 this process holds without close-on-exec: inherited
 * from whoever started the server (Deno opens its own with the flag), so
 * every spawned child would get them too. Linux only; elsewhere none.
 */
export function inheritedDescriptors(): number[] {
  const found: number[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync("/proc/self/fdinfo")];
  } catch {
    return found;
  }
  for (const entry of entries) {
    const fd = Number(entry.name);
    if (!(fd > 2)) continue;
    try {
      const info = Deno.readTextFileSync(`/proc/self/fdinfo/${fd}`);
      const flags = /^flags:\s*([0-7]+)/m.exec(info);
      if (flags && (parseInt(flags[1]!, 8) & O_CLOEXEC) === 0) found.push(fd);
    } catch {
      // The descriptor of the directory listing itself, closed meanwhile.
    }
  }
  return found.sort((a, b) => a - b);
}

/**
 * The `/bin/sh` shim: no compiler needed. Decided once, here: `setsid` or
 * a detached spawn, and which inherited descriptors the shim closes (with
 * bash when one is above 9; without bash, that is a startup error, a
 * `UsageError`).
 */
export function shimStarter(
  inherited: readonly number[] = inheritedDescriptors(),
  bash: string = BASH,
): Starter {
  const setsid = isExecutable(SETSID);
  const closing = inherited.filter((fd) => fd !== 3);
  const high = closing.filter((fd) => fd > 9);
  if (high.length > 0 && !isExecutable(bash)) {
    throw new UsageError(
      `descriptors ${
        high.join(", ")
      } are open without close-on-exec: /bin/sh cannot close them and there is no ${bash}; ` +
        "start qmail-poppass without them, or use --fd3-helper",
    );
  }
  const shell = high.length > 0 ? bash : "/bin/sh";
  const script = FD3_SHIM.replace(
    "CLOSE",
    closing.map((fd) => `${fd}<&-`).join(" "),
  );
  return commandStarter(`fd-3 shim ${shell}`, (request) => {
    const shim = [shell, "-c", script, "qmail-poppass", ...request.argv];
    const [program, ...args] = setsid ? [SETSID, ...shim] : shim;
    return command(program!, args, request, !setsid);
  });
}

/** `lib/stores/programs/fd3exec.c` at `path` (absolute, checked by the caller). */
export function fd3execStarter(path: string): Starter {
  return commandStarter(
    `fd-3 helper ${path}`,
    (request) => command(path, [...request.argv], request, false),
  );
}

function command(
  program: string,
  args: string[],
  request: RunRequest,
  detached: boolean,
): Deno.ChildProcess {
  return new Deno.Command(program, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    detached,
    env: { ...request.env },
  }).spawn();
}

function isExecutable(path: string): boolean {
  return executableState(path) === "ok";
}

function commandStarter(
  name: string,
  spawn: (request: RunRequest) => Deno.ChildProcess,
): Starter {
  return {
    name,
    run: (request) => runCommand(spawn, request),
    close: () => Promise.resolve(),
  };
}

async function runCommand(
  spawn: (request: RunRequest) => Deno.ChildProcess,
  request: RunRequest,
): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = spawn(request);
  } catch (error) {
    const message = errorMessage(error);
    return {
      ending: { kind: "spawnFailed", message },
      stdout: NOTHING,
      stderr: NOTHING,
    };
  }
  const drains = [
    drain(child.stdout, request.keep),
    drain(child.stderr, request.keep),
  ] as const;
  const ending = await waitWithDeadline(
    child,
    request.payload,
    request.timeoutMs,
  );
  killGroup(child.pid);
  const [stdout, stderr] = await finishDrains(drains);
  return { ending, stdout, stderr };
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

/** Write the payload and close fd 3; false if the starter did not take it. */
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
    // Broken pipe: the starter ended before the payload was written.
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
  readonly done: Promise<Captured>;
  readonly cancel: () => Promise<void>;
}

/**
 * Read a child stream to its end, keeping the first `keep` octets. Reads
 * go into a reused buffer (BYOB), small at first and big once the kept
 * share is full, so a child that floods hundreds of MiB costs no memory
 * beyond them and a quiet one costs 4 KiB.
 */
function drain(stream: ReadableStream<Uint8Array>, keep: number): Drain {
  const reader = stream.getReader({ mode: "byob" });
  let kept: Uint8Array | undefined;
  let scratch = new Uint8Array(CHILD_READ_SMALL);
  let used = 0;
  let total = 0;
  const done = (async (): Promise<Captured> => {
    try {
      for (;;) {
        // The read transfers `scratch`'s memory; the result views the same memory again.
        const { value, done } = await reader.read(scratch);
        if (done || !value) break;
        kept ??= new Uint8Array(keep);
        const room = Math.min(value.length, kept.length - used);
        kept.set(value.subarray(0, room), used);
        used += room;
        total += value.length;
        // Wipe what the child printed; keep the buffer until the kept
        // share is full, then drain into a big one.
        const wiped = new Uint8Array(value.buffer).fill(0);
        scratch = used < kept.length || wiped.length === CHILD_READ_SIZE
          ? wiped
          : new Uint8Array(CHILD_READ_SIZE);
      }
    } catch {
      // Cancelled after the drain deadline, or the pipe failed: keep what we have.
    }
    return kept === undefined
      ? NOTHING
      : { kept: kept.subarray(0, used), total };
  })();
  return { done, cancel: () => reader.cancel().catch(() => {}) };
}

/** Wait for both output streams, but not for a grandchild that escaped the group. */
async function finishDrains(
  drains: readonly [Drain, Drain],
): Promise<[Captured, Captured]> {
  const timer = realClock.timer(CHILD_DRAIN_MS);
  const all = Promise.all([drains[0].done, drains[1].done]);
  const first = await Promise.race([
    all,
    timer.done.then(() => "late" as const),
  ]);
  timer.cancel();
  if (first !== "late") return first;
  await Promise.all(drains.map((d) => d.cancel()));
  return await all;
}
