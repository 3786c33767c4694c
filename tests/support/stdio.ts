/**
 * `main.ts` as a subprocess in stdio mode: the test is the client on its
 * stdin/stdout, its stderr (the log) is collected.
 *
 * @module
 */

import assert from "node:assert/strict";
import { descendants, killAll } from "./procs.ts";
import { assertNoSecrets, OLD, ROW_ACCOUNTS } from "./rows.ts";
import {
  baseEnv,
  FAKEAUTH,
  HOST,
  MAIN,
  ROOT,
  type Sandbox,
  SHORT,
} from "./sandbox.ts";
import { Collector, Talk, type Transcript } from "./talk.ts";
import { within } from "./time.ts";

/** How to start the server. */
export interface StdioOptions {
  /** Arguments after `main.ts`. */
  readonly args: readonly string[];
  /** The whole environment (nothing else is inherited). */
  readonly env: Record<string, string>;
}

/** The usual invocation: short timings, `HOST`, `fakeauth check`, `fakeauth set`. */
export function standard(
  box: Sandbox,
  extra: { args?: readonly string[]; env?: Record<string, string> } = {},
): StdioOptions {
  return {
    args: [...SHORT, ...(extra.args ?? []), HOST, FAKEAUTH, "check"],
    env: {
      ...baseEnv(),
      ...box.env(),
      PASSWORD_COMMAND: `${FAKEAUTH} set`,
      ...extra.env,
    },
  };
}

/** How the process ended. */
export interface Ended {
  readonly code: number;
  readonly signal: Deno.Signal | null;
}

/** A running `main.ts`; dispose kills what is left and releases every pipe. */
export class StdioServer implements AsyncDisposable {
  readonly pid: number;
  readonly talk: Talk;
  readonly stderr: Collector;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #stdinClosed = false;

  constructor(options: StdioOptions) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, ...options.args],
      cwd: ROOT,
      env: options.env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdin.closed.catch(() => {});
    this.stderr = new Collector(this.#child.stderr);
    this.talk = new Talk(
      String(this.pid),
      new Collector(this.#child.stdout),
      (data) => this.#stdin.write(data),
    );
  }

  /** Client EOF: close the server's stdin. */
  async closeStdin(): Promise<void> {
    if (this.#stdinClosed) return;
    this.#stdinClosed = true;
    await this.#stdin.close().catch(() => {});
  }

  /** The client vanishes: close stdin and stop reading stdout. */
  async vanish(): Promise<void> {
    await this.closeStdin();
    await this.talk.incoming.cancel();
  }

  /** Wait for the process to end (and its log to be complete); throws after `ms`. */
  async exit(ms = 10_000): Promise<Ended> {
    const status = await within(this.#child.status, ms, "server exit");
    await within(this.stderr.done, ms, "server log to end");
    return { code: status.code, signal: status.signal };
  }

  /** The log so far. */
  get log(): string {
    return new TextDecoder().decode(this.stderr.bytes);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    killAll(descendants(this.pid).map((p) => p.pid));
    killAll([this.pid]);
    await this.closeStdin();
    await this.#child.status;
    await this.talk.incoming.cancel();
    await this.stderr.cancel();
  }
}

/** Run the server to its end with all of `input` on stdin at once, then EOF. */
export async function runOnce(
  options: StdioOptions,
  input: Uint8Array = new Uint8Array(0),
  ms = 10_000,
): Promise<
  { stdout: string; log: string; ended: Ended; transcript: Transcript }
> {
  await using server = new StdioServer(options);
  await server.talk.send(input);
  await server.closeStdin();
  const ended = await server.exit(ms);
  await server.talk.incoming.done;
  return {
    stdout: server.talk.received,
    log: server.log,
    ended,
    transcript: server.talk.transcript(),
  };
}

/** The row accounts plus the noisy and the slow back end's users. */
export const ACCOUNTS = [
  ...ROW_ACCOUNTS,
  ["noisebob", OLD],
  ["slowbob", OLD],
] as const;

/** Exit 0, no stack trace, no secret in the log, the ledger checker holds. */
export async function finish(
  server: StdioServer,
  box: Sandbox,
): Promise<void> {
  assert.deepEqual(await server.exit(), { code: 0, signal: null });
  assertNoSecrets(server.log);
  assert.doesNotMatch(server.log, /\n\s+at |Uncaught|panicked|error:/i);
  await box.verify([server.talk.transcript()]);
}
