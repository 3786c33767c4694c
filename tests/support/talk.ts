/**
 * The client side of a dialogue, the same over a socket and over a
 * subprocess's stdin/stdout: a bounded background collector for incoming
 * octets, and `Talk`, which sends lines, waits for replies and keeps the
 * transcript for the ledger checker.
 *
 * @module
 */

import { bytes, latin1, type Part } from "./bytes.ts";

import { within } from "./time.ts";

/** Reads a stream to its end in the background, keeping at most `cap` octets. */
export class Collector {
  #data = new Uint8Array(4096);
  #length = 0;
  #dropped = 0;
  #ended = false;
  #error: unknown;
  #wake = new Set<() => void>();
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  /** Resolves when the stream has ended (or failed, or was cancelled). */
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>, readonly cap = 4 << 20) {
    this.#reader = stream.getReader();
    this.done = this.#pump();
  }

  async #pump(): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.#append(value);
      }
    } catch (error) {
      // The peer reset the connection (or it was closed under us): an end too.
      this.#error = error;
    } finally {
      this.#ended = true;
      this.#notify();
    }
  }

  #append(chunk: Uint8Array): void {
    const room = Math.min(chunk.length, this.cap - this.#length);
    if (this.#length + room > this.#data.length) {
      const bigger = new Uint8Array(
        Math.min(
          this.cap,
          Math.max(2 * this.#data.length, this.#length + room),
        ),
      );
      bigger.set(this.#data.subarray(0, this.#length));
      this.#data = bigger;
    }
    this.#data.set(chunk.subarray(0, room), this.#length);
    this.#length += room;
    this.#dropped += chunk.length - room;
    this.#notify();
  }

  #notify(): void {
    for (const wake of this.#wake) wake();
  }

  /** Everything kept so far. */
  get bytes(): Uint8Array {
    return this.#data.slice(0, this.#length);
  }

  /** Everything kept so far as Latin-1 text (one character per octet). */
  get text(): string {
    return latin1(this.#data.subarray(0, this.#length));
  }

  /** Octets received beyond the cap. */
  get dropped(): number {
    return this.#dropped;
  }

  /** True once the stream has ended, failed or been cancelled. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Why the stream failed (a reset, a TLS error); undefined after a clean EOF. */
  get error(): unknown {
    return this.#error;
  }

  /** Wait until `ready(bytes)` holds or the stream ends; throws after `ms`. */
  async until(
    ready: (data: Uint8Array) => boolean,
    ms: number,
    what: string,
  ): Promise<void> {
    let wake = () => {};
    const reached = new Promise<void>((resolve) => {
      wake = () => {
        if (this.#ended || ready(this.#data.subarray(0, this.#length))) {
          resolve();
        }
      };
      this.#wake.add(wake);
      wake();
    });
    try {
      await within(reached, ms, what);
    } finally {
      this.#wake.delete(wake);
    }
  }

  /** Stop reading and wait for the pump to finish. */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    await this.done;
  }
}

/** What the ledger checker needs from one client session. */
export interface Transcript {
  /** Matches ledger entries (the server pid in stdio mode, the client port under tcpserver). */
  readonly session: string;
  /** Every octet the client sent, in order. */
  readonly sent: Uint8Array;
  /** Every octet the client received, in order. */
  readonly received: Uint8Array;
}

/** A client dialogue over any byte channel. */
export class Talk {
  #sent: Uint8Array[] = [];
  #consumed = 0;

  constructor(
    readonly session: string,
    readonly incoming: Collector,
    readonly write: (data: Uint8Array) => Promise<void>,
  ) {}

  /** Send octets as they are and record them; rejects when the peer is gone. */
  async deliver(...parts: Part[]): Promise<void> {
    const data = bytes(...parts);
    this.#sent.push(data);
    await this.write(data);
  }

  /** Send octets as they are; false when the peer is gone. */
  async send(...parts: Part[]): Promise<boolean> {
    try {
      await this.deliver(...parts);
      return true;
    } catch {
      return false;
    }
  }

  /** Send one line ending in CRLF. */
  line(text: Part): Promise<boolean> {
    return this.send(text, "\r\n");
  }

  /**
   * The next line, LF (and CR) included, as Latin-1; `undefined` when the
   * peer closed first (the partial line stays for `rest`). Throws after `ms`.
   */
  async nextLine(ms = 5_000): Promise<string | undefined> {
    const hasLine = (data: Uint8Array) =>
      data.indexOf(0x0a, this.#consumed) >= 0;
    await this.incoming.until(hasLine, ms, "a reply line");
    const data = this.incoming.bytes;
    const lf = data.indexOf(0x0a, this.#consumed);
    if (lf < 0) return undefined;
    const line = latin1(data.subarray(this.#consumed, lf + 1));
    this.#consumed = lf + 1;
    return line;
  }

  /** The next reply line, CRLF included (Latin-1); throws at EOF or after `ms`. */
  async reply(ms = 5_000): Promise<string> {
    const line = await this.nextLine(ms);
    if (line === undefined) {
      throw new Error(
        `closed before a reply; got ${
          JSON.stringify(latin1(this.incoming.bytes.subarray(this.#consumed)))
        }`,
      );
    }
    return line;
  }

  /** Everything not yet read once the peer has closed (Latin-1); throws after `ms`. */
  async rest(ms = 5_000): Promise<string> {
    await this.closed(ms);
    const data = this.incoming.bytes;
    const text = latin1(data.subarray(this.#consumed));
    this.#consumed = data.length;
    return text;
  }

  /** Wait for the server to close (EOF); throws after `ms`. */
  async closed(ms = 5_000): Promise<void> {
    await this.incoming.until(() => false, ms, "the server to close");
  }

  /** Everything received, as Latin-1 text. */
  get received(): string {
    return this.incoming.text;
  }

  /** The transcript so far. */
  transcript(): Transcript {
    return {
      session: this.session,
      sent: bytes(...this.#sent),
      received: this.incoming.bytes,
    };
  }
}

/**
 * Send each line (CRLF added unless it already ends in LF) after the
 * previous reply, the way real clients do; stop after a `500` or `200 Bye.`,
 * then wait for the close. Returns everything received.
 */
export async function converse(
  talk: Talk,
  lines: readonly Part[],
  ms = 5_000,
): Promise<string> {
  await talk.reply(ms); // greeting
  for (const line of lines) {
    const data = bytes(line);
    await talk.send(data, data.at(-1) === 0x0a ? "" : "\r\n");
    const reply = await talk.reply(ms);
    if (reply.startsWith("500") || reply === "200 Bye.\r\n") break;
  }
  await talk.closed(ms);
  return talk.received;
}
