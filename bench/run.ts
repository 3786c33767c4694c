/**
 * The shapes a bench run passes around: a table `Row`, a target `Check`,
 * the `Plan` of modes and concurrencies a server runs, and the `Run`
 * itself (kit, rows, notes, deadline, live servers).
 *
 * @module
 */

import type { LoadResult, Mode } from "./loadgen.ts";
import type { PairResult } from "./paired.ts";
import type { Kit, Target } from "./targets.ts";

/** The stdio bundle as nobody with the package's read-only code cache. */
export const CACHED_BUNDLE = "stdio-bundle (package cache)";

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

/** One of the targets (BENCHMARKS.md) and how this run did. */
export interface Check {
  /** The ratio or quantity, in words. */
  readonly what: string;
  /** Its value in this run. */
  readonly value: number;
  /** The target's bound, or "(info)". */
  readonly limit: string;
  /** Absent for "(info)". */
  readonly met?: boolean;
}

export type Plan = readonly (readonly [Mode, readonly number[]])[];
export interface Instance {
  readonly start: () => Promise<Target>;
  readonly plan: Plan;
  readonly user?: "nobody";
  readonly then?: (run: Run, target: Target) => Promise<void>;
}
export interface Run {
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

export const SERVER: Plan = [
  ["full", [1, 8, 32]],
  ["greeting", [1, 8]],
  ["failing", [200]],
];
export const STDIO: Plan = [["full", [1, 8]], ["greeting", [1, 8]]];
export const log = (text: string) => console.error(`bench: ${text}`);
