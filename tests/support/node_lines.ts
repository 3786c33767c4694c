/**
 * A line-reading client over a `node:net` or `node:tls` socket, for the
 * tests that must choose the source address (`localAddress`, which
 * `Deno.connect` cannot) or write a PROXY header before TLS. Octets are
 * Latin-1 text; every wait is bounded.
 *
 * @module
 */

import type * as net from "node:net";
import { within } from "./time.ts";

/** Lines and the close of one node socket. */
export class NodeLineClient implements AsyncDisposable {
  readonly #socket: net.Socket;
  #buffer = "";
  #ended = false;
  #wake: (() => void) | undefined;
  /** Settles when the socket is closed. */
  protected readonly closed: Promise<void>;

  protected constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.setEncoding("latin1");
    const wake = () => {
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    };
    socket.on("data", (text: string) => {
      this.#buffer += text;
      wake();
    });
    socket.on("error", () => {});
    const end = () => {
      this.#ended = true;
      wake();
    };
    socket.on("end", end);
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        end();
        resolve();
      })
    );
  }

  /** Write octets (a string is sent as Latin-1). */
  send(data: string | Uint8Array): Promise<void> {
    const bytes = typeof data === "string"
      ? Uint8Array.from(data, (c) => c.charCodeAt(0))
      : data;
    return new Promise((resolve, reject) =>
      this.#socket.write(bytes, (e) => (e ? reject(e) : resolve()))
    );
  }

  async #more(stop: number, what: string): Promise<boolean> {
    if (this.#ended) return false;
    const arrived = new Promise<void>((resolve) => (this.#wake = resolve));
    await within(arrived, Math.max(1, stop - performance.now()), what);
    return true;
  }

  /** The next line with its CRLF, or `undefined` if the server closed first. */
  async line(ms = 10_000): Promise<string | undefined> {
    const stop = performance.now() + ms;
    for (;;) {
      const at = this.#buffer.indexOf("\n");
      if (at >= 0) {
        const line = this.#buffer.slice(0, at + 1);
        this.#buffer = this.#buffer.slice(at + 1);
        return line;
      }
      if (!(await this.#more(stop, "a line"))) return undefined;
    }
  }

  /** Send a line (CRLF added) and return the reply. */
  async ask(line: string, ms = 10_000): Promise<string | undefined> {
    await this.send(line + "\r\n");
    return await this.line(ms);
  }

  /** Everything until the server closes. */
  async rest(ms = 10_000): Promise<string> {
    const stop = performance.now() + ms;
    while (await this.#more(stop, "the close")) {
      // keep reading
    }
    const data = this.#buffer;
    this.#buffer = "";
    return data;
  }

  /** Close and wait for the socket to be released. */
  async close(): Promise<void> {
    this.#socket.destroy();
    await within(this.closed, 5_000, "socket close");
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
