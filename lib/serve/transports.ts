/**
 * Listening sockets for listen mode: plain TCP through `Deno.listen`, and
 * implicit TLS through `node:tls` (its handshake timeout releases sockets
 * of clients that never finish a handshake, which `Deno.listenTls` does
 * not). Both hand the listener the same `Accepted` shape.
 *
 * @module
 */

import type { X509Certificate } from "node:crypto";
import type { Server as NetServer, Socket } from "node:net";
import type { Server, TLSSocket } from "node:tls";
import type { ListenAddress } from "../config/config.ts";
import {
  CLIENT_READ_SIZE,
  TLS_CLOSE_MS,
  TLS_HANDSHAKE_MS,
} from "../common/limits.ts";
import type { ChunkSource } from "../protocol/lines.ts";
import type { Connection } from "../protocol/session.ts";
import { writeAll } from "./stdio.ts";

/** One endpoint of a TCP connection. */
export interface Endpoint {
  readonly ip: string;
  readonly port: number;
}

/** A client connection, ready for a session. */
export interface Accepted {
  readonly conn: Connection;
  readonly remote: Endpoint;
  readonly local: Endpoint;
  /** Close the connection; safe to call more than once. */
  close(): void;
}

/** A bound listening socket. */
export interface Transport {
  /** The address actually bound (port 0 becomes the chosen port). */
  readonly address: Endpoint;
  readonly tls: boolean;
  /** Stop accepting; established connections are not touched. */
  close(): void;
}

/** PEM certificate and key, as text. */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----/;
const PEM_KEY = /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/;

/**
 * Why a certificate and key cannot serve TLS, or `undefined` when they can.
 * `node:tls` takes any text in `createServer` and `setSecureContext` and
 * only fails every handshake later, so the pair is checked before use.
 * Each answer says what is wrong and what to do.
 */
export async function tlsProblem(files: TlsFiles): Promise<string | undefined> {
  // Loaded on first use: a stdio-mode start (one per connection) never pays for it.
  const { createPrivateKey, X509Certificate } = await import("node:crypto");
  const why = (error: unknown) =>
    error instanceof Error ? error.message : String(error);
  const certIsKey = !PEM_CERT.test(files.cert) && PEM_KEY.test(files.cert);
  const keyIsCert = !PEM_KEY.test(files.key) && PEM_CERT.test(files.key);
  if (certIsKey && keyIsCert) {
    return "--tls-cert and --tls-key are swapped: --tls-cert names the private key and --tls-key the certificate; exchange the two file names";
  }
  if (certIsKey) {
    return "--tls-cert names a private key, not a certificate: give the file that begins with -----BEGIN CERTIFICATE----- (the server's certificate, then any intermediates)";
  }
  if (keyIsCert) {
    return "--tls-key names a certificate, not a private key: give the certificate's unencrypted key (a file that begins with -----BEGIN PRIVATE KEY-----)";
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(files.cert);
  } catch (error) {
    return `--tls-cert holds no PEM certificate (${
      why(error)
    }): give the file that begins with -----BEGIN CERTIFICATE----- (the server's certificate, then any intermediates)`;
  }
  try {
    if (cert.checkPrivateKey(createPrivateKey(files.key))) return undefined;
  } catch (error) {
    return `--tls-key holds no PEM private key (${
      why(error)
    }): give the certificate's unencrypted key (a file that begins with -----BEGIN PRIVATE KEY-----; a key with a passphrase cannot be used)`;
  }
  return "--tls-key does not belong to the first certificate in --tls-cert: give the key made with that certificate, and put the server's own certificate first in --tls-cert";
}

/**
 * Risky but usable certificates (clients such as Deno's and other rustls
 * ones refuse them): one without subjectAltName (names are checked only
 * against it, not the CN) and one marked as a CA (`CA:TRUE`, which
 * `openssl req -x509` sets by default). Call after `tlsProblem` passed.
 */
