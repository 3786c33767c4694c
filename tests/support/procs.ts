/**
 * Looking at processes through `/proc`, the one reader every test uses:
 * who is alive, in which process group, whose children, how many open
 * descriptors, how much resident memory.
 *
 * @module
 */

/** One process as `/proc/PID/stat` describes it. */
export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  /** R, S, D, Z (zombie), … */
  readonly state: string;
  readonly cmdline: string;
}

/** Read one process; undefined when it is gone. */
export function procInfo(pid: number): ProcInfo | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // "pid (comm) state ppid pgrp ..." - comm may hold spaces and parens.
    const after = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let cmdline = "";
    try {
      cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll(
        "\0",
        " ",
      ).trim();
    } catch {
      // Gone between the two reads.
    }
    return {
      pid,
      state: after[0]!,
      ppid: Number(after[1]),
      pgid: Number(after[2]),
      cmdline,
    };
  } catch {
    return undefined;
  }
}

/** Every process visible now. */
export function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const info = procInfo(Number(entry.name));
    if (info) out.push(info);
  }
  return out;
}

/** True while `pid` exists and is not a zombie. */
export function alive(pid: number): boolean {
  const info = procInfo(pid);
  return info !== undefined && info.state !== "Z";
}

/** Live (non-zombie) members of process group `pgid`. */
export function groupMembers(pgid: number): ProcInfo[] {
  return listProcesses().filter((p) => p.pgid === pgid && p.state !== "Z");
}

/** All descendants of `pid` (children, grandchildren, …). */
export function descendants(pid: number): ProcInfo[] {
  const all = listProcesses();
  const found: ProcInfo[] = [];
  const parents = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of all) {
      if (parents.has(p.ppid) && !parents.has(p.pid)) {
        parents.add(p.pid);
        found.push(p);
        grew = true;
      }
    }
  }
  return found;
}

/** Processes whose parent is `pid` (zombies included: they are leaks too). */
export function childrenOf(pid: number): ProcInfo[] {
  return listProcesses().filter((p) => p.ppid === pid);
}

/** Processes still in any of these process groups. */
export function inGroups(groups: ReadonlySet<number>): ProcInfo[] {
  return listProcesses().filter((p) => groups.has(p.pgid));
}

/** Number of open descriptors of `pid`. */
export function fdCount(pid: number): number {
  let n = 0;
  for (const _ of Deno.readDirSync(`/proc/${pid}/fd`)) n++;
  return n;
}

/** Resident set size of `pid` (this process by default) in KiB (VmRSS). */
export function rssKiB(pid: number | "self" = "self"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]);
}

/** SIGKILL each pid that is still alive (processes the test started). */
export function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      if (alive(pid)) Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}
