/**
 * The load generator of `deno task bench`: runs poppassd dialogues against
 * a TCP port on loopback, N sessions with K at once, and reports sessions/s
 * and latency percentiles from the sorted latencies of the sessions that
 * completed.
 *
 * Modes: `full` (greeting, user, pass, newpass, quit), `greeting` (connect,
 * read the greeting, close), `failing` (user, a password the trivial back
 * end rejects, the `500` that follows the failure delay) and `eof`
 * (connect and wait for the server to close: the yardstick for a process
 * that only starts and exits).
 *
 * @module
 */

/** What one session does. */
export type Mode = "full" | "greeting" | "failing" | "eof";

/** The password that makes the trivial back end exit 1 (see bench/c/trivial_backend.c). */
const WRONG_PASSWORD = "wrong";

/** Settings for `runLoad`. */
export interface LoadOptions {
  readonly port: number;
  readonly mode: Mode;
  /** Sessions to run; `Infinity` runs until `stop` aborts. */
  readonly sessions: number;
  readonly concurrency: number;
  /** Stop starting sessions after this long (the row's time cap). */
  readonly maxMs: number;
  /** Deadline for one session; it counts as an error after that. */
  readonly sessionTimeoutMs?: number;
  /** Spread the workers' first starts over this long (steady load instead of waves). */
  readonly rampMs?: number;
  /** Abort: no new sessions, open connections are closed, their ends not counted. */
  readonly stop?: AbortSignal;
}

/** What a run measured. */
export interface LoadResult {
  /** `Mode`, or a label such as "full, alone". */
  readonly mode: string;
  /** Sessions at once (K). */
  readonly concurrency: number;
  /** Sessions that ended as expected. */
  readonly completed: number;
  /** Sessions that did not (wrong reply, early close, refused, deadline). */
  readonly errors: number;
  /** Up to three distinct error messages. */
  readonly errorSamples: readonly string[];
  /** From the first start to the last end. */
  readonly wallMs: number;
  /** Completed sessions per second of `wallMs`. */
  readonly perSecond: number;
  /** Latency percentiles and mean of the completed sessions, connect to last line. */
  readonly p50Ms: number;
  /** As `p50Ms`, the 99th percentile. */
  readonly p99Ms: number;
  /** As `p50Ms`, the mean. */
  readonly meanMs: number;
}

/** The value at fraction `p` of ascending `sorted` (nearest rank); NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/**
 * Run `one` `sessions` times with `concurrency` workers and summarise the
 * latencies of the runs that resolved; a run that throws is an error.
 * Shared by the socket load and the spawn floor.
 */
export async function runPool(
  options: Omit<LoadOptions, "port" | "mode"> & { readonly mode: string },
  one: () => Promise<void>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  const samples = new Set<string>();
  let started = 0;
  let errors = 0;
  let gone = false; // the server refused a connection: it has died
  const begin = performance.now();
  const open = () =>
    started < options.sessions && !options.stop?.aborted && !gone &&
    performance.now() - begin < options.maxMs;
  const worker = async (index: number) => {
    const ramp = options.rampMs ?? 0;
    if (ramp > 0) await sleep((ramp * index) / options.concurrency);
    while (open()) {
      started++;
      const t0 = performance.now();
      try {
        await one();
        if (!options.stop?.aborted) latencies.push(performance.now() - t0);
      } catch (error) {
        if (options.stop?.aborted) continue;
        errors++;
        gone ||= error instanceof Deno.errors.ConnectionRefused;
        if (samples.size < 3) samples.add(messageOf(error));
      }
    }
  };
  const workers = Array.from({ length: options.concurrency }, (_, i) => i);
  await Promise.all(workers.map(worker));
  const wallMs = performance.now() - begin;
  latencies.sort((a, b) => a - b);
  const sum = latencies.reduce((a, b) => a + b, 0);
  return {
    mode: options.mode,
    concurrency: options.concurrency,
    completed: latencies.length,
    errors,
    errorSamples: [...samples],
    wallMs,
    perSecond: latencies.length / (wallMs / 1000),
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    meanMs: latencies.length ? sum / latencies.length : NaN,
  };
}

