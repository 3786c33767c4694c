/**
 * `deno task bench`: qmail-poppass against a C baseline and the spawn
 * floor, on loopback, in one run, with the same trivial back ends. Prints
 * one Markdown table and the issue-6 targets, or JSON with `--json`.
 *
 * Flags: `--quick`, `--sessions N` (per row), `--only T[,T]`, `--json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import * as load from "./loadgen.ts";
import type { LoadResult, Mode } from "./loadgen.ts";
import { measurePair, type Pair, type PairResult } from "./paired.ts";
import * as targets from "./targets.ts";
import { hashingBench, hashingReport } from "./hashing.ts";
import type { Kit, Target } from "./targets.ts";

/** The targets, in the order they run. */
export const TARGETS = [
  ...["c-baseline", "spawn-floor", "spawn-floor-fd3exec", "spawn-floor-sh"],
  ...["listen", "listen-fd3exec", "listen-sh"],
  ...["stdio-ts", "stdio-bundle", "empty-deno", "debian-poppassd", "paired"],
  "hashing", // bench/hashing.ts: its own servers, its own section
];

/** The stdio bundle as nobody with the package's read-only code cache. */
const CACHED_BUNDLE = "stdio-bundle (package cache)";

/** A row of the table: a load result, its target, memory peaks in KB and CPU (see `TreeSampler`). */
export interface Row extends LoadResult {
  /** One of `TARGETS`. */
  readonly target: string;
  /** Who the server ran as. */
  readonly user: "root" | "nobody";
  /** Largest single process, KB. */
  readonly peakKb: number;
  /** Largest sum over the process tree at one instant, KB. */
  readonly totalKb: number;
  /** CPU time of the server's whole process tree during the row, ms. */
  readonly cpuMs: number;
}

/** One of the targets and how this run did. */
export interface Check {
  /** The ratio or quantity, in words. */
  readonly what: string;
  /** Its value in this run. */
  readonly value: number;
  /** The bound, or "(info)". */
  readonly limit: string;
  /** Absent for "(info)". */
  readonly met?: boolean;
}

type Plan = readonly (readonly [Mode, readonly number[]])[];
interface Instance {
  readonly start: () => Promise<Target>;
  readonly plan: Plan;
  readonly user?: "nobody";
  readonly then?: (run: Run, target: Target) => Promise<void>;
}
interface Run {
  readonly kit: Kit;
  readonly quick: boolean;
  readonly sessions: number;
  readonly deadline: number;
  readonly rows: Row[];
  readonly notes: string[];
  readonly live: Set<{ stop(): Promise<void> }>;
  idle?: { connections: number; beforeKb: number; afterKb: number };
  readonly pairs: PairResult[];
}

const SERVER: Plan = [
  ["full", [1, 8, 32]],
  ["greeting", [1, 8]],
  ["failing", [200]],
];
const STDIO: Plan = [["full", [1, 8]], ["greeting", [1, 8]]];
const log = (text: string) => console.error(`bench: ${text}`);

