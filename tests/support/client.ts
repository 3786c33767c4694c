/**
 * The one raw-socket poppassd client every socket test uses: plain TCP or
 * TLS, octets read in the background into a bounded `Collector`, byte-exact
 * Latin-1 lines, every wait bounded, and the transcript the ledger checker
 * needs (its session key is the client's port, which tcpserver and listen
 * mode hand the back end as `TCPREMOTEPORT`).
 *
 * Two ways to talk, one read cursor: `line`/`ask`/`rest`/`send` (undefined
 * or a rejection when the server is gone), or `talk` (`Talk`: `reply`
 * throws at EOF, `send` answers false), the same API a stdio server offers.
 *
 * @module
 */

import { Collector, Talk } from "./talk.ts";
import { within } from "./time.ts";

/** How a connection ended from the client's side. */
export type Ending = "eof" | "reset";

/** Where to connect; `caCerts` makes it TLS (server name `localhost`). */
export interface Target {
  readonly hostname: string;
  readonly port: number;
  readonly caCerts?: readonly string[];
}

/**
 * A readable stream over `conn.read()`. Unlike `conn.readable` it does not
 * close the connection at EOF, so the client can still write (or half-close)
 * after the server has closed, as with a plain socket.
 */
function readsOf(conn: Deno.Conn): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = new Uint8Array(16 * 1024);
      const n = await conn.read(chunk);
      if (n === null) controller.close();
      else controller.enqueue(chunk.subarray(0, n));
    },
  }, { highWaterMark: 0 });
}

/** One client connection; dispose closes it. */
export class Client implements AsyncDisposable {
  /** The socket itself, for tests that need more than this API. */
  readonly conn: Deno.Conn;
  /** The dialogue and transcript over this socket (shares the read cursor). */
  readonly talk: Talk;
  /** The client's own port (what the server sees as TCPREMOTEPORT). */
  readonly localPort: number;
  #closed = false;

  private constructor(conn: Deno.Conn) {
    this.conn = conn;
    this.localPort = (conn.localAddr as Deno.NetAddr).port;
    this.talk = new Talk(
      String(this.localPort),
      new Collector(readsOf(conn)),
      async (data) => {
        for (let done = 0; done < data.length;) {
          done += await conn.write(data.subarray(done));
        }
      },
    );
  }

  /**
   * Connect within `ms`: a bare port means `127.0.0.1:port` in plain TCP;
   * a target with `caCerts` means TLS.
   */
  static async connect(target: Target | number, ms = 5_000): Promise<Client> {
    const to = typeof target === "number"
      ? { hostname: "127.0.0.1", port: target }
      : target;
    const connecting: Promise<Deno.Conn> = to.caCerts
      ? Deno.connectTls({
        hostname: to.hostname,
        port: to.port,
        caCerts: [...to.caCerts],
        serverName: "localhost",
      } as Deno.ConnectTlsOptions)
      : Deno.connect({ hostname: to.hostname, port: to.port });
    return new Client(
      await within(connecting, ms, `connect to ${to.hostname}:${to.port}`),
    );
  }

  /** Why reading failed (a reset, a TLS error), for assertion messages. */
  get error(): unknown {
    return this.talk.incoming.error;
  }

  /** Write all of `data` (recorded in the transcript); rejects when the server is gone. */
  async send(data: string | Uint8Array): Promise<void> {
    await this.talk.deliver(data);
  }

  /** Write, ignoring a server that has already gone (for abusive clients). */
  sendQuietly(data: string | Uint8Array): Promise<boolean> {
    return this.talk.send(data);
  }

  /** The next line including its CRLF; `undefined` if the server closed first. */
  line(ms = 5_000): Promise<string | undefined> {
    return this.talk.nextLine(ms);
  }

  /** Send a line (CRLF added) and return the reply line. */
  async ask(line: string, ms = 5_000): Promise<string | undefined> {
    await this.send(line + "\r\n");
    return await this.line(ms);
  }

  /** Everything until the server closes, and how it closed. */
  async rest(ms = 5_000): Promise<{ data: string; ending: Ending }> {
    const data = await this.talk.rest(ms);
    return { data, ending: this.error === undefined ? "eof" : "reset" };
  }

  /** Half-close: the server sees EOF, we still read. */
  async closeWrite(): Promise<void> {
    await this.conn.closeWrite().catch(() => {});
  }

  /** Close both directions and stop reading; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed by a failed handshake or the peer.
    }
    await this.talk.incoming.cancel();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Close every client; never throws. */
export async function closeAll(clients: Iterable<Client>): Promise<void> {
  await Promise.all([...clients].map((c) => c.close()));
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return port;
}
