/**
 * The hash workers: every verify and make runs in one of a few Workers, so
 * that a 80–250 ms Argon2 (or a 5 ms SHA-crypt) never holds the event loop
 * that serves every other session.
 *
 * Bounded: at most `HASH_WORKERS` hashes run at once (one per worker; an
 * Argon2id check holds 64 MiB while it runs), at most `HASH_QUEUE` wait
 * behind them, and a job past that is refused at once with
 * {@link HashBusyError}, which the stores answer as a temporary failure.
 * Workers start on first use (so a session that never hashes never starts
 * one) and then stay: an idle worker keeps the process alive, so whoever
 * ends without `Deno.exit` (main.ts always exits with it) calls
 * {@link closeHashPool}.
 *
 * The worker runs this very module (`new Worker(import.meta.url)`): it
 * notices its name and serves jobs instead. That also works inside the
 * single-file bundle, where this module is part of an embedded `data:`
 * module, and needs no second file.
 *
 * @module
 */

import { HASH_QUEUE, HASH_WORKERS } from "../common/limits.ts";
import {
  hashPassword,
  type Verdict,
  verifyPassword,
  WRITE_SCHEMES,
  type WriteScheme,
} from "./schemes.ts";
import { HASH_WORKER_NAME } from "./native.ts";

export { HASH_WORKER_NAME };

/** The pool is full: `HASH_WORKERS` running and `HASH_QUEUE` waiting. */
export class HashBusyError extends Error {
  /** `message` names the bounds, never a password or hash. */
  constructor(message: string) {
    super(message);
    this.name = "HashBusyError";
  }
}

type Job =
  | { readonly op: "verify"; readonly stored: string }
  | { readonly op: "make"; readonly scheme: WriteScheme };

type Request = Job & { readonly id: number; readonly password: Uint8Array };

type Reply =
  | { readonly id: number; readonly verdict: Verdict }
  | { readonly id: number; readonly hash: string }
  | { readonly id: number; readonly error: string };

interface Pending {
  readonly job: Job;
  readonly password: Uint8Array;
  readonly resolve: (reply: Reply) => void;
}

interface Slot {
  readonly worker: Worker;
  current: Pending | undefined;
}

/** How busy the pool is, for tests and the benchmark. */
export interface PoolState {
  readonly workers: number;
  readonly running: number;
  readonly queued: number;
}

let nextId = 1;
const slots: Slot[] = [];
const queue: Pending[] = [];

/** Counts of workers, running and queued jobs. */
export function poolState(): PoolState {
  return {
    workers: slots.length,
    running: slots.filter((s) => s.current).length,
    queued: queue.length,
  };
}

function startWorker(): Slot {
  const worker = new Worker(import.meta.url, {
    type: "module",
    name: HASH_WORKER_NAME,
  });
  const slot: Slot = { worker, current: undefined };
  worker.onmessage = (event: MessageEvent<Reply>) => {
    const done = slot.current;
    slot.current = undefined;
    done?.resolve(event.data);
    dispatch();
  };
  worker.onerror = (event) => {
    event.preventDefault();
    retire(slot, `hash worker failed: ${event.message}`);
  };
  worker.onmessageerror = () => retire(slot, "hash worker message error");
  slots.push(slot);
  return slot;
}

/** Drop a broken worker; its job fails, the queue moves on. */
function retire(slot: Slot, error: string): void {
  const index = slots.indexOf(slot);
  if (index >= 0) slots.splice(index, 1);
  slot.worker.terminate();
  const done = slot.current;
  slot.current = undefined;
  done?.resolve({ id: 0, error });
  dispatch();
}

/** Give queued jobs to idle workers, starting workers up to the bound. */
function dispatch(): void {
  while (queue.length > 0) {
    const slot = slots.find((s) => !s.current) ??
      (slots.length < HASH_WORKERS ? startWorker() : undefined);
    if (!slot) break;
    const pending = queue.shift()!;
    slot.current = pending;
    // A copy travels (and is wiped by the worker); the caller wipes its own.
    const password = pending.password.slice();
    const request: Request = { ...pending.job, id: nextId++, password };
    slot.worker.postMessage(request, [password.buffer]);
  }
}

/** End every worker now; jobs still running fail. Tests call it last. */
export function closeHashPool(): void {
  for (const slot of [...slots]) retire(slot, "hash pool closed");
}

/** Queue a job, or throw HashBusyError when the bounds are reached. */
function submit(job: Job, password: Uint8Array): Promise<Reply> {
  const running = slots.filter((s) => s.current).length;
  const idle = slots.length - running + (HASH_WORKERS - slots.length);
  if (idle === 0 && queue.length >= HASH_QUEUE) {
    return Promise.reject(
      new HashBusyError(
        `hashing busy: ${running} running, ${queue.length} queued`,
      ),
    );
  }
  return new Promise((resolve) => {
    queue.push({ job, password, resolve });
    dispatch();
  });
}

/** Verify in a worker; a full pool or a failed worker is `unsupported`. */
export async function poolVerify(
  stored: string,
  password: Uint8Array,
): Promise<Verdict> {
  let reply: Reply;
  try {
    reply = await submit({ op: "verify", stored }, password);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { kind: "unsupported", reason, busy: true };
  }
  if ("verdict" in reply) return reply.verdict;
  return {
    kind: "unsupported",
    reason: "error" in reply ? reply.error : "no verdict",
    busy: true,
  };
}

/** Make a hash in a worker; throws HashBusyError or Error. */
export async function poolMake(
  scheme: WriteScheme,
  password: Uint8Array,
): Promise<string> {
  const reply = await submit({ op: "make", scheme }, password);
  if ("hash" in reply) return reply.hash;
  throw new Error("error" in reply ? reply.error : "no hash");
}

/** The worker side: answer each request, one at a time, then wipe it. */
async function answer(request: Request): Promise<Reply> {
  const { id, password } = request;
  try {
    if (request.op === "verify") {
      return { id, verdict: await verifyPassword(password, request.stored) };
    }
    if (!WRITE_SCHEMES.includes(request.scheme)) {
      return { id, error: "not a write scheme" };
    }
    return { id, hash: await hashPassword(password, request.scheme) };
  } catch (error) {
    return { id, error: error instanceof Error ? error.message : "failed" };
  } finally {
    password.fill(0);
  }
}

const scope = globalThis as unknown as {
  name?: string;
  onmessage: ((event: MessageEvent<Request>) => void) | null;
  postMessage(message: Reply): void;
};
if (scope.name === HASH_WORKER_NAME) {
  scope.onmessage = async (event) => {
    scope.postMessage(await answer(event.data));
  };
}