/** What to start for a target, or why it is skipped. */
function instancesOf(kit: Kit, name: string): Instance[] | string {
  type Opts = Parameters<typeof targets.startTcpserver>[3];
  const tcp = (program: string[], opts: Opts = {}) => () =>
    targets.startTcpserver(kit, name, program, opts);
  const asNobody = (program: string[], cwd: string, plan: Plan) =>
    kit.asNobody
      ? [{ start: tcp(program, { cwd, nobody: true }), plan, user: "nobody" }]
      : [];
  if (name !== "listen" && !kit.tcpserver) return "needs tcpserver";
  const deno = [kit.deno, "run", "--allow-all"];
  switch (name) {
    case "c-baseline": {
      if (!kit.cBaseline) return "needs cc";
      const program = [kit.cBaseline, targets.HOSTNAME, kit.backend];
      return [{ start: tcp(program), plan: SERVER }];
    }
    case "listen-fd3exec":
      if (!kit.fd3spawn) {
        return "no fd3spawn (no cc): listen uses the shell shim";
      }
      return [{
        start: () => targets.startListen(kit, name, "fd3exec"),
        plan: [["full", [1, 8]]],
      }];
    case "listen-sh":
      if (!kit.fd3exec) return "no fd3exec (no cc): listen uses the shell shim";
      return [{
        start: () => targets.startListen(kit, name, "sh"),
        plan: [["full", [1, 8]]],
      }];
    case "listen":
      return [
        { start: () => targets.startListen(kit), plan: SERVER, then: attack },
        {
          start: () => targets.startListen(kit, "listen (idle)"),
          plan: [],
          then: idleMemory,
        },
      ];
    case "stdio-ts":
    case "stdio-bundle": {
      const bundled = name === "stdio-bundle";
      if (bundled && !kit.bundle) return "no bundle";
      const cwd = bundled ? kit.work : kit.repo;
      const program = targets.stdioCommand(kit, bundled);
      const root = { start: tcp(program, { cwd }), plan: STDIO };
      if (!kit.asNobody || (!bundled && !kit.denoDir)) return [root];
      // main.ts as nobody: a read-only DENO_DIR, and never a download.
      const env = bundled ? {} : { DENO_DIR: kit.denoDir! };
      const flags = bundled ? [] : ["--cached-only"];
      const start = tcp(targets.stdioCommand(kit, bundled, flags), {
        ...{ cwd, env, nobody: true },
      });
      const nobody = { start, plan: [["greeting", [1]]], user: "nobody" };
      if (!bundled || !kit.bundleCache) return [root, nobody] as Instance[];
      // As the Debian package runs it: a code cache filled by root.
      const cached = () =>
        targets.startTcpserver(kit, CACHED_BUNDLE, program, {
          ...{ cwd, env: { DENO_DIR: kit.bundleCache! }, nobody: true },
        });
      return [root, nobody, { ...nobody, start: cached }] as Instance[];
    }
    case "empty-deno": {
      const program = [...deno, kit.empty];
      const plan: Plan = [["eof", [1]]];
      return [
        { start: tcp(program), plan: [["eof", [1, 8]]] },
        ...asNobody(program, kit.work, plan),
      ] as Instance[];
    }
    case "debian-poppassd":
      if (!kit.debianPoppassd) return "Debian's poppassd is not available";
      return [{
        start: tcp([kit.debianPoppassd]),
        plan: [["greeting", [1, 8]]],
      }];
  }
  return "unknown target";
}

async function measureTarget(run: Run, name: string): Promise<void> {
  if (name === "paired") {
    for (const pair of pairsOf(run)) {
      if (overTime(run)) return;
      try {
        const result = await measurePair(pair, run.live);
        run.pairs.push(result);
        log(`${pair.what}: ${result.ratio.toFixed(2)}`);
      } catch (error) {
        note(run, `${pair.what}: ${(error as Error).message}`);
      }
    }
    return;
  }
  if (name === "spawn-floor") {
    for (const k of run.quick ? [1, 8] : [1, 8, 32]) {
      await floorRow(run, k, "spawner");
    }
    return;
  }
  if (name === "spawn-floor-fd3exec" || name === "spawn-floor-sh") {
    if (!run.kit.fd3exec) {
      return note(
        run,
        `${name} skipped: no cc, spawn-floor is the shell shim`,
      );
    }
    const starter = name === "spawn-floor-sh" ? "sh" : "fd3exec";
    for (const k of [1, 8]) await floorRow(run, k, starter);
    return;
  }
  const instances = instancesOf(run.kit, name);
  if (typeof instances === "string") {
    return note(run, `${name} skipped: ${instances}`);
  }
  for (const instance of instances) {
    if (overTime(run)) return;
    const target = await instance.start();
    run.live.add(target);
    try {
      for (const [mode, ks] of instance.plan) {
        for (const k of ks) await row(run, target, mode, k, instance.user);
      }
      await instance.then?.(run, target);
    } catch (error) {
      const said = target.tail().slice(-400);
      note(
        run,
        `${target.name}: ${(error as Error).message}; it said: ${said}`,
      );
    } finally {
      run.live.delete(target);
      await target.stop();
    }
  }
}

