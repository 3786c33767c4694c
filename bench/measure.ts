/**
 * Measuring one target: what to start for it (`instancesOf`), its rows in
 * plan order (`measureTarget`), and the interleaved pairs of
 * `bench/paired.ts` with their limits.
 *
 * @module
 */

import { measurePair, type Pair } from "./paired.ts";
import type { Kit } from "./targets.ts";
import {
  CACHED_BUNDLE,
  type Instance,
  log,
  type Plan,
  type Run,
  SERVER,
  STDIO,
} from "./run.ts";
import { attack, floorRow, idleMemory, note, overTime, row } from "./rows.ts";
import * as targets from "./targets.ts";

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

export async function measureTarget(run: Run, name: string): Promise<void> {
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

/** The target ratios, measured interleaved (see bench/paired.ts). */
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
export const PAIRED_LIMITS: Record<string, string> = {
  [PAIRED.listenVsC]: "≥ 1.0",
  [PAIRED.stdioRoot]: "≤ 1.2",
  [PAIRED.stdioNobody]: "≤ 1.2",
};