/** Run poppassd sessions against 127.0.0.1:`port`. */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const timeout = options.sessionTimeoutMs ?? 30_000;
  return runPool(
    options,
    () => session(options.port, options.mode, timeout, options.stop),
  );
}

const FULL: readonly (readonly [string, string])[] = [
  ["user bench", "200 Your password please."],
  ["pass old-secret", "200 Your new password please."],
  ["newpass new-secret", "200 Password changed, thank-you."],
  ["quit", "200 Bye."],
];

const FAILING: readonly (readonly [string, string])[] = [
  ["user bench", "200 Your password please."],
  [
    `pass ${WRONG_PASSWORD}`,
    "500 Old password is incorrect or user not found.",
  ],
];

/** One dialogue; throws on any unexpected reply, early close or deadline. */
async function session(
  port: number,
  mode: Mode,
  timeoutMs: number,
  stop?: AbortSignal,
): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines = new LineSource(conn);
  const close = () => lines.close();
  const timer = setTimeout(close, timeoutMs);
  stop?.addEventListener("abort", close);
  try {
    if (mode === "eof") {
      const line = await lines.next();
      if (line !== null) throw new Error(`expected EOF, got ${line}`);
      return;
    }
    const greeting = await lines.next();
    if (greeting === null || !greeting.startsWith("200 ")) {
      throw new Error(`bad greeting: ${greeting}`);
    }
    if (mode === "greeting") return;
    for (const [send, want] of mode === "full" ? FULL : FAILING) {
      await conn.write(new TextEncoder().encode(`${send}\r\n`));
      const got = await lines.next();
      if (got !== want) throw new Error(`after "${send}": got ${got}`);
    }
  } finally {
    clearTimeout(timer);
    stop?.removeEventListener("abort", close);
    close();
  }
}

/** CRLF lines from a connection; `null` at EOF (or after `close`). */
class LineSource {
  #pending = "";
  #closed = false;
  readonly #buffer = new Uint8Array(1024);
  readonly #decoder = new TextDecoder("latin1");

  constructor(private readonly conn: Deno.Conn) {}

  async next(): Promise<string | null> {
    for (;;) {
      const lf = this.#pending.indexOf("\n");
      if (lf >= 0) {
        const line = this.#pending.slice(0, lf).replace(/\r$/, "");
        this.#pending = this.#pending.slice(lf + 1);
        return line;
      }
      if (this.#closed) return null;
      let n: number | null;
      try {
        n = await this.conn.read(this.#buffer);
      } catch (error) {
        if (this.#closed) throw new Error("session deadline passed");
        if (error instanceof Deno.errors.ConnectionReset) return null;
        throw error;
      }
      if (n === null) return null;
      this.#pending += this.#decoder.decode(this.#buffer.subarray(0, n));
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed by the other side's reset
    }
  }
}

/**
 * Open `count` connections, read each greeting, and keep them idle; for
 * the memory-per-connection measurement. Close them with `closeAll`.
 */
export async function openIdle(
  port: number,
  count: number,
): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  const buffer = new Uint8Array(256);
  try {
    for (let i = 0; i < count; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(conn);
      const n = await conn.read(buffer);
      if (n === null || buffer[0] !== 0x32) {
        throw new Error(`connection ${i + 1} got no greeting`);
      }
    }
  } catch (error) {
    closeAll(conns);
    throw error;
  }
  return conns;
}

/** Close connections, ignoring those already gone. */
export function closeAll(conns: readonly Deno.Conn[]): void {
  for (const conn of conns) {
    try {
      conn.close();
    } catch {
      // gone already
    }
  }
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** VmRSS and VmHWM of a process in KB; undefined once it is gone. */
export function memoryOf(
  pid: number,
): { rss: number; hwm: number } | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const kb = (name: string) =>
      Number(status.match(new RegExp(`^${name}:\\s+(\\d+)`, "m"))?.[1] ?? 0);
    return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

/** CPU time of a process plus its reaped children in ms (utime+stime+cutime+cstime at USER_HZ 100). */
export function cpuOf(pid: number | "self"): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return [11, 12, 13, 14].reduce((ms, i) => ms + Number(fields[i]) * 10, 0);
  } catch {
    return NaN;
  }
}

/**
 * Peak memory of a process and all its descendants, read from /proc every
 * `everyMs` (this kernel has no /proc/PID/task/TID/children, so parents
 * come from /proc/PID/stat). `peakKb` is the largest single process: VmHWM
 * for processes born during the sampling (per-connection processes, back
 * ends), VmRSS for those already running (a listen server's all-time peak
 * would include earlier rows). `totalKb` is the largest sum of VmRSS over
 * the tree at one instant. `cpuMs` is the CPU the tree used meanwhile:
 * the root's with its reaped children, plus that of descendants still
 * running at the end (a listen server's fd3spawn and what it reaped).
 */
export class TreeSampler {
  readonly #parents = new Map<number, number>();
  readonly #before = new Set<number>();
  readonly #timer: ReturnType<typeof setInterval>;
  #peakKb = 0;
  #totalKb = 0;
  readonly #cpu0: number;
  /** CPU of the descendants running at the start, by pid. */
  readonly #descendantCpu0 = new Map<number, number>();

