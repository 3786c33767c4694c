/**
 * What the leak checks read from /proc: process start times, RSS, children,
 * open descriptors, and a sampler of a server's process tree during a
 * session.
 *
 * @module
 */

import { descendants, type ProcInfo, procInfo } from "../../support/procs.ts";
import { MAIN } from "../../support/sandbox.ts";

/** Start time in clock ticks (field 22 of /proc/PID/stat): with the pid it names one process. */
function startOf(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** VmRSS of `pid` in KiB, if it still runs. */
function rssOf(pid: number): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    return kib === undefined ? undefined : Number(kib);
  } catch {
    return undefined;
  }
}

/** Open descriptors of `pid`, as link targets. */
export function fds(pid: number): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
    try {
      out.push(
        `${entry.name}->${Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`)}`,
      );
    } catch {
      // Closed between the listing and the read.
    }
  }
  return out;
}

/** Every process seen below `root` while it runs, sampled every 15 ms. */
export class TreeSampler {
  readonly seen = new Map<string, ProcInfo>();
  /** Resident memory (KiB), first and highest, of each process serving sessions. */
  readonly rss = new Map<number, { first: number; peak: number }>();
  readonly #root: number;
  readonly #listener: number | undefined;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(root: number, listener?: number) {
    this.#root = root;
    this.#listener = listener;
    this.sample();
    this.#timer = setInterval(() => this.sample(), 15);
  }

  sample(): void {
    const servers = this.#listener === undefined ? [] : [this.#listener];
    for (const p of descendants(this.#root)) {
      const start = startOf(p.pid);
      if (start) this.seen.set(`${p.pid}@${start}`, p);
      if (p.cmdline.includes(MAIN)) servers.push(p.pid);
    }
    for (const pid of servers) {
      const kib = rssOf(pid);
      if (kib === undefined) continue;
      const had = this.rss.get(pid);
      this.rss.set(pid, {
        first: had?.first ?? kib,
        peak: Math.max(had?.peak ?? kib, kib),
      });
    }
  }

  /** The highest resident memory of a process serving sessions, in KiB. */
  peakKiB(): number {
    return Math.max(0, ...[...this.rss.values()].map((r) => r.peak));
  }

  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }

  /**
   * Processes seen that still exist: alive, or a zombie whose parent is one
   * of `ours` (a zombie left to PID 1 is init's to reap: this machine's
   * init does not, which is no leak of ours).
   */
  lingering(ours: ReadonlySet<number>): ProcInfo[] {
    const out: ProcInfo[] = [];
    for (const [id, seen] of this.seen) {
      const now = procInfo(seen.pid);
      if (!now || `${seen.pid}@${startOf(seen.pid)}` !== id) continue;
      if (now.state !== "Z" || ours.has(now.ppid)) out.push(now);
    }
    return out;
  }
}