export async function tlsWarnings(files: TlsFiles): Promise<string[]> {
  const { X509Certificate } = await import("node:crypto");
  const cert = new X509Certificate(files.cert);
  const warnings: string[] = [];
  if (!cert.subjectAltName) {
    warnings.push(
      "the --tls-cert certificate has no subjectAltName: many clients check the host name only there and will refuse it; make one with -addext subjectAltName=DNS:your.host",
    );
  }
  if (cert.ca) {
    warnings.push(
      "the --tls-cert certificate is a CA certificate (CA:TRUE): many clients refuse it as a server's own; make one with -addext basicConstraints=critical,CA:FALSE",
    );
  }
  return warnings;
}

/** `::ffff:192.0.2.1` → `192.0.2.1`, so logs and TCPREMOTEIP look the same on dual-stack sockets. */
export function plainIp(ip: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip) ? ip.slice(7) : ip;
}

/** Listen with plain TCP; calls `onConnection` for each accepted client. */
export function listenPlain(
  address: ListenAddress,
  onConnection: (accepted: Accepted) => void,
  onError: (message: string) => void,
): Transport {
  const listener = Deno.listen({
    hostname: address.hostname,
    port: address.port,
    transport: "tcp",
  });
  const bound = listener.addr as Deno.NetAddr;
  (async () => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (
          error instanceof Deno.errors.BadResource ||
          error instanceof Deno.errors.Interrupted
        ) return;
        // A client that reset the connection before accept finished (an
        // HAProxy TCP health check does this every interval): nothing to
        // log, and no pause.
        if (
          error instanceof Deno.errors.NotConnected ||
          error instanceof Deno.errors.ConnectionAborted ||
          error instanceof Deno.errors.ConnectionReset
        ) continue;
        onError(
          `accept failed: ${error instanceof Error ? error.message : error}`,
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      onConnection(fromDenoConn(conn));
    }
  })();
  return {
    address: { ip: plainIp(bound.hostname), port: bound.port },
    tls: false,
    close: () => {
      try {
        listener.close();
      } catch {
        // already closed
      }
    },
  };
}

function fromDenoConn(conn: Deno.TcpConn): Accepted {
  const remote = conn.remoteAddr;
  const local = conn.localAddr;
  let closed = false;
  return {
    conn: {
      read: async () => {
        const buffer = new Uint8Array(CLIENT_READ_SIZE);
        const n = await conn.read(buffer);
        return n === null ? null : buffer.subarray(0, n);
      },
      write: (bytes) => writeAll(conn, bytes),
    },
    remote: { ip: plainIp(remote.hostname), port: remote.port },
    local: { ip: plainIp(local.hostname), port: local.port },
    close: () => {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch {
        // the client may have reset the connection already
      }
    },
  };
}

/** A TLS listener whose certificate can be replaced while it runs. */
export interface TlsTransport extends Transport {
  /** Use a new certificate and key for new connections. */
  reload(files: TlsFiles): void;
}

/**
 * Admission to the TLS handshake: called with the client's address at
 * accept; returns the function that gives the slot back (called once,
 * when the handshake ends or the socket closes), or `undefined` to drop
 * the connection at once.
 */
export type HandshakeGate = (ip: string) => (() => void) | undefined;

/** What a PROXY header read before the TLS handshake says about the client. */
export interface TlsFront {
  /** The header's source and destination; absent for `LOCAL`/`UNKNOWN`. */
  readonly remote?: Endpoint;
  readonly local?: Endpoint;
  /** Sent the way a balancer's health check sends it (see `Proxied.quiet`). */
  readonly check: boolean;
  /** Octets that came after the header: the start of the TLS handshake. */
  readonly rest: Uint8Array;
}

/** `--proxy-protocol` for a TLS listener (made by `tlsProxy` in proxied.ts). */
export interface TlsProxy {
  /** Whether a peer must open with a PROXY header. */
  trusts(ip: string): boolean;
  /**
   * Read the header from the raw socket; `undefined` (already logged)
   * closes the connection.
   */
  read(peer: Endpoint, read: ChunkSource): Promise<TlsFront | undefined>;
}

/** An accepted client, maybe with the health-check test of `Proxied`. */
export type AcceptedTls = Accepted & { readonly quiet?: () => boolean };