  constructor(readonly root: number, everyMs = 25) {
    this.#cpu0 = cpuOf(root);
    this.#scan();
    for (const pid of this.#parents.keys()) this.#before.add(pid);
    for (const pid of this.#descendants()) {
      this.#descendantCpu0.set(pid, cpuOf(pid));
    }
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), everyMs);
  }

  /** Stop sampling; the peaks seen so far. */
  stop(): { peakKb: number; totalKb: number; cpuMs: number } {
    clearInterval(this.#timer);
    this.#sample();
    let cpuMs = cpuOf(this.root) - this.#cpu0;
    for (const pid of this.#descendants()) {
      const used = cpuOf(pid) - (this.#descendantCpu0.get(pid) ?? 0);
      if (Number.isFinite(used)) cpuMs += used;
    }
    return { peakKb: this.#peakKb, totalKb: this.#totalKb, cpuMs };
  }

  /** The root's descendants as last scanned, children before grandchildren. */
  #descendants(): number[] {
    const children = new Map<number, number[]>();
    for (const [pid, ppid] of this.#parents) {
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    }
    const out: number[] = [];
    for (const queue = [this.root]; queue.length > 0;) {
      for (const child of children.get(queue.shift()!) ?? []) {
        out.push(child);
        queue.push(child);
      }
    }
    return out;
  }

  #scan(): void {
    const alive = new Set<number>();
    for (const entry of Deno.readDirSync("/proc")) {
      const pid = Number(entry.name);
      if (!Number.isInteger(pid)) continue;
      alive.add(pid);
      if (!this.#parents.has(pid)) this.#parents.set(pid, parentOf(pid));
    }
    for (const pid of this.#parents.keys()) {
      if (!alive.has(pid)) this.#parents.delete(pid);
    }
  }

  #sample(): void {
    this.#scan();
    const children = new Map<number, number[]>();
    for (const [pid, ppid] of this.#parents) {
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    }
    let total = 0;
    for (const stack = [this.root]; stack.length > 0;) {
      const pid = stack.pop()!;
      const memory = memoryOf(pid);
      if (memory) {
        total += memory.rss;
        const kb = this.#before.has(pid) ? memory.rss : memory.hwm;
        this.#peakKb = Math.max(this.#peakKb, kb);
      }
      stack.push(...(children.get(pid) ?? []));
    }
    this.#totalKb = Math.max(this.#totalKb, total);
  }
}

function parentOf(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return -1;
  }
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).slice(0, 160);
}
