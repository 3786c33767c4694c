/**
 * What `/proc` says about the server process: open descriptors, children,
 * process groups, resident memory. Linux only, like the rest of the suite.
 *
 * @module
 */

/** One line of `/proc/PID/stat`, the fields the tests need. */
export interface ProcStat {
  readonly pid: number;
  readonly state: string;
  readonly ppid: number;
  readonly pgrp: number;
}

/** Parse `/proc/PID/stat`; the command name may contain spaces and parentheses. */
export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    pid,
    state: fields[0] ?? "?",
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
  };
}

/** Every process on the machine, as far as `/proc` lets us read. */
export function allProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const stat = readStat(Number(entry.name));
    if (stat) out.push(stat);
  }
  return out;
}

/** Processes whose parent is `pid` (zombies included: they are leaks too). */
export function childrenOf(pid: number): ProcStat[] {
  return allProcesses().filter((p) => p.ppid === pid);
}

/** Processes still in any of these process groups. */
export function inGroups(groups: ReadonlySet<number>): ProcStat[] {
  return allProcesses().filter((p) => groups.has(p.pgrp));
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== "Z";
}

/** Number of open descriptors of `pid`. */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident set size of `pid` in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}
