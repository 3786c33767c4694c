/**
 * The PAM store: Unix accounts (or whatever the PAM stack checks) through
 * `libpam`, as Debian's poppassd does, without external programs. Every
 * PAM transaction runs in a Worker of its own, so a module that blocks
 * (pam_unix sleeps about 2 s after a failure; others do network I/O)
 * holds up no other session; past the child deadline the worker is ended
 * and the outcome is a temporary failure.
 *
 * This module is also the worker's module: loaded in a Worker named
 * {@link WORKER_NAME}, it serves PAM requests instead.
 *
 * @module
 */

import type { Backend, Outcome, Peer } from "../backend.ts";
import { sanitize } from "../../common/log.ts";
import { PAM } from "./ffi.ts";
import {
  isPamWorker,
  startPamWorker,
  WORKER_NAME,
  type WorkerReply,
  type WorkerRequest,
} from "./worker.ts";

export { WORKER_NAME } from "./worker.ts";

/** Settings of {@link createPamBackend}. */
export interface PamOptions {
  /** The PAM service name: `/etc/pam.d/SERVICE`. */
  readonly service: string;
  /** Accounts with a smaller uid (and uid 0) are refused like unknown users. */
  readonly minUid: number;
  /** Deadline of one PAM transaction (`--child-timeout`). */
  readonly timeoutMs: number;
}

/** PAM codes that mean "wrong password or no such user" in any step. */
const REJECTED = new Set<number>([
  PAM.AUTH_ERR,
  PAM.USER_UNKNOWN,
  PAM.MAXTRIES,
  PAM.PERM_DENIED,
  PAM.ACCT_EXPIRED,
  PAM.AUTHTOK_EXPIRED,
]);

/** PAM codes of `pam_chauthtok` that mean the new password was not taken. */
const CHANGE_REFUSED = new Set<number>([
  PAM.AUTHTOK_ERR,
  PAM.AUTHTOK_RECOVERY_ERR,
  PAM.AUTHTOK_DISABLE_AGING,
  PAM.PERM_DENIED,
  PAM.TRY_AGAIN,
]);

/**
 * A PAM reply as an outcome: auth errors and unknown users are rejected,
 * the new password's refusal (`PAM_AUTHTOK_ERR`, quality checks) is a
 * rejected change, service and system errors are temporary. The reason
 * names the step and PAM's error text.
 */
export function outcomeOf(reply: WorkerReply): Outcome {
  if (reply.kind === "refused") {
    return { kind: "rejected", reason: reply.reason };
  }
  if (reply.kind === "error") {
    return { kind: "temporary", reason: `PAM unavailable: ${reply.message}` };
  }
  if (reply.code === PAM.SUCCESS) return { kind: "ok" };
  if (reply.step === "acct_mgmt" && reply.code === PAM.NEW_AUTHTOK_REQD) {
    return { kind: "ok" };
  }
  if (reply.step === "verify") {
    return {
      kind: "rejected",
      reason: `pam_chauthtok succeeded but the new password does not ` +
        `authenticate: ${reply.error} (${reply.code})`,
    };
  }
  const reason = `pam_${reply.step}: ${reply.error} (${reply.code})`;
  const rejected = reply.step === "chauthtok"
    ? CHANGE_REFUSED.has(reply.code) || REJECTED.has(reply.code)
    : reply.step !== "start" && REJECTED.has(reply.code);
  return rejected
    ? { kind: "rejected", reason }
    : { kind: "temporary", reason };
}

/**
 * Make a {@link Backend} over the PAM service `options.service`. Checks
 * run side by side; changes run one at a time (see {@link serial}), the
 * wait counting toward the deadline.
 */
export function createPamBackend(options: PamOptions): Backend {
  const oneChangeAtATime = serial();
  return {
    check: (user, oldPassword, peer) =>
      transaction(options, options.timeoutMs, { user, oldPassword }, peer),
    change: (user, oldPassword, newPassword, peer) => {
      const deadline = performance.now() + options.timeoutMs;
      return oneChangeAtATime(() => {
        const left = Math.floor(deadline - performance.now());
        if (left <= 0) {
          return Promise.resolve(
            {
              kind: "temporary",
              reason:
                `another password change held PAM for ${options.timeoutMs} ms`,
            } as const,
          );
        }
        return transaction(options, left, {
          user,
          oldPassword,
          newPassword,
        }, peer);
      });
    },
  };
}

/**
 * A queue that runs one task at a time, in order. pam_unix holds
 * /etc/shadow's lock (`lckpwdf`) while it updates, and another thread of
 * the same process does not wait for that lock: it fails at once with
 * `PAM_AUTHTOK_LOCK_BUSY` (measured: three of six concurrent changes in
 * one process failed so). Separate processes (tcpserver) do wait for it.
 */
export function serial(): <T>(task: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = tail.then(task);
    tail = run.catch(() => {});
    return run;
  };
}

/** Run one transaction in a fresh worker, bounded by `timeoutMs`. */
async function transaction(
  options: PamOptions,
  timeoutMs: number,
  secrets: {
    user: Uint8Array;
    oldPassword: Uint8Array;
    newPassword?: Uint8Array;
  },
  peer: Peer,
): Promise<Outcome> {
  // Copies the worker receives by transfer and wipes; the caller wipes its own.
  const request: WorkerRequest = {
    service: options.service,
    user: secrets.user.slice(),
    oldPassword: secrets.oldPassword.slice(),
    ...(secrets.newPassword
      ? { newPassword: secrets.newPassword.slice() }
      : {}),
    remoteIp: peer.remoteIp,
    minUid: options.minUid,
  };
  const reply = await inWorker(request, timeoutMs);
  if (reply !== "timeout" && reply.kind === "pam") {
    for (const text of reply.messages) {
      peer.log?.(`PAM says: ${sanitize(text, { allowSpace: true })}`);
    }
  }
  return reply === "timeout"
    ? {
      kind: "temporary",
      reason: `PAM took longer than ${timeoutMs} ms`,
    }
    : outcomeOf(reply);
}

function inWorker(
  request: WorkerRequest,
  timeoutMs: number,
): Promise<WorkerReply | "timeout"> {
  const transfer = [request.user, request.oldPassword, request.newPassword]
    .flatMap((bytes) => bytes ? [bytes.buffer as ArrayBuffer] : []);
  const worker = new Worker(import.meta.url, {
    type: "module",
    name: WORKER_NAME,
  });
  const { promise, resolve } = Promise.withResolvers<WorkerReply | "timeout">();
  const timer = setTimeout(() => resolve("timeout"), timeoutMs);
  worker.onmessage = (event: MessageEvent<WorkerReply>) => resolve(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    resolve({ kind: "error", message: event.message });
  };
  worker.postMessage(request, transfer);
  return promise.finally(() => {
    clearTimeout(timer);
    // A worker still inside PAM finishes that call on its own thread and
    // then ends; nothing waits for it.
    worker.terminate();
  });
}

if (isPamWorker()) startPamWorker();
