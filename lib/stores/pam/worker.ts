/**
 * The Worker side of the PAM store: it receives one request, runs one PAM
 * transaction (blocking only its own thread), posts one reply and is then
 * ended by the back end. The worker's module is the back end's own module
 * (`new Worker(import.meta.url)`), so it works the same from the source
 * tree and from the bundle, where the back end is a `data:` module.
 *
 * @module
 */

import { lookupUid, type PamResult, runTransaction } from "./ffi.ts";

/** The Worker name that makes a loaded back-end module act as the worker. */
export const WORKER_NAME = "qmail-poppass-pam";

/** What the back end asks; the octet fields are transferred, then wiped here. */
export interface WorkerRequest {
  readonly service: string;
  readonly user: Uint8Array;
  readonly oldPassword: Uint8Array;
  readonly newPassword?: Uint8Array;
  readonly remoteIp: string;
  /** Accounts below this uid, and uid 0, are refused before PAM runs. */
  readonly minUid: number;
}

/** The one reply to a {@link WorkerRequest}. */
export type WorkerReply =
  | { readonly kind: "refused"; readonly reason: string }
  | ({ readonly kind: "pam" } & PamResult)
  | { readonly kind: "error"; readonly message: string };

interface WorkerScope {
  name?: string;
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply): void;
}

/** Is this thread a PAM worker (rather than the server's main thread)? */
export function isPamWorker(): boolean {
  const scope = globalThis as unknown as Record<string, unknown>;
  return typeof scope.WorkerGlobalScope === "function" &&
    scope.name === WORKER_NAME;
}

/** Serve requests in this worker thread. */
export function startPamWorker(): void {
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = (event) => scope.postMessage(handle(event.data));
}

/** Refuse root and system accounts, else run the transaction; wipe the octets. */
export function handle(request: WorkerRequest): WorkerReply {
  try {
    const refusal = refuse(request.user, request.minUid);
    if (refusal !== undefined) return { kind: "refused", reason: refusal };
    return { kind: "pam", ...runTransaction(request) };
  } catch (error) {
    return {
      kind: "error",
      message: error instanceof Error ? error.message : String(error),
    };
  } finally {
    request.oldPassword.fill(0);
    request.newPassword?.fill(0);
  }
}

function refuse(user: Uint8Array, minUid: number): string | undefined {
  if (new TextDecoder().decode(user) === "root") return "root is refused";
  const uid = lookupUid(user);
  if (uid === undefined) return "no such account";
  if (uid === 0) return "uid 0 is refused";
  if (uid < minUid) return `uid ${uid} is below --pam-min-uid ${minUid}`;
  return undefined;
}