/** The ratios, measured interleaved (see bench/paired.ts). */
function pairsOf(run: Run): Pair[] {
  const { kit, quick } = run;
  if (!kit.tcpserver) return [];
  const tcp =
    (name: string, program: string[], nobody = false, env = {}) => () =>
      targets.startTcpserver(kit, name, program, { nobody, env });
  const empty = [kit.deno, "run", "--allow-all", kit.empty];
  const greeting = { concurrency: 1, block: quick ? 15 : 30, field: "p50Ms" };
  const pairs: Pair[] = [];
  if (kit.cBaseline) {
    const c = [kit.cBaseline, targets.HOSTNAME, kit.backend];
    pairs.push({
      what: PAIRED.listenVsC,
      a: { start: () => targets.startListen(kit), mode: "full" },
      b: { start: tcp("c-baseline", c), mode: "full" },
      ...{ concurrency: 8, block: quick ? 100 : 250, rounds: quick ? 4 : 8 },
      field: "perSecond",
    });
  }
  if (kit.bundle) {
    const bundle = targets.stdioCommand(kit, true);
    pairs.push({
      what: PAIRED.stdioRoot,
      a: { start: tcp("stdio-bundle", bundle), mode: "greeting" },
      b: { start: tcp("empty-deno", empty), mode: "eof" },
      ...greeting,
      rounds: quick ? 4 : 10,
    } as Pair);
    if (kit.asNobody && kit.bundleCache) {
      const cache = { DENO_DIR: kit.bundleCache };
      pairs.push({
        what: PAIRED.stdioNobody,
        a: { start: tcp(CACHED_BUNDLE, bundle, true, cache), mode: "greeting" },
        b: { start: tcp("empty-deno", empty, true), mode: "eof" },
        ...greeting,
        rounds: quick ? 4 : 10,
      } as Pair);
    }
  }
  return pairs;
}

const PAIRED = {
  listenVsC: "listen full@8 ÷ C baseline full@8, sessions/s, interleaved",
  stdioRoot: "stdio greeting p50, bundle ÷ empty deno run (root), interleaved",
  stdioNobody:
    "stdio greeting p50, bundle with the package's code cache ÷ empty deno run (nobody), interleaved",
};
const PAIRED_LIMITS: Record<string, string> = {
  [PAIRED.listenVsC]: "≥ 1.0",
  [PAIRED.stdioRoot]: "≤ 1.2",
  [PAIRED.stdioNobody]: "≤ 1.2",
};

function overTime(run: Run): boolean {
  const over = performance.now() > run.deadline;
  if (over && !run.notes.some((n) => n.startsWith("time budget"))) {
    note(run, "time budget spent: the remaining rows were skipped");
  }
  return over;
}

