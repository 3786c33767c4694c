/**
 * The run's verdicts and the printed report: the targets (`CHECKS`) as
 * ratios of table cells, the vs-C and vs-floor columns, and the Markdown
 * table.
 *
 * @module
 */

import type { Check, Row, Run } from "./run.ts";
import { PAIRED_LIMITS } from "./measure.ts";

/**
 * The targets (BENCHMARKS.md), one a line: what | numerator | denominator | limit
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

export function checks(run: Run): Check[] {
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
  // Once a test asserted this (more than 5 full changes a second); it is a
  // throughput figure, so it is judged here, with the other numbers.
  for (const k of [1, 8]) {
    const perSecond = run.rows.find((r) =>
      r.target === "listen" && r.mode === "full" && r.concurrency === k &&
      r.user === "root"
    )?.perSecond ?? NaN;
    out.push({
      what: `listen full@${k}, full changes per second`,
      value: perSecond,
      limit: "> 5",
      met: perSecond > 5,
    });
  }
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
export function ratios(run: Run, r: Row): { vsC?: number; vsFloor?: number } {
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

export function report(run: Run, head: string[], found: Check[]): string {
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
    "| target | this run | limit | |",
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
