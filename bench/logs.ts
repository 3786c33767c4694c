/**
 * Where a server's fd 2 goes during a row: a file in the work folder, as it
 * would go to multilog, read back only for the startup line and error
 * messages (draining it through a pipe woke the load generator on every
 * line).
 *
 * @module
 */

/** Where the servers' log files go: the kit's work folder (set by `prepareKit`). */
export const kit_work = { dir: "/tmp", count: 0 };

/** A server's log file, read back only to find its startup line and for error messages. */
export class LogFile {
  constructor(private readonly path: string) {}

  /** The first line matching `pattern`, polled every 20 ms; null once `gone()`. */
  async waitFor(
    pattern: RegExp,
    gone: () => boolean,
  ): Promise<RegExpMatchArray | null> {
    for (;;) {
      const text = await Deno.readTextFile(this.path).catch(() => "");
      for (const line of text.split("\n")) {
        const match = line.match(pattern);
        if (match) return match;
      }
      if (gone()) return null;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The last 4 KiB, as text. */
  tail(): string {
    try {
      const file = Deno.openSync(this.path);
      try {
        const size = file.statSync().size;
        const keep = Math.min(size, 4096);
        file.seekSync(size - keep, Deno.SeekMode.Start);
        const buffer = new Uint8Array(keep);
        let got = 0;
        while (got < keep) {
          const n = file.readSync(buffer.subarray(got));
          if (n === null) break;
          got += n;
        }
        return new TextDecoder().decode(buffer.subarray(0, got)).trim();
      } finally {
        file.close();
      }
    } catch {
      return "";
    }
  }
}

/**
 * A server's stdout, drained without decoding once the line a
 * caller waits for has been seen: the load generator shares the machine
 * with the server, and decoding every log line would tax the servers that
 * log more. The last few KiB are kept raw for error messages.
 */
export class Output {
  #kept = new Uint8Array(0);
  #waiters: {
    pattern: RegExp;
    resolve: (m: RegExpMatchArray | null) => void;
  }[] = [];
  #pending = "";
  readonly #done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#done = this.#drain(stream);
    void this.#done.then(() =>
      this.#waiters.splice(0).forEach((w) => w.resolve(null))
    );
  }

  /** The first line matching `pattern`, or null at end of output. */
  waitFor(
    pattern: RegExp,
    _gone?: () => boolean,
  ): Promise<RegExpMatchArray | null> {
    return new Promise((resolve) => this.#waiters.push({ pattern, resolve }));
  }

  /** The last lines, as text. */
  tail(): string {
    return new TextDecoder().decode(this.#kept).trim();
  }

  /** Keep the last 4 KiB of output. */
  #keep(chunk: Uint8Array): void {
    const keep = 4096;
    if (chunk.length >= keep) {
      this.#kept = chunk.slice(chunk.length - keep);
      return;
    }
    const total = Math.min(keep, this.#kept.length + chunk.length);
    const next = new Uint8Array(total);
    const old = total - chunk.length;
    next.set(this.#kept.subarray(this.#kept.length - old), 0);
    next.set(chunk, old);
    this.#kept = next;
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        this.#keep(chunk);
        if (this.#waiters.length === 0) continue;
        const lines = (this.#pending + decoder.decode(chunk, { stream: true }))
          .split("\n");
        this.#pending = lines.pop()!;
        for (const line of lines) {
          this.#waiters = this.#waiters.filter((w) => {
            const match = line.match(w.pattern);
            if (match) w.resolve(match);
            return !match;
          });
        }
      }
    } catch {
      // the pipe broke as the server died; its tail says why
    }
  }
}
