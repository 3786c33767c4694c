/**
 * Run `main.ts` in listen mode as a subprocess: start it, learn the chosen
 * ports from its startup line, collect its log lines, signal it, and stop
 * it within a deadline (SIGKILL as the last resort, so no test leaves a
 * server behind).
 *
 * @module
 */

import { MAIN } from "./sandbox.ts";
import { within } from "./time.ts";

/** One bound listener, from the startup line. */
export interface Bound {
  /** As printed: `127.0.0.1`, `::1`, `0.0.0.0`. */
  readonly ip: string;
  readonly port: number;
  readonly tls: boolean;
}

/** What to run. */
export interface ServerSpec {
  /** Options before the host name (`--listen …`, limits, TLS). */
  readonly options: readonly string[];
  /** The checkpassword chain. */
  readonly check: readonly string[];
  /** `PASSWORD_COMMAND`. */
  readonly password: string;
  readonly hostname?: string;
  /** Extra environment (fakeauth's ledger and accounts). */
  readonly env?: Readonly<Record<string, string>>;
  /** Flags for `deno run` itself, e.g. `--v8-flags=…`. */
  readonly denoFlags?: readonly string[];
  /**
   * A program that execs its arguments (the deno command line), to start
   * the server as a harness would, e.g. with descriptors left open.
   */
  readonly wrapper?: readonly string[];
}

function command(spec: ServerSpec): Deno.Command {
  const [program, ...wrapped] = [...(spec.wrapper ?? []), Deno.execPath()];
  return new Deno.Command(program!, {
    args: [
      ...wrapped,
      "run",
      "--quiet",
      "--allow-all",
      ...(spec.denoFlags ?? []),
      MAIN,
      ...spec.options,
      spec.hostname ?? "pop.example",
      ...spec.check,
    ],
    env: { NO_COLOR: "1", PASSWORD_COMMAND: spec.password, ...spec.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Parse `listening on 127.0.0.1:4711 (plain), [::1]:4712 (tls); …`. */
function parseListening(line: string): Bound[] {
  const list = /listening on (.*?); max-sessions/.exec(line)?.[1];
  if (!list) throw new Error(`not a startup line: ${line}`);
  return list.split(", ").map((item) => {
    const m = /^\[?([^\]\s]+?)\]?:(\d+) \((plain|tls)\)$/.exec(item);
    if (!m) throw new Error(`cannot parse listener ${JSON.stringify(item)}`);
    return { ip: m[1]!, port: Number(m[2]), tls: m[3] === "tls" };
  });
}

/** A running server process. */
export class Server {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  /** Every line it wrote to stderr so far. */
  readonly logs: string[] = [];
  /** Everything it wrote to stdout (must stay empty in listen mode). */
  stdout = "";
  bound: Bound[] = [];
  readonly status: Promise<Deno.CommandStatus>;
  readonly #drained: Promise<void>;
  #listeners = new Set<() => void>();

  private constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.pid = child.pid;
    this.status = child.status;
    this.#drained = Promise.all([
      this.#collect(child.stderr, (line) => this.#log(line)),
      this.#collect(child.stdout, (line) => (this.stdout += line + "\n")),
    ]).then(() => {});
  }

  /** Start and wait (bounded) for the startup line. */
  static async start(spec: ServerSpec): Promise<Server> {
    const server = new Server(command(spec).spawn());
    try {
      const line = await server.waitForLog(/listening on /, 20_000);
      server.bound = parseListening(line);
      return server;
    } catch (error) {
      await server.stop();
      throw new Error(
        `server did not start: ${(error as Error).message}\n${
          server.logs.join("\n")
        }`,
      );
    }
  }

  /** Run to completion (a startup that must fail); bounded. */
  static async run(
    spec: ServerSpec,
    ms = 20_000,
  ): Promise<{ code: number; logs: string[]; stdout: string }> {
    const server = new Server(command(spec).spawn());
    try {
      const status = await within(server.status, ms, "server exit");
      await server.#drained;
      return { code: status.code, logs: server.logs, stdout: server.stdout };
    } finally {
      await server.stop();
    }
  }

  /** The port of the `index`-th listener. */
  port(index = 0): number {
    const bound = this.bound[index];
    if (!bound) throw new Error(`no listener #${index}`);
    return bound.port;
  }

  async #collect(
    stream: ReadableStream<Uint8Array>,
    each: (line: string) => void,
  ) {
    let partial = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (partial + text).split("\n");
      partial = lines.pop()!;
      lines.forEach(each);
    }
    if (partial !== "") each(partial);
  }

  #log(line: string): void {
    this.logs.push(line);
    for (const wake of [...this.#listeners]) wake();
  }

  /** The first log line matching `pattern` (past or future), within `ms`. */
  async waitForLog(pattern: RegExp, ms = 5_000, from = 0): Promise<string> {
    const find = () => this.logs.slice(from).find((l) => pattern.test(l));
    let wake!: () => void;
    const seen = new Promise<string>((resolve) => {
      wake = () => {
        const line = find();
        if (line !== undefined) resolve(line);
      };
    });
    this.#listeners.add(wake);
    const exited = this.status.then(async () => {
      await this.#drained;
      const line = find();
      if (line !== undefined) return line;
      throw new Error(`server exited before logging ${pattern}`);
    });
    try {
      wake();
      return await within(Promise.race([seen, exited]), ms, `log ${pattern}`);
    } finally {
      this.#listeners.delete(wake);
      exited.catch(() => {});
    }
  }

  /** Log lines matching `pattern`. */
  grep(pattern: RegExp): string[] {
    return this.logs.filter((l) => pattern.test(l));
  }

  /** Send a signal; ignores a server that has already exited. */
  signal(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // already gone
    }
  }

  /**
   * SIGTERM, wait up to `ms` for the exit, SIGKILL if it did not come;
   * resolves to the exit status once the pipes are drained.
   */
  async stop(ms = 10_000): Promise<Deno.CommandStatus> {
    this.signal("SIGTERM");
    const status = await within(this.status, ms, "server exit").catch(() => {
      this.signal("SIGKILL");
      return this.status;
    });
    await this.#drained;
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}
