/**
 * listen mode: many sessions in one process, with the session caps of
 * `doc/protocol.md` §5, the ucspi-tcp variables for the child
 * programs, and a graceful stop on SIGTERM/SIGINT.
 *
 * @module
 */

import type { Backend } from "../stores/backend.ts";
import { realClock } from "../common/clock.ts";
import { formatAddress, type ListenAddress } from "../config/config.ts";
import { type Limits, shutdownGraceMs } from "../common/limits.ts";
import { discardPending } from "./linger.ts";
import { addressGroup } from "./peers.ts";
import { refusalLog } from "./refusals.ts";
import { type LogSink, processLog, sessionLog } from "../common/log.ts";
import { replyBytes } from "../protocol/replies.ts";
import { runSession } from "../protocol/session.ts";
import {
  type Accepted,
  type HandshakeGate,
  listenPlain,
  listenTls,
  type TlsFiles,
  type TlsTransport,
  type Transport,
} from "./transports.ts";
import type { Network } from "./cidr.ts";
import { type MaybeQuiet, proxyGate, quieted, tlsProxy } from "./proxied.ts";

/** Settings for `serve`. */
export interface ServeOptions {
  readonly addresses: readonly ListenAddress[];
  /** Present for implicit TLS; `loadTls` re-reads the files on SIGHUP. */
  readonly loadTls?: () => Promise<TlsFiles>;
  readonly greeting: Uint8Array;
  readonly backend: Backend;
  readonly limits: Limits;
  readonly sink: LogSink;
  /**
   * `--proxy-protocol`: peers that must open with a PROXY header. On a TLS
   * listener the header comes in clear before the handshake.
   */
  readonly proxy?: readonly Network[];
}

/** A running server. */
export interface Server {
  /**
   * The bound addresses, in the order given (`[::]:P` before a
   * `0.0.0.0:P`, which is left out when `[::]:P` also takes IPv4).
   */
  readonly transports: readonly Transport[];
  /** Sessions being served now. */
  readonly active: () => number;
  /** Stop accepting, let running back ends finish (bounded), close the rest. */
  shutdown(): Promise<void>;
  /** Load the TLS certificate and key again. */
  reloadTls(): Promise<void>;
  /** Resolves when `shutdown` has finished. */
  readonly finished: Promise<void>;
}

