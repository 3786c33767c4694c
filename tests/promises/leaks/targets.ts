/**
 * The servers the leak tests run against: `main.ts` in stdio mode under
 * tcpserver and in listen mode on 127.0.0.1 port 0.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Client } from "../../support/client.ts";
import type { LedgerEntry } from "../../support/ledger.ts";
import type { ProcInfo } from "../../support/procs.ts";
import { waitUntil } from "../../support/time.ts";
import { baseEnv, HOST, MAIN, Sandbox } from "../../support/sandbox.ts";
import { Tcpserver } from "../../support/tcpserver.ts";
import { Server } from "../../support/listen_server.ts";
import { TIMINGS } from "./settings.ts";
import { type Key, writeWrapper } from "./backends.ts";

/** A server under test. */
export interface Target {
  readonly mode: string;
  readonly box: Sandbox;
  /** tcpserver, or the listen-mode server: the back ends run below it. */
  readonly root: number;
  /** The listen-mode server, whose descriptors must come back to baseline. */
  readonly listener?: number;
  /** A process that lives as long as the server (fd3spawn), not a leak. */
  readonly kept?: (p: ProcInfo) => boolean;
  connect(): Promise<Client>;
  /** The session's key, once its greeting has arrived. */
  keyOf(client: Client): Promise<Key>;
  /** The session of a back-end run (matches `Key.session`). */
  sessionOf(entry: LedgerEntry): string;
  /** Wait (bounded) until every session so far has ended. */
  settle(): Promise<void>;
  log(): string;
}

/** Run `body` against main.ts in stdio mode under tcpserver. */
export async function withTcpserver(
  body: (target: Target) => Promise<void>,
): Promise<void> {
  await using box = await Sandbox.create();
  const wrapper = await writeWrapper(box);
  await using server = await Tcpserver.start({
    program: [MAIN, ...TIMINGS, HOST, wrapper, "check"],
    env: { ...baseEnv(), ...box.env(), PASSWORD_COMMAND: `${wrapper} set` },
  });
  // How often each client port was used: the n-th use is the n-th "ok" line.
  const uses = new Map<number, number>();
  await body({
    mode: "tcpserver",
    box,
    root: server.pid,
    connect: async () => {
      const client = await server.connect();
      uses.set(client.localPort, (uses.get(client.localPort) ?? 0) + 1);
      return client;
    },
    keyOf: async (client) => {
      // tcpserver -v logs "ok PID local :127.0.0.1::PORT" for each session.
      const port = client.localPort;
      const ok = new RegExp(`^tcpserver: ok (\\d+) .*::${port}$`, "gm");
      const nth = () => [...server.log.matchAll(ok)][uses.get(port)! - 1]?.[1];
      assert.ok(await waitUntil(() => nth() !== undefined, 5_000));
      return { file: `p${nth()}-${port}`, session: `${nth()}:${port}` };
    },
    sessionOf: (entry) => `${entry.ppid}:${entry.env.TCPREMOTEPORT}`,
    settle: async () => {
      const statuses = await server.idle(undefined, 20_000);
      assert.ok(statuses.every((s) => s === 0), `exit statuses ${statuses}`);
    },
    log: () => server.log,
  });
}

/** Run `body` against main.ts in listen mode on 127.0.0.1 port 0. */
export async function withListener(
  body: (target: Target) => Promise<void>,
  spawner?: string,
): Promise<void> {
  await using box = await Sandbox.create();
  const wrapper = await writeWrapper(box);
  const flags = spawner === undefined ? [] : ["--fd3-spawner", spawner];
  await using server = await Server.start({
    options: [...flags, "--listen", "127.0.0.1:0", ...TIMINGS],
    check: [wrapper, "check"],
    password: `${wrapper} set`,
    hostname: HOST,
    env: box.env(),
  });
  let connected = 0;
  await body({
    mode: spawner === undefined ? "listen" : "listen with fd3spawn",
    box,
    root: server.pid,
    listener: server.pid,
    ...(spawner === undefined
      ? {}
      : { kept: (p: ProcInfo) => p.cmdline === spawner }),
    connect: () => {
      connected++;
      return Client.connect(server.port());
    },
    keyOf: (client) => {
      const port = String(client.localPort);
      return Promise.resolve({ file: port, session: port });
    },
    sessionOf: (entry) => entry.env.TCPREMOTEPORT ?? "?",
    settle: async () => {
      const ended = () => server.grep(/: session end: /).length;
      assert.ok(
        await waitUntil(() => ended() >= connected, 20_000),
        `${connected - ended()} sessions still open`,
      );
      assert.equal(server.stdout, "");
    },
    log: () => server.logs.join("\n"),
  });
}
