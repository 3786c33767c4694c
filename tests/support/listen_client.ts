/**
 * A raw-socket poppassd client for listen-mode tests: plain TCP or TLS,
 * byte-exact reads (Latin-1, so every octet is one character), every read
 * bounded by a deadline.
 *
 * @module
 */

import { within } from "./listen_time.ts";

/** How a connection ended from the client's side. */
export type Ending = "eof" | "reset";

/** Where to connect; `caCerts` makes it TLS (server name `localhost`). */
export interface Target {
  readonly hostname: string;
  readonly port: number;
  readonly caCerts?: readonly string[];
}

const encoder = new TextEncoder();

/** Decode as Latin-1: exact and lossless for any octets. */
export function latin1(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += String.fromCharCode(b);
  return out;
}

/** One client connection. */
export class Client {
  readonly conn: Deno.Conn;
  #buffer = "";
  #ended: Ending | undefined;
  #pending: Promise<Uint8Array | null> | undefined;
  #closed = false;
  /** Why the last read failed (a reset, a TLS error), for assertion messages. */
  error: unknown;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
  }

  /** Connect within `ms`; TLS when the target has `caCerts`. */
  static async connect(target: Target, ms = 5_000): Promise<Client> {
    const connecting: Promise<Deno.Conn> = target.caCerts
      ? Deno.connectTls({
        hostname: target.hostname,
        port: target.port,
        caCerts: [...target.caCerts],
        serverName: "localhost",
      } as Deno.ConnectTlsOptions)
      : Deno.connect({ hostname: target.hostname, port: target.port });
    return new Client(
      await within(
        connecting,
        ms,
        `connect to ${target.hostname}:${target.port}`,
      ),
    );
  }

  /** The client's own port (what the server sees as TCPREMOTEPORT). */
  get localPort(): number {
    return (this.conn.localAddr as Deno.NetAddr).port;
  }

  /** Write all of `data`; rejects when the server is gone. */
  async send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    for (let done = 0; done < bytes.length;) {
      done += await this.conn.write(bytes.subarray(done));
    }
  }

  /** Write, ignoring a server that has already gone (for abusive clients). */
  async sendQuietly(data: string | Uint8Array): Promise<boolean> {
    try {
      await this.send(data);
      return true;
    } catch {
      return false;
    }
  }

  /** Read one more chunk into the buffer; false at EOF or reset. */
  async #fill(ms: number, what: string): Promise<boolean> {
    if (this.#ended) return false;
    this.#pending ??= this.#readChunk();
    const chunk = await within(this.#pending, ms, what);
    this.#pending = undefined;
    if (chunk === null) return false;
    this.#buffer += latin1(chunk);
    return true;
  }

  async #readChunk(): Promise<Uint8Array | null> {
    const bytes = new Uint8Array(4096);
    try {
      const n = await this.conn.read(bytes);
      if (n === null) this.#ended = "eof";
      return n === null ? null : bytes.subarray(0, n);
    } catch (error) {
      this.error = error;
      this.#ended = "reset";
      return null;
    }
  }

  /** The next line including its CRLF; `undefined` if the server closed first. */
  async line(ms = 5_000): Promise<string | undefined> {
    const stop = performance.now() + ms;
    for (;;) {
      const at = this.#buffer.indexOf("\n");
      if (at >= 0) {
        const line = this.#buffer.slice(0, at + 1);
        this.#buffer = this.#buffer.slice(at + 1);
        return line;
      }
      const left = Math.max(1, stop - performance.now());
      if (!(await this.#fill(left, "waiting for a line"))) return undefined;
    }
  }

  /** Everything until the server closes, and how it closed. */
  async rest(ms = 5_000): Promise<{ data: string; ending: Ending }> {
    const stop = performance.now() + ms;
    while (
      await this.#fill(
        Math.max(1, stop - performance.now()),
        "waiting for close",
      )
    ) {
      // keep reading
    }
    const data = this.#buffer;
    this.#buffer = "";
    return { data, ending: this.#ended ?? "eof" };
  }

  /** Send a line (CRLF added) and return the reply line. */
  async ask(line: string, ms = 5_000): Promise<string | undefined> {
    await this.send(line + "\r\n");
    return await this.line(ms);
  }

  /** Close the socket and let a pending read settle; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by a failed handshake or the peer
    }
    await this.#pending?.catch(() => null);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Close every client; never throws. */
export async function closeAll(clients: Iterable<Client>): Promise<void> {
  await Promise.all([...clients].map((c) => c.close()));
}
