/**
 * In-memory connections and a recording back end for session tests.
 *
 * @module
 */

import type { Backend, Outcome } from "../../lib/stores/backend.ts";
import type { Connection } from "../../lib/protocol/session.ts";

/** A connection the test feeds and reads; `written` holds every reply octet. */
export class MemoryConn implements Connection {
  #chunks: (Uint8Array | null)[] = [];
  #waiting: ((chunk: Uint8Array | null) => void) | undefined;
  #written: number[] = [];
  /** When set, writes reject as if the client had gone. */
  gone = false;

  read = (): Promise<Uint8Array | null> => {
    const next = this.#chunks.shift();
    if (next !== undefined) return Promise.resolve(next);
    return new Promise((resolve) => (this.#waiting = resolve));
  };

  write = (bytes: Uint8Array): Promise<void> => {
    if (this.gone) {
      return Promise.reject(new Deno.errors.BrokenPipe("client gone"));
    }
    this.#written.push(...bytes);
    return Promise.resolve();
  };

  /** Queue client octets (a string is UTF-8 encoded). */
  send(data: string | Uint8Array): void {
    const chunk = typeof data === "string"
      ? new TextEncoder().encode(data)
      : data;
    this.#push(chunk);
  }

  /** The client closes its side. */
  end(): void {
    this.#push(null);
  }

  /** Everything the server wrote so far, as latin1 text (exact octets). */
  get written(): string {
    return String.fromCharCode(...this.#written);
  }

  #push(chunk: Uint8Array | null): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting) waiting(chunk);
    else this.#chunks.push(chunk);
  }
}

/** One back-end call as the recording back end saw it (copied before wiping). */
export interface Call {
  readonly kind: "check" | "change";
  readonly args: string[];
}

/** A back end that answers from a script and records copies of its arguments. */
export function recordingBackend(
  answer: (call: Call) => Outcome | Promise<Outcome>,
): Backend & { calls: Call[]; seen: Uint8Array[] } {
  const calls: Call[] = [];
  const seen: Uint8Array[] = [];
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  const record = (kind: Call["kind"], parts: Uint8Array[]) => {
    seen.push(...parts);
    const call = { kind, args: parts.map(text) };
    calls.push(call);
    return answer(call);
  };
  return {
    calls,
    seen,
    check: async (user, old) => await record("check", [user, old]),
    change: async (user, old, next) =>
      await record("change", [user, old, next]),
  };
}