/**
 * Listen with implicit TLS; clients that do not complete the handshake in
 * time are dropped. `gate` decides at accept whether a connection may
 * start its handshake, so silent clients cannot pile up descriptors
 * (tcpserver's `-c` counts from accept too).
 *
 * With `proxy`, a `node:net` server accepts instead: a trusted peer's
 * PROXY header (sent in clear before the handshake) is read from the raw
 * socket first, the octets after it are put back, and only then does the
 * TLS server take the socket, gated by the header's source address.
 */
export async function listenTls(
  address: ListenAddress,
  files: TlsFiles,
  gate: HandshakeGate,
  onConnection: (accepted: AcceptedTls) => void,
  onError: (message: string) => void,
  proxy?: TlsProxy,
): Promise<TlsTransport> {
  const { createServer } = await import("node:tls");
  const server: Server = createServer({
    cert: files.cert,
    key: files.key,
    handshakeTimeout: TLS_HANDSHAKE_MS,
  });
  // Connections between accept and the end of their handshake, by peer:
  // the function that gives their slot back.
  const handshaking = new Map<string, () => void>();
  // What the PROXY header said, by the raw socket under the TLS one.
  const fronts = new WeakMap<Socket, TlsFront & { octets: number }>();
  const peer = (
    s: { remoteAddress?: string | undefined; remotePort?: number | undefined },
  ) => `${s.remoteAddress}|${s.remotePort}`;
  const parentOf = (socket: TLSSocket) =>
    (socket as unknown as { _parent?: Socket })._parent;
  const release = (key: string) => {
    const done = handshaking.get(key);
    handshaking.delete(key);
    done?.();
  };
  /** Take a handshake slot for `ip`; false when the gate said no. */
  const admitted = (raw: Socket, ip: string) => {
    const done = gate(ip);
    if (!done) return false;
    const key = peer(raw);
    handshaking.set(key, done);
    raw.once("close", () => release(key));
    return true;
  };
  server.on("secureConnection", (socket: TLSSocket) => {
    release(peer(socket));
    const raw = parentOf(socket);
    const front = raw ? fronts.get(raw) : undefined;
    onConnection(fromTlsSocket(socket, front));
  });
  server.on("tlsClientError", (error, socket) => {
    // After a failed handshake the TLS socket has forgotten its peer; the
    // plain socket underneath (node's `_parent`) still knows it.
    const parent = parentOf(socket);
    const front = parent ? fronts.get(parent) : undefined;
    const silent = front?.check && parent?.bytesRead === front.octets;
    const ip = front?.remote?.ip ?? socket.remoteAddress ??
      parent?.remoteAddress ?? "unknown";
    // A health check that closed after its header: not worth a line.
    if (!silent) {
      onError(`TLS handshake failed from ${plainIp(ip)}: ${error.message}`);
    }
    socket.destroy();
  });
  // The server that owns the port: the TLS one, or the plain one in front.
  let listening: NetServer = server;
  if (proxy) {
    const { createServer: createNetServer } = await import("node:net");
    listening = createNetServer((raw: Socket) => {
      raw.on("error", () => {}); // a reset before the handshake: just close
      // Reset already (HAProxy's plain check sends its header and resets
      // at once): the peer is unknown, so it cannot be trusted or served.
      if (raw.remoteAddress === undefined) return raw.destroy();
      const ip = plainIp(raw.remoteAddress);
      if (!proxy.trusts(ip)) {
        if (admitted(raw, ip)) server.emit("connection", raw);
        else raw.destroy();
        return;
      }
      const reader = rawReader(raw);
      proxy.read({ ip, port: raw.remotePort ?? 0 }, reader.read).then(
        (front) => {
          const queued = reader.stop();
          if (!front || raw.destroyed) {
            for (const chunk of queued) chunk.fill(0);
            return raw.destroy();
          }
          const leftover = [front.rest, ...queued].filter((c) => c.length);
          for (const chunk of leftover.reverse()) raw.unshift(chunk);
          fronts.set(raw, {
            ...front,
            octets: raw.bytesRead - leftover.reduce((n, c) => n + c.length, 0),
          });
          if (admitted(raw, front.remote?.ip ?? ip)) {
            server.emit("connection", raw);
          } else raw.destroy();
        },
      ).catch((error) => {
        // Never an unhandled rejection (it would end the process).
        onError(`PROXY header before TLS: ${(error as Error).message}`);
        raw.destroy();
      });
    });
  } else {
    server.on("connection", (raw: Socket) => {
      if (!admitted(raw, plainIp(raw.remoteAddress ?? "unknown"))) {
        raw.destroy();
      }
    });
  }
  await new Promise<void>((resolve, reject) => {
    listening.once("error", reject);
    listening.listen(address.port, address.hostname, () => {
      listening.off("error", reject);
      resolve();
    });
  });
  listening.on(
    "error",
    (error: Error) => onError(`TLS listener error: ${error.message}`),
  );
  const bound = listening.address();
  const port = typeof bound === "object" && bound ? bound.port : address.port;
  return {
    address: { ip: plainIp(address.hostname), port },
    tls: true,
    close: () => listening.close(),
    reload: (next) =>
      server.setSecureContext({ cert: next.cert, key: next.key }),
  };
}

