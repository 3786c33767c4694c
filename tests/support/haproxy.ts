/**
 * Debian's real HAProxy (`/usr/sbin/haproxy`) in front of test servers, on
 * 127.0.0.1, started in the foreground (`-db`) from a temp config and
 * stopped by PID; plus a client that binds its source address (Deno's
 * `connect` cannot, `node:net`'s `localAddress` can), so tests can tell
 * clients 127.0.0.2 and 127.0.0.3 apart behind the balancer.
 *
 * @module
 */

import net from "node:net";
import { freePort } from "./client.ts";
import { until, within } from "./time.ts";
import { NodeLineClient } from "./node_lines.ts";

/** The HAProxy binary. */
export const HAPROXY = "/usr/sbin/haproxy";

/** One back-end server. */
export interface Backend {
  readonly name: string;
  readonly port: number;
}

/** How HAProxy checks the back ends. */
export type CheckKind =
  /** `check`: a TCP connect, closed at once (HAProxy resets it). */
  | "connect"
  /** `option tcp-check` + `tcp-check expect rstring ^200 `: waits for the greeting. */
  | "greeting"
  /** The greeting check over TLS (`check-ssl verify none`), for TLS back ends. */
  | "tlsGreeting";

/** What to put in the config. */
export interface HaproxyOptions {
  readonly dir: string;
  readonly backends: readonly Backend[];
  /** `send-proxy-v2` (default) or `send-proxy` (v1 text). */
  readonly version?: 1 | 2;
  readonly check?: CheckKind;
  /** Health-check interval in ms (200). */
  readonly inter?: number;
}

/** The config text; the README shows the same shape. */
export function haproxyConfig(
  options: HaproxyOptions,
  port: number,
  socket: string,
): string {
  const send = options.version === 1 ? "send-proxy" : "send-proxy-v2";
  const inter = options.inter ?? 200;
  const greeting = options.check === "greeting" ||
    options.check === "tlsGreeting";
  const ssl = options.check === "tlsGreeting" ? " check-ssl verify none" : "";
  return [
    "global",
    "  maxconn 200",
    `  stats socket ${socket} mode 600 level admin`,
    "defaults",
    "  mode tcp",
    "  timeout connect 2s",
    "  timeout client 60s",
    "  timeout server 60s",
    "listen poppass",
    `  bind 127.0.0.1:${port}`,
    "  balance roundrobin",
    ...(greeting
      ? ["  option tcp-check", "  tcp-check expect rstring ^200\\ "]
      : []),
    ...options.backends.map((b) =>
      `  server ${b.name} 127.0.0.1:${b.port} ${send} check inter ${inter} fall 1 rise 1 check-send-proxy${ssl}`
    ),
    "",
  ].join("\n");
}

/** A running HAProxy. */
export class Haproxy implements AsyncDisposable {
  readonly port: number;
  readonly pid: number;
  readonly #child: Deno.ChildProcess;
  readonly #socket: string;
  readonly #output: Promise<string>;

  private constructor(child: Deno.ChildProcess, port: number, socket: string) {
    this.#child = child;
    this.pid = child.pid;
    this.port = port;
    this.#socket = socket;
    this.#output = (async () => {
      let text = "";
      for await (const t of child.stderr.pipeThrough(new TextDecoderStream())) {
        text += t;
      }
      return text;
    })();
  }

  /** Write the config, start HAProxy, wait (bounded) until it answers on its stats socket. */
  static async start(options: HaproxyOptions): Promise<Haproxy> {
    const port = freePort();
    const socket = `${options.dir}/haproxy.sock`;
    const config = `${options.dir}/haproxy.cfg`;
    await Deno.writeTextFile(config, haproxyConfig(options, port, socket));
    const child = new Deno.Command(HAPROXY, {
      args: ["-db", "-f", config],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const proxy = new Haproxy(child, port, socket);
    try {
      await until(
        () =>
          proxy.states().then(
            (s) => s.size > 0 ? true : undefined,
            () => undefined,
          ),
        10_000,
        "haproxy to answer on its stats socket",
      );
    } catch (error) {
      await proxy.stop();
      throw new Error(`${(error as Error).message}\n${await proxy.#output}`);
    }
    return proxy;
  }

  /** One command on the stats socket; the answer up to HAProxy's close. */
  async command(line: string): Promise<string> {
    const conn = await Deno.connect({ transport: "unix", path: this.#socket });
    try {
      await conn.write(new TextEncoder().encode(line + "\n"));
      let text = "";
      const buffer = new Uint8Array(8192);
      for (;;) {
        const n = await within(conn.read(buffer), 5_000, `haproxy: ${line}`);
        if (n === null) return text;
        text += new TextDecoder().decode(buffer.subarray(0, n));
      }
    } finally {
      conn.close();
    }
  }

  /** Each back end's status as `show stat` says: `UP`, `DOWN`, … */
  async states(): Promise<Map<string, string>> {
    const csv = await this.command("show stat");
    const lines = csv.split("\n");
    const head = (lines[0] ?? "").replace(/^# /, "").split(",");
    const [px, sv, st] = ["pxname", "svname", "status"].map((n) =>
      head.indexOf(n)
    );
    const out = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const f = line.split(",");
      if (
        f[px!] !== "poppass" || !f[sv!] || /^(FRONTEND|BACKEND)$/.test(f[sv!]!)
      ) continue;
      out.set(f[sv!]!, f[st!]!.split(" ")[0]!);
    }
    return out;
  }

  /** Wait (bounded) until the back ends' states are exactly `want`. */
  async waitForStates(
    want: Record<string, string>,
    ms = 15_000,
  ): Promise<void> {
    const wanted = JSON.stringify(Object.entries(want).sort());
    let seen = "";
    try {
      await until(
        async () => {
          seen = JSON.stringify([...(await this.states())].sort());
          return seen === wanted ? true : undefined;
        },
        ms,
        `haproxy states ${wanted}`,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; last seen ${seen}`);
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within 5 s; returns its output. */
  async stop(): Promise<string> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await within(this.#child.status, 5_000, "haproxy exit").catch(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // gone after all
      }
      return this.#child.status;
    });
    return await this.#output;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A TCP client bound to a chosen source address; reads are Latin-1 and bounded. */
export class BoundClient extends NodeLineClient {
  readonly #socket: net.Socket;

  private constructor(socket: net.Socket) {
    super(socket);
    this.#socket = socket;
  }

  /** Connect from `source` to 127.0.0.1:`port` within 5 s. */
  static async connect(source: string, port: number): Promise<BoundClient> {
    const socket = net.connect({
      host: "127.0.0.1",
      port,
      localAddress: source,
    });
    const client = new BoundClient(socket);
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
      await client.close();
      throw error;
    }
    return client;
  }

  /** The client's own port (the TCPREMOTEPORT the server should report). */
  get localPort(): number {
    return this.#socket.localPort ?? 0;
  }
}
