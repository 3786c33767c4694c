/**
 * A raw TCP client on loopback: sends octets, collects replies until the
 * server closes, keeps the transcript (its session key is the client's
 * port, which tcpserver hands the back end as `TCPREMOTEPORT`).
 *
 * @module
 */

import { Collector, Talk } from "./talk.ts";

/** One client connection; dispose closes it. */
export class SocketClient implements AsyncDisposable {
  readonly talk: Talk;
  readonly localPort: number;
  readonly #conn: Deno.TcpConn;
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.localPort = conn.localAddr.port;
    this.talk = new Talk(
      String(this.localPort),
      new Collector(conn.readable),
      async (data) => {
        for (let done = 0; done < data.length;) {
          done += await conn.write(data.subarray(done));
        }
      },
    );
  }

  /** Connect to `127.0.0.1:port`. */
  static async connect(port: number): Promise<SocketClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    return new SocketClient(conn);
  }

  /** Half-close: the server sees EOF, we still read. */
  async closeWrite(): Promise<void> {
    await this.#conn.closeWrite().catch(() => {});
  }

  /** Close both directions now. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the stream reaching its end.
    }
    await this.talk.incoming.cancel();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}
