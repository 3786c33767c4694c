/**
 * A bounded line reader: splits client octets at LF, drops one CR before
 * the LF, and never buffers more than the line limit, however the input is
 * chunked. An unterminated last line is discarded at EOF, never returned.
 *
 * @module
 */

/** A source of octet chunks; `null` means end of input. */
export type ChunkSource = () => Promise<Uint8Array | null>;

/** What the next read produced. `arrivedAt` is when the line's LF arrived. */
export type LineEvent =
  | {
    readonly kind: "line";
    readonly line: Uint8Array;
    readonly arrivedAt: number;
  }
  | { readonly kind: "tooLong" }
  | { readonly kind: "eof" };

const LF = 0x0a;
const CR = 0x0d;

/** Reads lines of at most `maxLine` octets (terminator excluded) from chunks. */
export class LineReader {
  readonly #read: ChunkSource;
  readonly #now: () => number;
  readonly #maxLine: number;
  /**
   * Octets of a line split across chunks (at most maxLine + 1: a CR may
   * follow); made on first need, since a line usually arrives whole and an
   * idle session should hold no buffer.
   */
  #pending: Uint8Array | undefined;
  #used = 0;
  /** The unread rest of the last chunk, a view into `#whole`. */
  #chunk: Uint8Array = new Uint8Array(0);
  /** The last chunk as read, wiped once it is used up (it may hold passwords). */
  #whole: Uint8Array = new Uint8Array(0);
  #chunkAt = 0;
  #done = false;

  /** `now` stamps each chunk's arrival, for the failure delay. */
  constructor(read: ChunkSource, maxLine: number, now: () => number) {
    this.#read = read;
    this.#now = now;
    this.#maxLine = maxLine;
  }

  /** The next complete line, `tooLong` as soon as the limit passes, or `eof`. */
  async next(): Promise<LineEvent> {
    while (!this.#done) {
      if (this.#chunk.length === 0) {
        const chunk = await this.#read();
        if (chunk === null) break;
        this.#chunk = chunk;
        this.#whole = chunk;
        this.#chunkAt = this.#now();
        continue;
      }
      const event = this.#consume();
      if (event) return event;
    }
    this.#finish();
    return { kind: "eof" };
  }

  /** Wipe buffered octets; later reads report `eof`. */
  dispose(): void {
    this.#finish();
  }

  #consume(): LineEvent | undefined {
    const chunk = this.#chunk;
    const lf = chunk.indexOf(LF);
    const part = lf < 0 ? chunk : chunk.subarray(0, lf);
    if (this.#used + part.length > this.#maxLine + 1) {
      this.#finish();
      return { kind: "tooLong" };
    }
    // The whole line is in this chunk: no need to gather it.
    const whole = this.#used === 0 && lf >= 0;
    if (!whole) {
      this.#pending ??= new Uint8Array(this.#maxLine + 1);
      this.#pending.set(part, this.#used);
      this.#used += part.length;
    }
    this.#chunk = lf < 0 ? new Uint8Array(0) : chunk.subarray(lf + 1);
    if (lf < 0) {
      if (this.#chunk.length === 0) this.#whole.fill(0);
      return undefined;
    }
    const gathered = whole ? part : this.#pending!.subarray(0, this.#used);
    let length = gathered.length;
    if (length > 0 && gathered[length - 1] === CR) length--;
    const line = length > this.#maxLine ? undefined : gathered.slice(0, length);
    gathered.fill(0);
    this.#used = 0;
    if (this.#chunk.length === 0) this.#whole.fill(0);
    if (!line) {
      this.#finish();
      return { kind: "tooLong" };
    }
    return { kind: "line", line, arrivedAt: this.#chunkAt };
  }

  #finish(): void {
    this.#done = true;
    this.#pending?.fill(0);
    this.#used = 0;
    this.#whole.fill(0);
    this.#chunk = new Uint8Array(0);
  }
}
