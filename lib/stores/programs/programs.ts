/**
 * The external back end: the checkpassword chain verifies, the
 * `PASSWORD_COMMAND` program (setpassword) changes, each fed its payload on
 * fd 3 through `child.ts`.
 *
 * @module
 */

import type { Backend, Outcome, Peer } from "../backend.ts";
import { type ChildResult, type ChildSpawner, runChild } from "./child.ts";
import { changePayload, checkPayload, payloadFits } from "./fd3.ts";
import { wipe } from "../../common/wipe.ts";
import { PAYLOAD_MAX } from "../../common/limits.ts";

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

/** Settings for the external back end. */
export interface ProgramOptions {
  /** The checkpassword chain, exactly as given after the host name. */
  readonly checkArgv: readonly string[];
  /** The words of `PASSWORD_COMMAND`. */
  readonly setArgv: readonly string[];
  /** Deadline per child program. */
  readonly childTimeoutMs: number;
  /** The compiled fd-3 shim (`--fd3-helper`); without it, `/bin/sh`. */
  readonly helper?: string;
  /** A running fd3spawn (`--fd3-spawner`); it replaces `helper`. */
  readonly spawner?: ChildSpawner;
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
      const result = await runChild({
        argv,
        payload,
        timeoutMs: options.childTimeoutMs,
        env: peer.env,
        redact: secrets,
        ...(options.helper === undefined ? {} : { helper: options.helper }),
        ...(options.spawner === undefined ? {} : { spawner: options.spawner }),
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
