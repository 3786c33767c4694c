/**
 * The external back end: the checkpassword chain verifies, the
 * `PASSWORD_COMMAND` program (setpassword) changes, each fed its payload on
 * fd 3 by the one `Starter` chosen at startup (`openStarter`), with a
 * server-side deadline whatever the starter does, and what it printed
 * logged without passwords (`output.ts`).
 *
 * @module
 */

import type { Backend, Outcome, Peer } from "../backend.ts";
import { changePayload, checkPayload, payloadFits } from "./fd3.ts";
import { wipe } from "../../common/wipe.ts";
import { CHILD_DEADLINE_MARGIN_MS, PAYLOAD_MAX } from "../../common/limits.ts";
import { realClock } from "../../common/clock.ts";
import { emitCaptured, keepFor } from "./output.ts";
import { fd3execStarter, shimStarter } from "./command.ts";
import { fd3spawnStarter } from "./fd3spawn.ts";
import type {
  ChildResult,
  RunResult,
  Starter,
  StarterChoice,
} from "./starter.ts";

/** Exit codes of the checkpassword and setpassword interfaces. */
export const CHILD_EXIT = {
  ok: 0,
  rejected: 1,
  misuse: 2,
  temporary: 111,
  /** From the shim: the program exists no more or cannot be executed. */
  cannotExecute: 126,
  notFound: 127,
} as const;

/** Open the starter the configuration chose; the caller closes it. */
export function openStarter(
  choice: StarterChoice,
  log: (message: string) => void,
): Starter {
  switch (choice.kind) {
    case "shim":
      return shimStarter();
    case "fd3exec":
      return fd3execStarter(choice.path);
    case "fd3spawn":
      return fd3spawnStarter(choice.path, log);
  }
}

/** Settings for the external back end. */
export interface ProgramOptions {
  /** The checkpassword chain, exactly as given after the host name. */
  readonly checkArgv: readonly string[];
  /** The words of `PASSWORD_COMMAND`. */
  readonly setArgv: readonly string[];
  /** Deadline per child program. */
  readonly childTimeoutMs: number;
  /** How every program is started. */
  readonly starter: Starter;
}

/** One program run, as the back end asks for it. */
export interface ProgramRun {
  /** The program and its arguments; `argv[0]` is a path. */
  readonly argv: readonly string[];
  /** Octets written to the program's fd 3, then EOF. */
  readonly payload: Uint8Array;
  /** The starter's deadline; the server's is `CHILD_DEADLINE_MARGIN_MS` later. */
  readonly timeoutMs: number;
  /** Variables added to the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Octet strings (passwords) blanked out of captured output before logging. */
  readonly redact?: readonly Uint8Array[];
  /** Receives the program's output, one sanitised line at a time. */
  readonly onOutput?: (stream: "stdout" | "stderr", line: string) => void;
}

/**
 * Run one program through `starter` and log what it printed; never throws.
 * Whatever the starter does, the result comes at most
 * `CHILD_DEADLINE_MARGIN_MS` after the run's deadline (then as a timeout).
 */
export async function runProgram(
  starter: Starter,
  run: ProgramRun,
): Promise<ChildResult> {
  const redact = run.redact ?? [];
  const started = starter.run({
    argv: run.argv,
    payload: run.payload,
    timeoutMs: run.timeoutMs,
    ...(run.env === undefined ? {} : { env: run.env }),
    keep: keepFor(redact),
  }).catch((error): RunResult => ({
    ending: { kind: "spawnFailed", message: String(error) },
    stdout: { kept: new Uint8Array(0), total: 0 },
    stderr: { kept: new Uint8Array(0), total: 0 },
  }));
  const limit = run.timeoutMs + CHILD_DEADLINE_MARGIN_MS;
  const timer = realClock.timer(limit);
  const first = await Promise.race([
    started,
    timer.done.then(() => "late" as const),
  ]);
  timer.cancel();
  if (first === "late") {
    // The starter answers later, or never: its output is wiped unread.
    void started.then((late) => {
      late.stdout.kept.fill(0);
      late.stderr.kept.fill(0);
    });
    return { kind: "timeout", ms: limit };
  }
  for (const stream of ["stdout", "stderr"] as const) {
    emitCaptured(first[stream], redact, (line) => run.onOutput?.(stream, line));
  }
  return first.ending;
}

/**
 * Map how a child ended to an outcome: exit 0 succeeds; 111, a signal, a
 * timeout or a failed start are temporary; every other exit is a rejection
 * (3 included: vpopmail's vchkpw uses it for a bad password).
 */
export function outcomeOf(result: ChildResult): Outcome {
  switch (result.kind) {
    case "spawnFailed":
      return { kind: "temporary", reason: `cannot start: ${result.message}` };
    case "timeout":
      return {
        kind: "temporary",
        reason: `timeout after ${result.ms / 1000} s`,
      };
    case "signaled":
      return { kind: "temporary", reason: `killed by ${result.signal}` };
    case "exited":
      return exitOutcome(result.code, result.delivered);
  }
}

function exitOutcome(code: number, delivered: boolean): Outcome {
  if (code === CHILD_EXIT.ok) {
    return delivered
      ? { kind: "ok" }
      : { kind: "temporary", reason: "exit 0 without reading fd 3" };
  }
  if (code === CHILD_EXIT.temporary) {
    return { kind: "temporary", reason: "exit 111" };
  }
  if (code === CHILD_EXIT.cannotExecute || code === CHILD_EXIT.notFound) {
    return {
      kind: "temporary",
      reason: `exit ${code}, program cannot be executed`,
    };
  }
  return { kind: "rejected", reason: `exit ${code}` };
}

/** A back end that runs the configured programs. */
export function programBackend(options: ProgramOptions): Backend {
  const run = async (
    argv: readonly string[],
    payload: Uint8Array,
    secrets: Uint8Array[],
    peer: Peer,
  ): Promise<Outcome> => {
    try {
      if (!payloadFits(payload)) {
        return {
          kind: "rejected",
          reason:
            `fd-3 payload of ${payload.length} octets exceeds ${PAYLOAD_MAX}, not sent`,
        };
      }
      const name = argv[0] ?? "?";
      const result = await runProgram(options.starter, {
        argv,
        payload,
        timeoutMs: options.childTimeoutMs,
        env: peer.env,
        redact: secrets,
        onOutput: (stream, line) => peer.log?.(`${name} ${stream}: ${line}`),
      });
      return outcomeOf(result);
    } finally {
      wipe(payload);
    }
  };
  return {
    check: (user, old, peer) =>
      run(options.checkArgv, checkPayload(user, old), [old], peer),
    change: (user, old, next, peer) =>
      run(options.setArgv, changePayload(user, old, next), [old, next], peer),
  };
}
