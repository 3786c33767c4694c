/**
 * stdio mode: one session on fd 0/1, as run by tcpserver, inetd or a
 * systemd socket unit with `Accept=yes`.
 *
 * @module
 */

import type { Backend } from "../stores/backend.ts";
import { realClock } from "../common/clock.ts";
import { CLIENT_READ_SIZE, type Limits } from "../common/limits.ts";
import { discardPending } from "./linger.ts";
import { type LogSink, sessionLog } from "../common/log.ts";
import { inNetworks, type Network } from "./cidr.ts";
import { quieted, readProxied } from "./proxied.ts";
import {
  type Connection,
  runSession,
  type SessionEnd,
} from "../protocol/session.ts";

/** Write all of `bytes` to a `Deno.Writer`-like sink. */
export async function writeAll(
  target: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  for (let done = 0; done < bytes.length;) {
    done += await target.write(bytes.subarray(done));
  }
}

/**
 * The client as the launcher describes it: tcpserver and inetd wrappers set
 * `TCPREMOTEIP`; a systemd socket with `Accept=yes` sets `REMOTE_ADDR` and
 * `REMOTE_PORT` instead, which are then also handed to the children as
 * `TCPREMOTEIP`/`TCPREMOTEPORT`, the names checkpassword modules read.
 */
export function stdioPeer(
  env: (name: string) => string | undefined,
): { remoteIp: string; env: Record<string, string> } {
  const tcp = env("TCPREMOTEIP");
  if (tcp !== undefined) return { remoteIp: tcp, env: {} };
  const systemd = env("REMOTE_ADDR");
  if (systemd === undefined) return { remoteIp: "unknown", env: {} };
  const port = env("REMOTE_PORT");
  return {
    remoteIp: systemd,
    env: {
      TCPREMOTEIP: systemd,
      ...(port !== undefined ? { TCPREMOTEPORT: port } : {}),
    },
  };
}

/** Serve the session on stdin/stdout; the session id is our pid. */
export async function serveStdio(options: {
  readonly greeting: Uint8Array;
  readonly backend: Backend;
  readonly limits: Limits;
  readonly sink: LogSink;
  readonly env: (name: string) => string | undefined;
  /** `--proxy-protocol`: launcher-reported peers that must send a PROXY header. */
  readonly proxy?: readonly Network[];
}): Promise<SessionEnd> {
  // Plain reads, not `Deno.stdin.readable`: setting up a web stream costs
  // ~5 ms of every start (measured), and a start happens per connection.
  let conn: Connection = {
    read: async () => {
      const buffer = new Uint8Array(CLIENT_READ_SIZE);
      const n = await Deno.stdin.read(buffer);
      return n === null ? null : buffer.subarray(0, n);
    },
    write: (bytes) => writeAll(Deno.stdout, bytes),
  };
  let { remoteIp, env } = stdioPeer(options.env);
  let log = sessionLog(options.sink, String(Deno.pid), remoteIp);
  if (options.proxy && inNetworks(remoteIp, options.proxy)) {
    const proxied = await readProxied(conn, remoteIp, log);
    if (!proxied) return "failure";
    const header = proxied.header;
    if (header.kind === "proxied") {
      remoteIp = header.source.ip;
      env = {
        TCPREMOTEIP: header.source.ip,
        TCPREMOTEPORT: String(header.source.port),
        TCPLOCALIP: header.destination.ip,
        TCPLOCALPORT: String(header.destination.port),
      };
    }
    log = quieted(
      sessionLog(options.sink, String(Deno.pid), remoteIp),
      proxied.quiet,
    );
    conn = proxied.conn;
  }
  const end = await runSession(conn, {
    greeting: options.greeting,
    backend: options.backend,
    limits: options.limits,
    clock: realClock,
    log,
    peer: { remoteIp, env, log },
  });
  await discardPending(conn.read, realClock);
  return end;
}