/**
 * Chunks from a raw socket, one at a time (paused in between); `stop`
 * detaches and returns what arrived but was not asked for yet.
 */
function rawReader(socket: Socket): {
  read: ChunkSource;
  stop: () => Uint8Array[];
} {
  const queue: Uint8Array[] = [];
  let ended = false;
  let waiting: ((chunk: Uint8Array | null) => void) | undefined;
  const wake = (chunk: Uint8Array | null) => {
    const resolve = waiting;
    waiting = undefined;
    resolve?.(chunk);
  };
  const onData = (chunk: Uint8Array) => {
    const bytes = new Uint8Array(chunk);
    if (waiting) return wake(bytes);
    queue.push(bytes);
    socket.pause();
  };
  const onEnd = () => {
    ended = true;
    wake(null);
  };
  socket.on("data", onData);
  socket.on("end", onEnd);
  socket.on("close", onEnd);
  return {
    read: () => {
      const next = queue.shift();
      if (next) return Promise.resolve(next);
      if (ended) return Promise.resolve(null);
      socket.resume();
      return new Promise((resolve) => (waiting = resolve));
    },
    stop: () => {
      socket.pause();
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      waiting = undefined;
      return queue.splice(0);
    },
  };
}

function fromTlsSocket(socket: TLSSocket, front?: TlsFront): AcceptedTls {
  const queue: (Uint8Array | null)[] = [];
  let waiting: ((chunk: Uint8Array | null) => void) | undefined;
  const push = (chunk: Uint8Array | null) => {
    if (waiting) {
      const resolve = waiting;
      waiting = undefined;
      resolve(chunk);
    } else {
      queue.push(chunk);
      if (chunk) socket.pause();
    }
  };
  let saw = false;
  socket.on("data", (chunk: Uint8Array) => {
    if (chunk.length > 0) saw = true;
    push(new Uint8Array(chunk));
  });
  socket.on("end", () => push(null));
  socket.on("close", () => push(null));
  socket.on("error", () => push(null));
  return {
    conn: {
      read: () => {
        const next = queue.shift();
        if (next !== undefined) return Promise.resolve(next);
        socket.resume();
        return new Promise((resolve) => (waiting = resolve));
      },
      write: (bytes) =>
        new Promise<void>((resolve, reject) => {
          if (socket.destroyed) {
            return reject(new Deno.errors.BrokenPipe("client gone"));
          }
          socket.write(bytes, (error) => (error ? reject(error) : resolve()));
        }),
    },
    remote: front?.remote ?? {
      ip: plainIp(socket.remoteAddress ?? "unknown"),
      port: socket.remotePort ?? 0,
    },
    local: front?.local ?? {
      ip: plainIp(socket.localAddress ?? "unknown"),
      port: socket.localPort ?? 0,
    },
    // A health check that did a handshake but sent nothing after it.
    ...(front?.check ? { quiet: () => !saw } : {}),
    close: () => {
      if (socket.destroyed) return;
      // end() sends the last reply and close_notify; a client that never
      // reads them must not keep the socket, so destroy it soon after.
      socket.end();
      const timer = setTimeout(() => socket.destroy(), TLS_CLOSE_MS);
      socket.once("close", () => clearTimeout(timer));
    },
  };
}