function note(run: Run, text: string): void {
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
async function row(
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
async function floorRow(
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
async function attack(run: Run, target: Target): Promise<void> {
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
async function idleMemory(run: Run, target: Target): Promise<void> {
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

/**
 * The targets, one a line: what | numerator | denominator | limit
 * ("(info)" when none). A value is target/mode/concurrency/user/field.
 */
const CHECKS = `
listen full@8 ÷ C baseline full@8, sessions/s, from the table | listen/full/8/root/perSecond | c-baseline/full/8/root/perSecond | (info)
listen full@8 ÷ spawn floor @8, sessions/s | listen/full/8/root/perSecond | spawn-floor/full/8/root/perSecond | ≥ 0.7
same from CPU per session: C ÷ listen | c-baseline/full/8/root/cpuPerSession | listen/full/8/root/cpuPerSession | (info)
same from CPU per session: floor ÷ listen | spawn-floor/full/8/root/cpuPerSession | listen/full/8/root/cpuPerSession | (info)
listen with fd3exec (no fd3spawn) full@8 ÷ C baseline full@8 | listen-fd3exec/full/8/root/perSecond | c-baseline/full/8/root/perSecond | (info)
listen with the /bin/sh shim full@8 ÷ C baseline full@8 | listen-sh/full/8/root/perSecond | c-baseline/full/8/root/perSecond | (info)
listen, fd3spawn ÷ fd3exec, full@8, sessions/s | listen/full/8/root/perSecond | listen-fd3exec/full/8/root/perSecond | (info)
listen, fd3exec ÷ /bin/sh shim, full@8, sessions/s | listen-fd3exec/full/8/root/perSecond | listen-sh/full/8/root/perSecond | (info)
spawn floor, fd3spawn ÷ fd3exec, @8, sessions/s | spawn-floor/full/8/root/perSecond | spawn-floor-fd3exec/full/8/root/perSecond | (info)
spawn floor, fd3exec ÷ /bin/sh shim, @8, sessions/s | spawn-floor-fd3exec/full/8/root/perSecond | spawn-floor-sh/full/8/root/perSecond | (info)
stdio greeting p50, bundle ÷ empty deno run (root), from the table | stdio-bundle/greeting/1/root/p50Ms | empty-deno/eof/1/root/p50Ms | (info)
stdio greeting p50, main.ts ÷ empty deno run (root) | stdio-ts/greeting/1/root/p50Ms | empty-deno/eof/1/root/p50Ms | (info)
stdio greeting p50, bundle with the package's code cache ÷ empty deno run (nobody), from the table | stdio-bundle (package cache)/greeting/1/nobody/p50Ms | empty-deno/eof/1/nobody/p50Ms | (info)
stdio greeting p50, bundle without a code cache ÷ empty deno run (nobody) | stdio-bundle/greeting/1/nobody/p50Ms | empty-deno/eof/1/nobody/p50Ms | (info)
stdio greeting p50, main.ts ÷ empty deno run (nobody) | stdio-ts/greeting/1/nobody/p50Ms | empty-deno/eof/1/nobody/p50Ms | (info)
`.trim().split("\n").map((line) => line.split(" | "));

function checks(run: Run): Check[] {
  const value = (path: string) => {
    const [target, mode, k, user, field] = path.split("/");
    const row = run.rows.find((r) =>
      r.target === target && r.mode === mode &&
      r.concurrency === Number(k) && r.user === user
    );
    if (!row) return NaN;
    if (field === "cpuPerSession") return row.cpuMs / row.completed;
    return row[field as "p50Ms"];
  };
  const out = CHECKS.map(([what = "", a = "", b = "", limit = ""]) => {
    const v = value(a) / value(b);
    const bound = Number(limit.replace(/[^\d.]/g, ""));
    const met =
      ({ "≥": v >= bound, "≤": v <= bound, "<": v < bound })[limit[0]!];
    return {
      what,
      value: v,
      limit,
      ...(met === undefined ? {} : { met }),
    };
  });
  const p99 = (mode: string) =>
    run.rows.find((r) => r.target === "listen" && r.mode === mode)?.p99Ms ??
      NaN;
  const attacked = p99("full, +200 failing") /
    ((p99("full, alone") + p99("full, alone after")) / 2);
  out.push({
    what:
      "good session p99, with 200 failing ÷ alone (mean of before and after)",
    value: attacked,
    limit: "< 1.2",
    met: attacked < 1.2,
  });
  const paired = run.pairs.map((pair): Check => {
    const limit = PAIRED_LIMITS[pair.what] ?? "(info)";
    const bound = Number(limit.replace(/[^\d.]/g, ""));
    const met = limit.startsWith("≥")
      ? pair.ratio >= bound
      : pair.ratio <= bound;
    return { what: pair.what, value: pair.ratio, limit, met };
  });
  out.unshift(...paired);
  if (run.idle) {
    const { afterKb, beforeKb, connections } = run.idle;
    const v = (afterKb - beforeKb) / connections;
    out.push({
      what: "KB per idle connection, listen",
      value: v,
      limit: "≤ 20",
      met: v <= 20,
    });
  }
  return out.filter((c) => !isNaN(c.value));
}

/** Sessions/s against the C baseline (same mode and concurrency) and the spawn floor (full). */
function ratios(run: Run, r: Row): { vsC?: number; vsFloor?: number } {
  const same = (target: string, mode: string) =>
    run.rows.find((o) =>
      o.target === target && o.mode === mode &&
      o.concurrency === r.concurrency && o.user === "root"
    )?.perSecond;
  const c = same("c-baseline", r.mode);
  const floorOf = r.target.endsWith("-sh") ? "spawn-floor-sh" : "spawn-floor";
  const floor = r.mode === "full" ? same(floorOf, "full") : undefined;
  return {
    ...(c ? { vsC: r.perSecond / c } : {}),
    ...(floor ? { vsFloor: r.perSecond / floor } : {}),
  };
}

const HEADER =
  "| target | mode | conc | user | sessions | errors | sessions/s " +
  "| p50 ms | p99 ms | CPU ms/session | peak RSS | peak total | vs C | vs floor |\n" +
  `|${"---|".repeat(4)}${"--:|".repeat(10)}`;

function report(run: Run, head: string[], found: Check[]): string {
  const n = (v?: number, d = 1) =>
    v === undefined || isNaN(v) ? "–" : v.toFixed(d);
  const mb = (kb: number) => kb > 0 ? `${(kb / 1024).toFixed(1)} MB` : "–";
  const x = (v?: number) => v === undefined ? "–" : `${v.toFixed(2)}×`;
  const lines = [...head, "", HEADER];
  for (const r of run.rows) {
    const { vsC, vsFloor } = ratios(run, r);
    const cells = [r.target, r.mode, r.concurrency, r.user, r.completed];
    cells.push(r.errors, n(r.perSecond), n(r.p50Ms), n(r.p99Ms));
    cells.push(n(r.cpuMs / r.completed, 2), mb(r.peakKb), mb(r.totalKb));
    lines.push(`| ${[...cells, x(vsC), x(vsFloor)].join(" | ")} |`);
  }
  lines.push(
    "",
    "| issue 6 target | this run | limit | |",
    "|---|--:|---|---|",
  );
  for (const c of found) {
    const verdict = c.met === undefined ? "" : c.met ? "met" : "**not met**";
    lines.push(`| ${c.what} | ${n(c.value, 2)} | ${c.limit} | ${verdict} |`);
  }
  if (run.pairs.length > 0) {
    lines.push(
      "",
      "| interleaved (bench/paired.ts) | A | B | A ÷ B | sessions | errors |",
      "|---|--:|--:|--:|--:|--:|",
    );
    for (const p of run.pairs) {
      const cells = [p.what, n(p.a, 2), n(p.b, 2), n(p.ratio, 2)];
      lines.push(`| ${[...cells, p.sessions, p.errors].join(" | ")} |`);
    }
  }
  const idle = run.idle;
  if (idle) {
    const [before, after] = [mb(idle.beforeKb), mb(idle.afterKb)];
    lines.push(
      "",
      `listen RSS ${before}, ${after} with ${idle.connections} idle connections`,
    );
  }
  return [...lines, ...run.notes.map((text) => `note: ${text}`)].join("\n");
}

async function main(): Promise<number> {
  const options = {
    json: { type: "boolean" },
    quick: { type: "boolean" },
    sessions: { type: "string" },
    only: { type: "string" },
    help: { type: "boolean" },
  } as const;
  const usage = `usage: deno task bench [--quick] [--json] [--sessions N] ` +
    `[--only TARGET,...]\ntargets: ${TARGETS.join(", ")}`;
  let flags;
  try {
    flags = parseArgs({ args: Deno.args, options }).values;
  } catch (error) {
    return (log(`${(error as Error).message}\n${usage}`), 100);
  }
  if (flags.help) return (console.log(usage), 0);
  const only = flags.only?.split(",") ?? TARGETS;
  const unknown = only.filter((t) => !TARGETS.includes(t));
  const sessions = Number(flags.sessions ?? (flags.quick ? 200 : 1000));
  if (unknown.length || !(sessions >= 1)) return (log(usage), 100);
  const quick = flags.quick ?? false;
  const began = performance.now();
  const loadBefore = Deno.loadavg();
  const notes: string[] = [];
  const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const kit = await targets.prepareKit(repo, (t) => (notes.push(t), log(t)));
  const run: Run = {
    ...{ kit, quick, notes, rows: [], live: new Set(), pairs: [] },
    sessions,
    deadline: began + (quick ? 110_000 : 540_000),
  };
  const cleanup = async () => {
    await Promise.all([...run.live].map((t) => t.stop().catch(() => {})));
    await Deno.remove(kit.work, { recursive: true }).catch(() => {});
  };
  let hashing: Awaited<ReturnType<typeof hashingBench>> = [];
  const interrupted = () => cleanup().then(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  try {
    for (const name of TARGETS.filter((t) => only.includes(t))) {
      if (name !== "hashing") await measureTarget(run, name);
    }
    if (only.includes("hashing")) hashing = await hashingBench(quick, log);
  } finally {
    await cleanup();
  }
  const host = {
    cpus: navigator.hardwareConcurrency,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    backends: kit.backendKind,
    loadBefore,
    loadAfter: Deno.loadavg(),
    seconds: Math.round((performance.now() - began) / 1000),
  };
  const command = ["deno task bench", ...Deno.args].join(" ");
  const found = checks(run);
  if (flags.json) {
    const rows = run.rows.map((r) => ({ ...r, ...ratios(run, r) }));
    const date = new Date().toISOString();
    const out = {
      command,
      date,
      host,
      rows,
      checks: found,
      idle: run.idle,
      pairs: run.pairs,
      notes,
      hashing,
    };
    console.log(JSON.stringify(out, null, 2));
  } else {
    const head = [`command: ${command}`, `host: ${JSON.stringify(host)}`];
    console.log(report(run, head, found) + hashingReport(hashing));
  }
  return 0;
}

if (import.meta.main) {
  const failed = (error: Error) => (log(`failed: ${error.message}`), 111);
  Deno.exit(await main().catch(failed));
}
