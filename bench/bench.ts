/**
 * `deno task bench`: qmail-poppass against a C baseline and the spawn
 * floor, on loopback, in one run, with the same trivial back ends. Prints
 * one Markdown table and the targets (BENCHMARKS.md), or JSON with `--json`.
 *
 * Flags: `--quick`, `--sessions N` (per row), `--only T[,T]`, `--json`.
 *
 * The parts: `run.ts` (the shapes), `measure.ts` (per target),
 * `rows.ts` (one row), `report.ts` (targets and table), `targets.ts` (the
 * servers and the spawn floor), `loadgen.ts` (the clients), `paired.ts`
 * (interleaved ratios).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { measureTarget } from "./measure.ts";
import { checks, ratios, report } from "./report.ts";
import { log, type Run } from "./run.ts";
import * as targets from "./targets.ts";
import { hashingBench, hashingReport } from "./hashing.ts";

/** The targets, in the order they run. */
export const TARGETS = [
  ...["c-baseline", "spawn-floor", "spawn-floor-fd3exec", "spawn-floor-sh"],
  ...["listen", "listen-fd3exec", "listen-sh"],
  ...["stdio-ts", "stdio-bundle", "empty-deno", "debian-poppassd", "paired"],
  "hashing", // bench/hashing.ts: its own servers, its own section
];

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
