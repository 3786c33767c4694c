/**
 * `--proxy-protocol` on a live connection: a peer inside the trusted
 * networks must open with a PROXY header, which then names the client for
 * the log, the per-IP limit and the children's `TCPREMOTEIP`. Used by
 * listen mode (`proxyGate`) and stdio mode (`readProxied`).
 *
 * @module
 */

import { realClock } from "../common/clock.ts";
import { PROXY_HEADER_MS } from "../common/limits.ts";
import { type LogSink, type SessionLog, sessionLog } from "../common/log.ts";
import type { Connection } from "../protocol/session.ts";
import { inNetworks, type Network } from "./cidr.ts";
import { afterHeader, type ProxyHeader, readProxyHeader } from "./proxy.ts";
import type { ChunkSource } from "../protocol/lines.ts";
import type { Accepted, TlsFront, TlsProxy } from "./transports.ts";

/** A connection whose PROXY header has been read. */
export interface Proxied {
  readonly header: ProxyHeader;
  /** The connection from the first octet after the header. */
  readonly conn: Connection;
  /**
   * True for a balancer's health check that has sent nothing after its
   * header: its end is not worth a log line. Checks come as v2 `LOCAL`,
   * v1 `UNKNOWN`, or (HAProxy's `send-proxy` checks, measured) a v1 header
   * naming the balancer itself as the client.
   */
  readonly quiet: () => boolean;
}

/**
 * Read the header within `PROXY_HEADER_MS`. A missing, malformed or late
 * header gets one log line and `undefined` (the caller closes without a
 * greeting), except a connection closed before its first octet, which is
 * how a balancer's plain TCP health check looks: that one is not logged.
 */
export async function readProxied(
  conn: Connection,
  peerIp: string,
  log: SessionLog,
): Promise<Proxied | undefined> {
  const got = await readLogged(conn.read, log);
  if (!got) return undefined;
  const after = afterHeader(conn.read, got.rest);
  const header = got.header;
  const check = checkLike(header, peerIp);
  return {
    header,
    conn: { read: after.read, write: conn.write },
    quiet: () => check && !after.sawInput(),
  };
}

/** `readProxyHeader` under `PROXY_HEADER_MS`, logging every failure worth a line. */
async function readLogged(
  read: ChunkSource,
  log: SessionLog,
): Promise<{ header: ProxyHeader; rest: Uint8Array } | undefined> {
  const got = await readProxyHeader(read, realClock, PROXY_HEADER_MS);
  switch (got.kind) {
    case "invalid":
      log(`PROXY header refused: ${got.reason}; connection closed`);
      return undefined;
    case "timeout":
      log(
        `no PROXY header within ${
          PROXY_HEADER_MS / 1000
        } s (${got.octets} octets); connection closed`,
      );
      return undefined;
    case "closed":
      if (got.octets > 0) {
        log(`connection closed inside the PROXY header (${got.octets} octets)`);
      }
      return undefined;
  }
  return got;
}

/** A header as a balancer's health check sends it (see `Proxied.quiet`). */
function checkLike(header: ProxyHeader, peerIp: string): boolean {
  return header.kind === "local" || header.source.ip === peerIp;
}

/** Drop the end line of a quiet session (a health check); keep everything else. */
export function quieted(log: SessionLog, quiet?: () => boolean): SessionLog {
  if (!quiet) return log;
  return (message) => {
    if (quiet() && /^session end: (eof|clientGone),/.test(message)) return;
    log(message);
  };
}

/** An accepted connection, maybe with the health-check test of `Proxied`. */
export type MaybeQuiet = Accepted & { readonly quiet?: () => boolean };

/**
 * Listen mode: wrap the accept handler. Peers inside `networks` must send
 * a header first; their connection is handed on with the header's
 * addresses (or its own for `LOCAL`/`UNKNOWN`). Others pass unchanged. At
 * most `maxPending` headers are awaited at once.
 */
export function proxyGate(
  networks: readonly Network[],
  sink: LogSink,
  maxPending: number,
  next: (accepted: MaybeQuiet) => void,
): (accepted: Accepted) => void {
  let pending = 0;
  return (accepted) => {
    if (!inNetworks(accepted.remote.ip, networks)) return next(accepted);
    const log = sessionLog(sink, `${Deno.pid}.0`, accepted.remote.ip);
    if (pending >= maxPending) {
      log(
        `limit reached: ${maxPending} PROXY headers awaited, connection closed`,
      );
      return accepted.close();
    }
    pending++;
    readProxied(accepted.conn, accepted.remote.ip, log).then((proxied) => {
      pending--;
      if (!proxied) return accepted.close();
      const { header } = proxied;
      next({
        ...accepted,
        conn: proxied.conn,
        quiet: proxied.quiet,
        ...(header.kind === "proxied"
          ? { remote: header.source, local: header.destination }
          : {}),
      });
    });
  };
}

/**
 * Listen mode with TLS: the balancer sends the header in clear before the
 * client's TLS handshake, so `listenTls` reads it from the raw socket with
 * this. Peers inside `networks` must send one (same rules and log lines
 * as `proxyGate`); at most `maxPending` headers are awaited at once.
 */
export function tlsProxy(
  networks: readonly Network[],
  sink: LogSink,
  maxPending: number,
): TlsProxy {
  let pending = 0;
  return {
    trusts: (ip) => inNetworks(ip, networks),
    read: async (peer, read): Promise<TlsFront | undefined> => {
      const log = sessionLog(sink, `${Deno.pid}.0`, peer.ip);
      if (pending >= maxPending) {
        log(
          `limit reached: ${maxPending} PROXY headers awaited, connection closed`,
        );
        return undefined;
      }
      pending++;
      try {
        const got = await readLogged(read, log);
        if (!got) return undefined;
        const { header, rest } = got;
        return {
          check: checkLike(header, peer.ip),
          rest,
          ...(header.kind === "proxied"
            ? { remote: header.source, local: header.destination }
            : {}),
        };
      } finally {
        pending--;
      }
    },
  };
}
