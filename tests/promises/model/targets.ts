/**
 * The servers the model runs against (`main.ts` in stdio mode under
 * tcpserver, and in listen mode on 127.0.0.1 port 0), and `check`, which
 * runs the property against one of them with a replay hint on failure.
 *
 * @module
 */

import fc from "fast-check";
import { Client } from "../../support/client.ts";
import { waitUntil } from "../../support/time.ts";
import {
  baseEnv,
  FAKEAUTH,
  HOST,
  MAIN,
  Sandbox,
} from "../../support/sandbox.ts";
import { Tcpserver } from "../../support/tcpserver.ts";
import { Server } from "../../support/listen_server.ts";
import { spawnerOf } from "../../support/fd3exec.ts";
import { PATH, RUNS, SEED, SHRINK, TIMINGS } from "./settings.ts";
import { SCRIPTS } from "./scripts.ts";
import { round, type Target } from "./round.ts";

/** The account file of the session on client port `port`. */
export function accountsOf(box: Sandbox, port: number): string {
  return `${box.dir}/accounts-${port}`;
}

/**
 * A wrapper around fakeauth that uses, per client port (TCPREMOTEPORT, set
 * by tcpserver and by listen mode):
 * - its own account file: fakeauth's set rewrites the file without a lock,
 *   so concurrent sets on one shared file lose updates (seen in this test);
 * - a forced behaviour: fakeauth picks it from the user name on fd 3, which
 *   a child that must not read fd 3 never sees.
 * Loopback ports get reused (tcp_tw_reuse=2), but not within a run: all its
 * clients connect before any closes, and each run starts from fresh files.
 */
async function writeWrapper(box: Sandbox): Promise<[string, string]> {
  const wrapper = `${box.dir}/auth`;
  const force = `${box.dir}/force`;
  await Deno.writeTextFile(force, "");
  await Deno.writeTextFile(
    wrapper,
    `#!/bin/sh
port=\${TCPREMOTEPORT:-none}
a='${box.dir}/accounts-'$port
[ -f "$a" ] && FAKEAUTH_ACCOUNTS=$a && export FAKEAUTH_ACCOUNTS
b=$(sed -n "s/^$port $1 //p" '${force}')
[ -n "$b" ] && FAKEAUTH_BEHAVE=$b && export FAKEAUTH_BEHAVE
exec '${FAKEAUTH}' "$@"
`,
  );
  await Deno.chmod(wrapper, 0o755);
  return [wrapper, force];
}

/** main.ts in stdio mode under tcpserver. */
export async function withTcpserver(
  body: (target: Target) => Promise<void>,
): Promise<void> {
  await using box = await Sandbox.create();
  const [wrapper, forcePath] = await writeWrapper(box);
  await using server = await Tcpserver.start({
    program: [MAIN, ...TIMINGS, HOST, wrapper, "check"],
    env: { ...baseEnv(), ...box.env(), PASSWORD_COMMAND: `${wrapper} set` },
  });
  await body({
    name: "stdio under tcpserver",
    box,
    forcePath,
    connect: () => server.connect(),
    settle: async () => {
      const statuses = await server.idle(undefined, 15_000);
      return statuses.some((c) => c !== 0)
        ? [`session exit statuses ${statuses.join(",")}`]
        : [];
    },
    log: () => server.log,
    parentOf: (runs) =>
      new Set(runs.map((e) => e.ppid)).size > 1
        ? `runs of one session under different pids`
        : undefined,
  });
}

/** main.ts in listen mode on 127.0.0.1, port chosen by the kernel. */
export async function withListener(
  body: (target: Target) => Promise<void>,
  spawner?: string,
): Promise<void> {
  await using box = await Sandbox.create();
  const [wrapper, forcePath] = await writeWrapper(box);
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
    name: spawner === undefined ? "listen mode" : "listen mode with fd3spawn",
    box,
    forcePath,
    connect: () => {
      connected++;
      return Client.connect(server.port());
    },
    settle: async () => {
      const ended = () => server.grep(/: session end: /).length;
      const done = await waitUntil(() => ended() >= connected, 15_000);
      const problems = done
        ? []
        : [`${connected - ended()} sessions still open`];
      if (server.stdout !== "") problems.push(`stdout: ${server.stdout}`);
      return problems;
    },
    log: () => server.logs.join("\n"),
    parentOf: (runs) => {
      // The server starts each program itself, or its one fd3spawn does.
      const parent = spawner === undefined ? server.pid : spawnerOf(server.pid);
      return runs.some((e) => e.ppid !== parent)
        ? `a run whose parent is not ${
          spawner === undefined ? "the server" : "fd3spawn"
        } ${parent}`
        : undefined;
    },
  });
}

/** The targets by name, for named regressions. */
export const TARGETS = {
  tcpserver: withTcpserver,
  listen: withListener,
} as const;

/** fast-check's parameters, and a hint to replay a failure. */
export async function check(target: Target, seed: number): Promise<void> {
  try {
    await fc.assert(
      fc.asyncProperty(SCRIPTS, (scripts) => round(target, scripts)),
      {
        seed,
        numRuns: RUNS,
        endOnFailure: !SHRINK,
        ...(PATH ? { path: PATH } : {}),
      },
    );
  } catch (error) {
    const { message, cause } = error as Error;
    const path = /path: "([\d:]*)"/.exec(message)?.[1] ?? PATH ?? "";
    throw new Error(
      `${message}\n${cause instanceof Error ? cause.message : ""}\n` +
        `replay the shrunk case: MODEL_SEED=${SEED} MODEL_PATH=${path} ` +
        `deno test --allow-all tests/promises/model/ --filter "${target.name}"`,
    );
  }
}
