/**
 * The spawn floor: the two back-end runs of a session (check, then change)
 * through `runProgram` of `lib/stores/programs/`, with no socket and no protocol,
 * in a Deno process of its own:
 * `deno run -A bench/floor.ts --floor '{json}'`.
 *
 * @module
 */

import { openStarter, runProgram } from "../lib/stores/programs/programs.ts";
import type { Fd3spawnStarter } from "../lib/stores/programs/fd3spawn.ts";
import { changePayload, checkPayload } from "../lib/stores/programs/fd3.ts";
import { cpuOf, type LoadResult, runPool } from "./loadgen.ts";
import type { Kit } from "./kit.ts";

/** Settings of a spawn-floor run. */
export interface FloorOptions {
  readonly backend: string;
  /** fd3exec's path; absent: the /bin/sh shim. */
  readonly helper?: string;
  /** fd3spawn's path; it replaces `helper`. */
  readonly spawner?: string;
  readonly sessions: number;
  readonly concurrency: number;
  readonly maxMs: number;
  readonly warmup: number;
}

/**
 * The spawn floor: per session the check and then the change program run
 * through `runProgram` with their payloads and the ucspi-tcp variables, as
 * in listen mode, with no socket and no protocol.
 */
export async function runFloor(
  options: FloorOptions,
): Promise<LoadResult & { cpuMs: number }> {
  const bytes = (text: string) => new TextEncoder().encode(text);
  const starter = openStarter(
    options.spawner !== undefined
      ? { kind: "fd3spawn", path: options.spawner }
      : options.helper !== undefined
      ? { kind: "fd3exec", path: options.helper }
      : { kind: "shim" },
    (m) => console.error(m),
  );
  const spawner = options.spawner === undefined
    ? undefined
    : starter as Fd3spawnStarter;
  const env: Record<string, string> = { PROTO: "TCP", TCPLOCALPORT: "106" };
  env.TCPREMOTEIP = env.TCPLOCALIP = "127.0.0.1";
  env.TCPREMOTEPORT = "40000";
  const once = async () => {
    const [user, old, next] = ["bench", "old-secret", "new-secret"].map(bytes);
    for (
      const payload of [
        checkPayload(user!, old!),
        changePayload(user!, old!, next!),
      ]
    ) {
      const result = await runProgram(starter, {
        argv: [options.backend],
        payload,
        timeoutMs: 30_000,
        env,
        redact: [old!, next!],
        onOutput: () => {},
      });
      if (result.kind !== "exited" || result.code !== 0) {
        throw new Error(`back end: ${JSON.stringify(result)}`);
      }
    }
  };
  try {
    await runPool({ ...options, sessions: options.warmup, mode: "full" }, once);
    const cpu0 = cpuOf("self") + (spawner ? cpuOf(spawner.pid() ?? 0) : 0);
    const result = await runPool({ ...options, mode: "full" }, once);
    // fd3spawn reaps the back ends: its CPU counts them.
    const cpu1 = cpuOf("self") + (spawner ? cpuOf(spawner.pid() ?? 0) : 0);
    return { ...result, cpuMs: cpu1 - cpu0 };
  } finally {
    await starter.close();
  }
}

/** Run the spawn floor in its own Deno process; `pid` is there to be sampled. */
export function spawnFloor(
  kit: Kit,
  options: FloorOptions,
): {
  readonly pid: number;
  readonly result: Promise<LoadResult & { cpuMs: number }>;
} {
  const self = `${kit.repo}/bench/floor.ts`;
  const child = new Deno.Command(kit.deno, {
    args: ["run", "--allow-all", self, "--floor", JSON.stringify(options)],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  const result = child.output().then((out) => {
    if (!out.success) throw new Error(`spawn floor: ${text(out.stderr)}`);
    return JSON.parse(text(out.stdout)) as LoadResult & { cpuMs: number };
  });
  return { pid: child.pid, result };
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--floor");
  if (at < 0) {
    console.error(
      "usage: deno run -A bench/floor.ts --floor '{FloorOptions}'",
    );
    Deno.exit(100);
  }
  console.log(JSON.stringify(await runFloor(JSON.parse(Deno.args[at + 1]!))));
}
