/**
 * A TLS client that speaks like a client behind HAProxy in TCP mode: a
 * `node:net` socket from a chosen source address, optionally a PROXY
 * header written in clear first, then `node:tls` over the same socket.
 * Reads are Latin-1 and bounded; plus a v2 header builder.
 *
 * @module
 */

import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { within } from "./time.ts";
import { NodeLineClient } from "./node_lines.ts";

/** Where and how to connect. */
export interface TlsTarget {
  readonly port: number;
  /** PEM the server's certificate must chain to (name `localhost`). */
  readonly ca: string;
  /** Source address (127.0.0.0/8); default 127.0.0.1. */
  readonly source?: string;
  /** Octets written before the TLS handshake (a PROXY header). */
  readonly header?: Uint8Array;
  /**
   * Send the header and the ClientHello in one write, so the server reads
   * the start of the handshake together with the header.
   */
  readonly coalesce?: boolean;
}

/** A PROXY protocol v2 `PROXY` header for TCP over IPv4. */
export function v2Header(
  source: string,
  sourcePort: number,
  destination: string,
  destinationPort: number,
): Uint8Array {
  const ip = (text: string) => text.split(".").map(Number);
  return new Uint8Array([
    ...[13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10, 0x21, 0x11, 0, 12],
    ...ip(source),
    ...ip(destination),
    sourcePort >> 8,
    sourcePort & 0xff,
    destinationPort >> 8,
    destinationPort & 0xff,
  ]);
}

/** A PROXY protocol v2 `LOCAL` header (what HAProxy's checks send). */
export const V2_LOCAL = new Uint8Array([
  ...[13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10, 0x20, 0, 0, 0],
]);

/** Open a raw TCP socket from `source` within 5 s. */
export async function rawSocket(
  source: string,
  port: number,
): Promise<net.Socket> {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: source });
  socket.on("error", () => {});
  try {
    await within(
      new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      }),
      5_000,
      `connect from ${source} to port ${port}`,
    );
  } catch (error) {
    socket.destroy();
    throw error;
  }
  return socket;
}

/** `raw` as a stream whose first write is prefixed with `header`. */
function prefixed(raw: net.Socket, header: Uint8Array): Duplex {
  let first = true;
  const stream: Duplex = new Duplex({
    read: () => void raw.resume(),
    write: (chunk: Uint8Array, _encoding, done) => {
      const out = first ? new Uint8Array([...header, ...chunk]) : chunk;
      first = false;
      raw.write(out, done);
    },
    final: (done) => {
      raw.end();
      done();
    },
    destroy: (error, done) => {
      raw.destroy();
      done(error);
    },
  });
  raw.on("data", (chunk: Uint8Array) => {
    if (!stream.push(chunk)) raw.pause();
  });
  raw.on("end", () => stream.push(null));
  raw.on("close", () => stream.destroy());
  return stream;
}

/** One TLS connection after an optional clear-text header. */
export class ProxyTlsClient extends NodeLineClient {
  readonly #raw: net.Socket;
  readonly #tls: tls.TLSSocket;

  private constructor(raw: net.Socket, socket: tls.TLSSocket) {
    super(socket);
    this.#raw = raw;
    this.#tls = socket;
  }

  /**
   * Connect, write the header, complete the handshake within `ms`;
   * rejects (and closes) when the server closes or the handshake fails.
   */
  static async connect(
    target: TlsTarget,
    ms = 10_000,
  ): Promise<ProxyTlsClient> {
    const raw = await rawSocket(target.source ?? "127.0.0.1", target.port);
    const header = target.header;
    if (header && !target.coalesce) raw.write(header);
    const socket = tls.connect({
      socket: header && target.coalesce ? prefixed(raw, header) : raw,
      ca: target.ca,
      servername: "localhost",
    });
    const client = new ProxyTlsClient(raw, socket);
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          socket.once("secureConnect", resolve);
          socket.once("error", reject);
          socket.once("close", () => reject(new Error("closed by the server")));
        }),
        ms,
        "TLS handshake",
      );
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  }

  /** The client's own port (what the server should see as TCPREMOTEPORT). */
  get localPort(): number {
    return this.#raw.localPort ?? 0;
  }

  /** Close both sockets and wait for the release. */
  override async close(): Promise<void> {
    this.#tls.destroy();
    this.#raw.destroy();
    await within(this.closed, 5_000, "socket close");
  }
}
