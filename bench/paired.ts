/**
 * Interleaved ratios for `deno task bench`. The table's rows are measured
 * one after another, minutes apart; on a shared or virtual machine the
 * speed of the whole machine drifts by 10-20% over minutes, which is as
 * large as the effects the target ratios judge. So each target ratio is
 * also measured with both servers running at once, in alternating short
 * blocks (A B B A A B …), and reported as the ratio of their totals
 * (sessions/s) or of the medians of their block medians (latency).
 *
 * @module
 */

import { type LoadResult, type Mode, runLoad } from "./loadgen.ts";
import type { Target } from "./targets.ts";

/** One side of a pair. */
export interface Side {
  readonly start: () => Promise<Target>;
  readonly mode: Mode;
}

/** What to compare and how. */
export interface Pair {
  readonly what: string;
  readonly a: Side;
  readonly b: Side;
  readonly concurrency: number;
  /** Sessions per block, per side. */
  readonly block: number;
  readonly rounds: number;
  readonly field: "perSecond" | "p50Ms";
}

/** The measured ratio A ÷ B, with the numbers behind it. */
export interface PairResult {
  readonly what: string;
  readonly ratio: number;
  readonly a: number;
  readonly b: number;
  readonly sessions: number;
  readonly errors: number;
}

const median = (values: number[]) => {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Measure one pair; both servers are stopped before it returns. */
export async function measurePair(
  pair: Pair,
  live: Set<{ stop(): Promise<void> }>,
): Promise<PairResult> {
  const started: Target[] = [];
  try {
    for (const side of [pair.a, pair.b]) {
      const target = await side.start();
      started.push(target);
      live.add(target);
    }
    const [ta, tb] = started as [Target, Target];
    const results: [LoadResult[], LoadResult[]] = [[], []];
    const once = (i: 0 | 1, sessions: number) =>
      runLoad({
        port: (i === 0 ? ta : tb).port,
        mode: (i === 0 ? pair.a : pair.b).mode,
        concurrency: pair.concurrency,
        sessions,
        maxMs: 30_000,
      });
    // Warm both (JIT, caches), then ABBA order so neither side always
    // goes first.
    for (let w = 0; w < 2; w++) {
      await once(0, pair.block);
      await once(1, pair.block);
    }
    for (let r = 0; r < pair.rounds; r++) {
      const order: (0 | 1)[] = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) results[i].push(await once(i, pair.block));
    }
    const value = (rows: LoadResult[]) =>
      pair.field === "perSecond"
        ? 1000 * rows.reduce((n, r) => n + r.completed, 0) /
          rows.reduce((n, r) => n + r.wallMs, 0)
        : median(rows.map((r) => r.p50Ms));
    const [a, b] = [value(results[0]), value(results[1])];
    const all = [...results[0], ...results[1]];
    return {
      what: pair.what,
      ratio: a / b,
      a,
      b,
      sessions: all.reduce((n, r) => n + r.completed, 0),
      errors: all.reduce((n, r) => n + r.errors, 0),
    };
  } finally {
    for (const target of started) {
      live.delete(target);
      await target.stop();
    }
  }
}
