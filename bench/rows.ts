/**
 * One row of the table: a load run against a started server with its
 * process tree sampled for CPU and memory; plus the spawn-floor row, the
 * good-session-under-attack rows and the idle-connection memory.
 *
 * @module
 */

import type { Mode } from "./loadgen.ts";
import type { Target } from "./targets.ts";
import { log, type Row, type Run } from "./run.ts";
import * as targets from "./targets.ts";
import * as load from "./loadgen.ts";

export function overTime(run: Run): boolean {
  const over = performance.now() > run.deadline;
  if (over && !run.notes.some((n) => n.startsWith("time budget"))) {
    note(run, "time budget spent: the remaining rows were skipped");
  }
  return over;
}

export function note(run: Run, text: string): void {
  run.notes.push(text);
  log(text);
}

/** Sessions and time cap of a row; failing sessions last the 5 s failure delay. */
function limitsOf(run: Run, mode: string) {
  if (mode !== "failing") {
    return { sessions: run.sessions, maxMs: run.quick ? 3_000 : 15_000 };
  }
  return { sessions: run.quick ? 200 : 400, maxMs: run.quick ? 15e3 : 30e3 };
}

/** One row: a short warm-up, then the measured load with the process tree sampled. */
export async function row(
  run: Run,
  target: Target,
  mode: Mode,
  k: number,
  user: Row["user"] = "root",
): Promise<void> {
  if (overTime(run) || (run.quick && k === 32)) return;
  if (!target.running()) throw new Error("the server has exited");
  const base = { port: target.port, mode, concurrency: k };
  const warm = mode === "failing" ? 0 : Math.min(50, 4 * k);
  await load.runLoad({ ...base, sessions: warm, maxMs: 10_000 });
  const sampler = new load.TreeSampler(target.pid);
  const result = await load.runLoad({ ...base, ...limitsOf(run, mode) });
  await load.sleep(100); // let the server reap its last children (CPU)
  addRow(run, { ...result, target: target.name, user, ...sampler.stop() });
}

function addRow(run: Run, r: Row): void {
  run.rows.push(r);
  const errors = r.errors ? `, ${r.errors} errors: ${r.errorSamples}` : "";
  const [rate, p50, p99] = [r.perSecond, r.p50Ms, r.p99Ms].map((v) =>
    v.toFixed(1)
  );
  log(
    `${r.target} ${r.user} ${r.mode}@${r.concurrency}: ${rate}/s, p50 ${p50} ms, p99 ${p99} ms${errors}`,
  );
}

/** The spawn floor at concurrency `k` with `starter` as far as it was built, in its own Deno process. */
export async function floorRow(
  run: Run,
  k: number,
  starter: targets.Starter,
): Promise<void> {
  if (overTime(run)) return;
  const { kit } = run;
  const target = starter === "spawner"
    ? "spawn-floor"
    : `spawn-floor-${starter}`;
  const how = starter === "spawner" && kit.fd3spawn
    ? { spawner: kit.fd3spawn }
    : starter !== "sh" && kit.fd3exec
    ? { helper: kit.fd3exec }
    : {};
  const options = {
    ...{ backend: kit.backend, concurrency: k, warmup: 4 * k },
    ...how,
  };
  const limits = limitsOf(run, "full");
  const floor = targets.spawnFloor(kit, { ...options, ...limits });
  const kill = () => Deno.kill(floor.pid, "SIGKILL");
  const handle = { stop: () => Promise.resolve().then(kill).catch(() => {}) };
  run.live.add(handle);
  const sampler = new load.TreeSampler(floor.pid);
  try {
    const result = await floor.result; // its cpuMs: measured inside
    const memory = { ...sampler.stop(), cpuMs: result.cpuMs };
    addRow(run, { ...result, ...memory, target, user: "root" });
  } catch (error) {
    note(run, (error as Error).message);
  } finally {
    sampler.stop();
    run.live.delete(handle);
  }
}

/** A good session's latency alone, then while 200 failing sessions sit in their failure delay. */
export async function attack(run: Run, target: Target): Promise<void> {
  if (overTime(run)) return;
  const port = target.port;
  // p99 of 1,000 sessions is their 10th worst, steadier than the 5th of
  // 500; alone is measured before and after the attack, against drift.
  const [sessions, maxMs] = run.quick ? [200, 8_000] : [1_000, 15_000];
  const good = { port, mode: "full" as const, concurrency: 1, sessions, maxMs };
  const measure = async (mode: string, times = 1) => {
    const sampler = new load.TreeSampler(target.pid);
    const result = await load.runLoad({ ...good, sessions: sessions * times });
    addRow(run, {
      ...result,
      mode,
      target: target.name,
      user: "root",
      ...sampler.stop(),
    });
  };
  await measure("full, alone");
  const stop = new AbortController();
  const failing = load.runLoad({
    ...{ port, mode: "failing", concurrency: 200, sessions: 20_000 },
    maxMs: maxMs + 30_000,
    rampMs: 5_000, // a steady 40 failures/s rather than waves of 200
    stop: stop.signal,
  });
  await load.sleep(5_500);
  await measure("full, +200 failing", 2);
  stop.abort();
  note(
    run,
    `attack: ${
      (await failing).completed
    } failing sessions ended during the run`,
  );
  await measure("full, alone after");
}

/** Listen-mode memory per idle connection: server RSS before and after 1,000 idle sessions. */
export async function idleMemory(run: Run, target: Target): Promise<void> {
  const connections = 1000;
  const port = target.port;
  const warm = { port, mode: "full" as const, concurrency: 8, sessions: 100 };
  await load.runLoad({ ...warm, maxMs: 10_000 });
  // RSS moves with the garbage collector: the median of five readings.
  const rss = async () => {
    const kb: number[] = [];
    for (let i = 0; i < 5; i++, await load.sleep(250)) {
      kb.push(load.memoryOf(target.pid)?.rss ?? NaN);
    }
    return kb.sort((a, b) => a - b)[2]!;
  };
  await load.sleep(1_000);
  const beforeKb = await rss();
  const conns = await load.openIdle(port, connections);
  await load.sleep(1_000);
  const afterKb = await rss();
  load.closeAll(conns);
  run.idle = { connections, beforeKb, afterKb };
}
