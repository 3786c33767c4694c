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
import { type LogSink, processLog, sessionLog } from "../common/log.ts";
import { replyBytes } from "../protocol/replies.ts";
import { runSession } from "../protocol/session.ts";
import {
  type Accepted,
  listenPlain,
  listenTls,
  type TlsFiles,
  type TlsTransport,
  type Transport,
} from "./transports.ts";
import type { Network } from "./cidr.ts";
import { type MaybeQuiet, proxyGate, quieted } from "./proxied.ts";

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
   * `--proxy-protocol`: peers that must open with a PROXY header; plain
   * listeners only (the balancer sends it before TLS; config refuses both).
   */
  readonly proxy?: readonly Network[];
}

/** A running server. */
export interface Server {
  /** The bound addresses, in the order given. */
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
  const perIp = new Map<string, number>();
  let counter = 0;

  const admit = (accepted: MaybeQuiet) => {
    const ip = accepted.remote.ip;
    if (stopping.signal.aborted) return accepted.close();
    const limit = sessions.size >= limits.maxSessions
      ? `max-sessions ${limits.maxSessions}`
      : limits.maxPerIp > 0 && (perIp.get(ip) ?? 0) >= limits.maxPerIp
      ? `max-per-ip ${limits.maxPerIp}`
      : undefined;
    if (limit) return refuse(accepted, limit);
    const id = ++counter;
    perIp.set(ip, (perIp.get(ip) ?? 0) + 1);
    const done = serveOne(accepted, `${Deno.pid}.${id}`).finally(() => {
      accepted.close();
      sessions.delete(id);
      const left = (perIp.get(ip) ?? 1) - 1;
      if (left > 0) perIp.set(ip, left);
      else perIp.delete(ip);
    });
    sessions.set(id, { accepted, done });
  };

  const refuse = (accepted: Accepted, limit: string) => {
    sessionLog(sink, `${Deno.pid}.0`, accepted.remote.ip)(
      `limit reached: ${limit}, connection refused`,
    );
    const bye = accepted.conn.write(replyBytes("tooMany")).catch(() => {});
    const timer = realClock.timer(1000);
    Promise.race([bye, timer.done]).finally(() => {
      timer.cancel();
      accepted.close();
    });
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
  const transports: Transport[] = [];
  try {
    const files = options.loadTls ? await options.loadTls() : undefined;
    for (const address of options.addresses) {
      try {
        transports.push(
          files
            ? await listenTls(
              address,
              files,
              limits.maxSessions,
              admit,
              onError,
            )
            : listenPlain(address, accept, onError),
        );
      } catch (error) {
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
