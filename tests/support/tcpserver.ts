/**
 * `main.ts` under Debian's real `tcpserver -R -H -l localhost` on
 * 127.0.0.1 (never without `-R -H -l`: that would send DNS queries).
 *
 * @module
 */

import { Client, freePort } from "./client.ts";
import { descendants, killAll } from "./procs.ts";
import { waitUntil, within } from "./time.ts";
import { ROOT } from "./sandbox.ts";
import { Collector } from "./talk.ts";

/** How to start tcpserver. */
export interface TcpserverOptions {
  /** Port on 127.0.0.1; a free one when absent. */
  readonly port?: number;
  /** The program tcpserver runs per connection, after `deno run --allow-all`. */
  readonly program: readonly string[];
  /** Programs to put between tcpserver and deno (e.g. `recordio`). */
  readonly wrapper?: readonly string[];
  /** The whole environment (nothing else is inherited). */
  readonly env: Record<string, string>;
}

/** A running tcpserver; `stop()` (or dispose) ends it and every session it started. */
export class Tcpserver implements AsyncDisposable {
  readonly port: number;
  readonly pid: number;
  /** tcpserver's stderr, which is also every session's log. */
  readonly stderr: Collector;
  readonly #child: Deno.ChildProcess;
  #stopped = false;
  #connections = 0;

  private constructor(child: Deno.ChildProcess, port: number) {
    this.#child = child;
    this.pid = child.pid;
    this.port = port;
    this.stderr = new Collector(child.stderr);
  }

  /** Start and wait (bounded) until it has bound its port. */
  static async start(options: TcpserverOptions): Promise<Tcpserver> {
    const port = options.port ?? freePort();
    const child = new Deno.Command("tcpserver", {
      args: [
        "-v",
        "-R",
        "-H",
        "-l",
        "localhost",
        "127.0.0.1",
        String(port),
        ...(options.wrapper ?? []),
        Deno.execPath(),
        "run",
        "--allow-all",
        ...options.program,
      ],
      cwd: ROOT,
      env: options.env,
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const server = new Tcpserver(child, port);
    try {
      // With -v, tcpserver prints "status: 0/40" once it listens.
      await server.stderr.until(
        (data) => new TextDecoder().decode(data).includes("status: 0/"),
        5_000,
        `tcpserver to listen on 127.0.0.1:${port}`,
      );
      if (server.stderr.ended) {
        throw new Error(`tcpserver failed: ${server.log}`);
      }
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** Connect a raw client. */
  connect(): Promise<Client> {
    this.#connections++;
    return Client.connect(this.port);
  }

  /** Everything logged so far. */
  get log(): string {
    return new TextDecoder().decode(this.stderr.bytes);
  }

  /**
   * Wait (bounded) until at least `sessions` sessions (default: one per
   * `connect()`) have ended and none is running, going by tcpserver's own
   * `pid N from …` / `end N status S` lines. Returns each ended session's
   * exit status.
   */
  async idle(sessions = this.#connections, ms = 10_000): Promise<number[]> {
    const count = (re: RegExp) => (this.log.match(re) ?? []).length;
    const done = await waitUntil(() => {
      const started = count(/^tcpserver: pid \d+ from /gm);
      const ended = count(/^tcpserver: end \d+ status \d+$/gm);
      return ended >= sessions && ended === started;
    }, ms);
    if (!done) {
      throw new Error(`sessions still running after ${ms} ms:\n${this.log}`);
    }
    return [...this.log.matchAll(/^tcpserver: end \d+ status (\d+)$/gm)].map((
      m,
    ) => Number(m[1]));
  }

  /** SIGTERM tcpserver, then SIGKILL sessions it left behind, by pid. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const sessions = descendants(this.pid).map((p) => p.pid);
    try {
      Deno.kill(this.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
    await within(this.#child.status, 5_000, "tcpserver to exit");
    killAll(sessions);
    await this.stderr.cancel();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