/** Start listening on every address; rejects if any address cannot be bound. */
export async function serve(options: ServeOptions): Promise<Server> {
  const { limits, sink } = options;
  const log = processLog(sink, String(Deno.pid));
  const stopping = new AbortController();
  const sessions = new Map<
    number,
    { accepted: Accepted; done: Promise<void> }
  >();
  // Sessions, and TLS handshakes in progress, per client address group.
  const perIp = new Map<string, number>();
  const handshakesPerIp = new Map<string, number>();
  let handshakes = 0;
  const group = (ip: string) =>
    addressGroup(ip, limits.perIpPrefix4, limits.perIpPrefix6);
  const take = (counts: Map<string, number>, key: string) => {
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return () => {
      const left = (counts.get(key) ?? 1) - 1;
      if (left > 0) counts.set(key, left);
      else counts.delete(key);
    };
  };
  const overPerIp = (counts: Map<string, number>, key: string) =>
    limits.maxPerIp > 0 && (counts.get(key) ?? 0) >= limits.maxPerIp;
  const refusals = refusalLog(log, realClock);
  let counter = 0;

  const admit = (accepted: MaybeQuiet) => {
    const ip = accepted.remote.ip;
    if (stopping.signal.aborted) return accepted.close();
    const key = group(ip);
    const limit = sessions.size >= limits.maxSessions
      ? `max-sessions ${limits.maxSessions}`
      : overPerIp(perIp, key)
      ? `max-per-ip ${limits.maxPerIp}`
      : undefined;
    if (limit) return refuse(accepted, limit, key);
    const id = ++counter;
    const untake = take(perIp, key);
    const done = serveOne(accepted, `${Deno.pid}.${id}`).finally(() => {
      accepted.close();
      sessions.delete(id);
      untake();
    });
    sessions.set(id, { accepted, done });
  };

  const refuse = (accepted: Accepted, limit: string, key: string) => {
    const ip = accepted.remote.ip;
    refusals.refused(limit, () =>
      sessionLog(sink, `${Deno.pid}.0`, ip)(
        `limit reached: ${limit}${
          key === ip ? "" : ` (${key})`
        }, connection refused`,
      ));
    const bye = accepted.conn.write(replyBytes("tooMany")).catch(() => {});
    const timer = realClock.timer(1000);
    Promise.race([bye, timer.done]).finally(() => {
      timer.cancel();
      accepted.close();
    });
  };

  // TLS: a connection counts from accept, in total and per address group,
  // so silent clients from one address cannot take the handshake slots of
  // every other client.
  const gate: HandshakeGate = (ip) => {
    const key = group(ip);
    const limit = handshakes >= limits.maxSessions
      ? `${limits.maxSessions} TLS handshakes in progress`
      : overPerIp(handshakesPerIp, key)
      ? `max-per-ip ${limits.maxPerIp} TLS handshakes in progress`
      : undefined;
    if (limit) {
      refusals.refused(limit, () =>
        sessionLog(sink, `${Deno.pid}.0`, ip)(
          `limit reached: ${limit}${
            key === ip ? "" : ` (${key})`
          }, connection dropped`,
        ));
      return undefined;
    }
    handshakes++;
    const untake = take(handshakesPerIp, key);
    return () => {
      handshakes--;
      untake();
    };
  };

  const serveOne = async (accepted: MaybeQuiet, id: string) => {
    const slog = quieted(
      sessionLog(sink, id, accepted.remote.ip),
      accepted.quiet,
    );
    const env = {
      PROTO: "TCP",
      TCPREMOTEIP: accepted.remote.ip,
      TCPREMOTEPORT: String(accepted.remote.port),
      TCPLOCALIP: accepted.local.ip,
      TCPLOCALPORT: String(accepted.local.port),
    };
    await runSession(accepted.conn, {
      greeting: options.greeting,
      backend: options.backend,
      limits,
      clock: realClock,
      log: slog,
      peer: { remoteIp: accepted.remote.ip, env, log: slog },
      shutdown: stopping.signal,
    });
    await discardPending(accepted.conn.read, realClock);
  };

  const onError = (message: string) => log(message);
  // The PROXY header names the client before the caps look at its address.
  const accept = options.proxy
    ? proxyGate(options.proxy, sink, limits.maxSessions, admit)
    : admit;
  // With TLS it is read from the raw socket, and the handshake caps count
  // the header's source address.
  const front = options.proxy
    ? tlsProxy(options.proxy, sink, limits.maxSessions)
    : undefined;
  const transports: Transport[] = [];
  try {
    const files = options.loadTls ? await options.loadTls() : undefined;
    for (const address of dualStackFirst(options.addresses)) {
      try {
        transports.push(
          files
            ? await listenTls(
              address,
              files,
              gate,
              admit,
              onError,
              front,
            )
            : listenPlain(address, accept, onError),
        );
      } catch (error) {
        // Deno cannot make a socket IPv6-only: on a host where [::] also
        // takes IPv4 (net.ipv6.bindv6only=0, the Linux default), the
        // wildcard [::]:PORT bound just before already serves 0.0.0.0:PORT.
        if (addressInUse(error) && coveredByDualStack(address, transports)) {
          log(
            `${
              formatAddress(address)
            }: served by [::]:${address.port}, which also takes IPv4 on this host`,
          );
          continue;
        }
        // Name the address: with several --listen options the OS error alone
        // ("Address already in use") does not say which one failed.
        const why = error instanceof Error ? error.message : String(error);
        throw new Error(`cannot listen on ${formatAddress(address)}: ${why}`);
      }
    }
  } catch (error) {
    for (const transport of transports) transport.close();
    throw error;
  }

  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const shutdown = async () => {
    if (stopping.signal.aborted) return finished;
    stopping.abort();
    for (const transport of transports) transport.close();
    log(`stopping: ${sessions.size} sessions still open`);
    const grace = realClock.timer(shutdownGraceMs(limits));
    const all = Promise.all([...sessions.values()].map((s) => s.done));
    await Promise.race([all, grace.done]);
    grace.cancel();
    for (const session of sessions.values()) session.accepted.close();
    refusals.flush();
    log("stopped");
    finish();
  };

  return {
    transports,
    active: () => sessions.size,
    shutdown,
    finished,
    reloadTls: async () => {
      if (!options.loadTls) return;
      const files = await options.loadTls();
      for (const transport of transports) {
        (transport as TlsTransport).reload?.(files);
      }
      log("TLS certificate and key reloaded");
    },
  };
}

/**
 * The addresses in the order given, except that `[::]:PORT` moves before
 * a `0.0.0.0:PORT` with the same port, so that the IPv6 wildcard is bound
 * first and the IPv4 one can be found covered by it.
 */
export function dualStackFirst(
  addresses: readonly ListenAddress[],
): ListenAddress[] {
  const v6Wildcards = new Set(
    addresses.filter((a) => isWildcard6(a.hostname) && a.port !== 0).map((a) =>
      a.port
    ),
  );
  const paired = (a: ListenAddress) =>
    a.hostname === "0.0.0.0" && v6Wildcards.has(a.port);
  const out = addresses.filter((a) => !paired(a));
  const firstV6 = (port: number) =>
    out.findIndex((a) => isWildcard6(a.hostname) && a.port === port);
  for (const a of addresses.filter(paired)) {
    out.splice(firstV6(a.port) + 1, 0, a);
  }
  return out;
}

function isWildcard6(hostname: string): boolean {
  return /^[0:]+$/.test(hostname) && hostname.includes("::");
}

function addressInUse(error: unknown): boolean {
  return error instanceof Deno.errors.AddrInUse ||
    (error as { code?: unknown } | null)?.code === "EADDRINUSE";
}

function coveredByDualStack(
  address: ListenAddress,
  bound: readonly Transport[],
): boolean {
  return address.hostname === "0.0.0.0" &&
    bound.some((t) =>
      isWildcard6(t.address.ip) && t.address.port === address.port
    );
}

/** The startup line: listeners and limits. */
export function describe(server: Server, limits: Limits): string {
  const where = server.transports
    .map((t) =>
      `${formatAddress({ hostname: t.address.ip, port: t.address.port })} (${
        t.tls ? "tls" : "plain"
      })`
    )
    .join(", ");
  return `listening on ${where}; max-sessions ${limits.maxSessions}, max-per-ip ${limits.maxPerIp}, ` +
    `fail-delay ${limits.failDelayMs / 1000} s, idle-timeout ${
      limits.idleTimeoutMs / 1000
    } s, ` +
    `session-timeout ${limits.sessionTimeoutMs / 1000} s, child-timeout ${
      limits.childTimeoutMs / 1000
    } s, ` +
    `max-line ${limits.maxLine}`;
}
