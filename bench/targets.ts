/**
 * The servers `deno task bench` measures: how each is built, started on a
 * loopback port and stopped, and the spawn floor (the two back-end runs of
 * a session through `runProgram` of `lib/stores/programs/`, no protocol),
 * which runs in its own Deno process:
 * `deno run -A bench/targets.ts --floor '{json}'`.
 *
 * Every tcpserver here runs as `tcpserver -R -H -l localhost`: without
 * those flags it looks names up in DNS, which would leave the machine.
 *
 * @module
 */

import { openStarter, runProgram } from "../lib/stores/programs/programs.ts";
import type { Fd3spawnStarter } from "../lib/stores/programs/fd3spawn.ts";
import { changePayload, checkPayload } from "../lib/stores/programs/fd3.ts";
import { cpuOf, type LoadResult, runPool } from "./loadgen.ts";

/** Host name in every greeting. */
export const HOSTNAME = "bench.example";

/** Where the built pieces are; an absent one is not available here. */
export interface Kit {
  readonly repo: string;
  /** Temporary directory (mode 0755) holding the built pieces. */
  readonly work: string;
  readonly deno: string;
  /** Reads fd 3, exits 0 (1 for the password "wrong"). */
  readonly backend: string;
  readonly backendKind: "C" | "shell";
  /** An empty script: the cost of `deno run` itself. */
  readonly empty: string;
  readonly tcpserver?: string;
  readonly cBaseline?: string;
  /** lib/fd3exec.c built as the Debian package builds it (packaging/build-fd3exec.sh). */
  readonly fd3exec?: string;
  /** lib/fd3spawn.c built as the Debian package builds it (packaging/build-fd3spawn.sh). */
  readonly fd3spawn?: string;
  readonly bundle?: string;
  /** A DENO_DIR with the bundle's V8 code cache, filled as root, read-only for nobody (as the package does). */
  readonly bundleCache?: string;
  readonly debianPoppassd?: string;
  /** A DENO_DIR warmed for main.ts that nobody can read but not write. */
  readonly denoDir?: string;
  /** `setpriv` words that drop to the user nobody. */
  readonly asNobody?: readonly string[];
}

/** A started server. */
export interface Target {
  readonly name: string;
  readonly port: number;
  /** Root of the process tree sampled for memory. */
  readonly pid: number;
  /** Its last lines on stdout and stderr, for error messages. */
  tail(): string;
  /** False once the server process has exited. */
  running(): boolean;
  /** SIGTERM, then SIGKILL after 10 s; resolves when it has exited. */
  stop(): Promise<void>;
}

/** Build or find everything the targets need, in a fresh work directory readable by nobody. */
export async function prepareKit(
  repo: string,
  note: (text: string) => void,
): Promise<Kit> {
  const work = await Deno.makeTempDir({ prefix: "qmail-poppass-bench-" });
  await Deno.chmod(work, 0o755);
  kit_work.dir = work;
  const cc = which("cc");
  const backend = `${work}/trivial_backend${cc ? "" : ".sh"}`;
  const cBaseline = cc ? `${work}/poppassd_min` : undefined;
  const fd3exec = cc ? `${work}/fd3exec` : undefined;
  const fd3spawn = cc ? `${work}/fd3spawn` : undefined;
  if (cc) {
    await run(cc, ["-O2", "-o", backend, `${repo}/bench/c/trivial_backend.c`]);
    await run(cc, ["-O2", "-o", cBaseline!, `${repo}/bench/c/poppassd_min.c`]);
    const script = `${repo}/packaging/build-fd3exec.sh`;
    await run("sh", [script, fd3exec!]); // the build the package ships
    await run("sh", [`${repo}/packaging/build-fd3spawn.sh`, fd3spawn!]);
  } else {
    note("no cc: shell back ends and no C baseline");
    await Deno.writeTextFile(backend, SHELL_BACKEND, { mode: 0o755 });
  }
  let tcpserver = which("tcpserver");
  if (!tcpserver) tcpserver = await aptInstall("ucspi-tcp", "tcpserver", note);
  if (!tcpserver) note("no tcpserver: the stdio-mode targets are skipped");
  const bundle = `${work}/qmail-poppass.js`;
  // The same single file `deno task bundle` makes.
  const bundleArgs = ["run", "-A", "packaging/bundle.ts", bundle];
  const bundled = await run(Deno.execPath(), bundleArgs, repo).then(
    () => Deno.chmod(bundle, 0o644).then(() => true),
    (e) => (note(`no bundle: ${e.message}`), false),
  );
  const empty = `${work}/empty.js`;
  await Deno.writeTextFile(empty, "", { mode: 0o644 });
  return {
    repo,
    work,
    deno: Deno.execPath(),
    backend,
    backendKind: cc ? "C" : "shell",
    empty,
    ...(tcpserver ? { tcpserver } : {}),
    ...(cBaseline ? { cBaseline } : {}),
    ...(fd3exec ? { fd3exec } : {}),
    ...(fd3spawn ? { fd3spawn } : {}),
    ...(bundled ? { bundle } : {}),
    ...(bundled ? await bundleCache(work, bundle, backend, note) : {}),
    ...await debianPoppassd(work, note),
    ...await sharedDenoDir(repo, work, note),
    ...asNobody(note),
  };
}

/**
 * The deployment of `deno run main.ts` for an unprivileged user: a DENO_DIR
 * owned by root, warmed by `deno cache`, readable by all. Our npm packages
 * are copied in first, so nothing is downloaded when we have them.
 */
async function sharedDenoDir(
  repo: string,
  work: string,
  note: (text: string) => void,
): Promise<{ denoDir?: string }> {
  const env = (name: string) => Deno.env.get(name);
  const ours = env("DENO_DIR") ??
    `${env("XDG_CACHE_HOME") ?? `${env("HOME")}/.cache`}/deno`;
  const denoDir = `${work}/deno-dir`;
  try {
    await Deno.mkdir(denoDir);
    await run("cp", ["-a", `${ours}/npm`, `${denoDir}/npm`]).catch(() => {});
    const cache = ["cache", "--quiet", "main.ts"];
    await run(Deno.execPath(), cache, repo, 120_000, { DENO_DIR: denoDir });
    await run("chmod", ["-R", "a+rX", denoDir]);
    return { denoDir };
  } catch (error) {
    note(`no DENO_DIR for nobody: ${(error as Error).message}`);
    return {};
  }
}

/**
 * The bundle's code cache as the Debian package makes it: three empty
 * stdio sessions as root fill a DENO_DIR (V8 uses its cache from the
 * second start on), which is then read-only for everyone else.
 */
async function bundleCache(
  work: string,
  bundle: string,
  backend: string,
  note: (text: string) => void,
): Promise<{ bundleCache?: string }> {
  const dir = `${work}/bundle-cache`;
  try {
    await Deno.mkdir(dir);
    const env = { DENO_DIR: dir, NO_COLOR: "1", PASSWORD_COMMAND: backend };
    const args = ["run", "--allow-all", bundle, HOSTNAME, backend];
    for (let i = 0; i < 3; i++) {
      await run(Deno.execPath(), args, work, 30_000, env);
    }
    await run("chmod", ["-R", "a+rX,go-w", dir]);
    return { bundleCache: dir };
  } catch (error) {
    note(`no code cache for the bundle: ${(error as Error).message}`);
    return {};
  }
}

/** The back end without cc: the same rule as bench/c/trivial_backend.c. */
const SHELL_BACKEND = `#!/bin/sh
old=$(tr '\\0' '\\n' <&3 | sed -n 2p)
[ "$old" = wrong ] && exit 1
exit 0
`;

/**
 * Debian's poppassd: the installed one, else the package downloaded and
 * unpacked into the work directory (installing it would also start inetd
 * on port 106 on every interface).
 */
async function debianPoppassd(
  work: string,
  note: (text: string) => void,
): Promise<{ debianPoppassd?: string }> {
  const installed = which("poppassd") ?? "/usr/sbin/poppassd";
  if (await Deno.stat(installed).then(() => true, () => false)) {
    return { debianPoppassd: installed };
  }
  const dir = `${work}/debian`;
  try {
    await Deno.mkdir(dir);
    await run("apt-get", ["download", "-q", "poppassd"], dir);
    const deb = [...Deno.readDirSync(dir)].find((e) => e.name.endsWith(".deb"));
    if (!deb) throw new Error("apt-get download left no .deb");
    await run("dpkg-deb", ["-x", `${dir}/${deb.name}`, `${dir}/root`]);
    note(
      "Debian poppassd: downloaded with apt-get and unpacked, not installed",
    );
    return { debianPoppassd: `${dir}/root/usr/sbin/poppassd` };
  } catch (error) {
    note(`no Debian poppassd: ${(error as Error).message}`);
    return {};
  }
}

function asNobody(note: (text: string) => void): { asNobody?: string[] } {
  const setpriv = which("setpriv");
  const entry = Deno.readTextFileSync("/etc/passwd").split("\n")
    .find((line) => line.startsWith("nobody:"));
  const [, , uid, gid] = entry?.split(":") ?? [];
  if (!setpriv || !uid || !gid || Deno.uid() !== 0) {
    note(
      "the nobody rows are skipped: they need root, setpriv and a user nobody",
    );
    return {};
  }
  return {
    asNobody: [setpriv, `--reuid=${uid}`, `--regid=${gid}`, "--clear-groups"],
  };
}

async function aptInstall(
  pkg: string,
  command: string,
  note: (text: string) => void,
): Promise<string | undefined> {
  if (!which("apt-get") || Deno.uid() !== 0) return undefined;
  note(`installing ${pkg} with apt-get`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    run("apt-get", ["install", "-y", "-q", pkg], undefined, 300_000, env);
  await install().catch(async () => {
    await run("apt-get", ["update", "-q"], undefined, 300_000, env)
      .catch(() => {});
    await install().catch((e) => note(`apt-get install failed: ${e.message}`));
  });
  return which(command);
}

/** Run a command to its end; rejects with its last stderr lines on a non-zero exit. */
async function run(
  program: string,
  args: string[],
  cwd?: string,
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<void> {
  const out = await new Deno.Command(program, {
    args,
    env,
    stdin: "null",
    signal: AbortSignal.timeout(timeoutMs),
    ...(cwd ? { cwd } : {}),
  }).output();
  if (out.success) return;
  const text = new TextDecoder().decode(out.stderr).trim().split("\n");
  throw new Error(`${program} ${args[0]}: exit ${out.code}: ${text.at(-1)}`);
}

/** The executable `name` on PATH, or undefined. */
export function which(name: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111)) return `${dir}/${name}`;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** How a server starts its back ends: fd3spawn, fd3exec or the /bin/sh shim. */
export type Starter = "spawner" | "fd3exec" | "sh";

/**
 * The options for `starter`, as far as it was built: `--fd3-spawner`
 * (listen mode only), else `--fd3-helper`, else none (the shell shim).
 */
export function starterArgs(kit: Kit, starter: Starter): string[] {
  if (starter === "spawner" && kit.fd3spawn) {
    return ["--fd3-spawner", kit.fd3spawn];
  }
  return kit.fd3exec && starter !== "sh" ? ["--fd3-helper", kit.fd3exec] : [];
}

/**
 * Our server in listen mode on 127.0.0.1, port chosen by the OS, caps
 * lifted; back ends started by fd3spawn (as the package does) unless
 * another `starter` is asked for.
 */
export function startListen(
  kit: Kit,
  name = "listen",
  starter: Starter = "spawner",
): Promise<Target> {
  const args = ["run", "--allow-all", `${kit.repo}/main.ts`];
  args.push(...starterArgs(kit, starter));
  args.push("--listen", "127.0.0.1:0", "--max-sessions", "5000");
  args.push("--max-per-ip", "0", HOSTNAME, kit.backend);
  return startServer(name, kit.deno, args, kit.repo, serverEnv(kit), {
    from: "stderr",
    pattern: /listening on 127\.0\.0\.1:(\d+)/,
  });
}

/**
 * `program…` under tcpserver, one process per connection; with `nobody`
 * the whole tcpserver runs as nobody with `HOME=/nonexistent`.
 */
export function startTcpserver(
  kit: Kit,
  name: string,
  program: readonly string[],
  options: {
    readonly cwd?: string;
    readonly nobody?: boolean;
    readonly env?: Record<string, string>;
  } = {},
): Promise<Target> {
  if (!kit.tcpserver) throw new Error("tcpserver is not installed");
  const drop = options.nobody ? kit.asNobody : [];
  if (!drop) throw new Error("cannot drop to nobody");
  // -1 prints the chosen port; -c and -b leave room for 200 sessions at once.
  const words = [...drop, kit.tcpserver, "-R", "-H", "-l", "localhost", "-1"];
  words.push("-c", "500", "-b", "256", "127.0.0.1", "0", ...program);
  const home = options.nobody ? { HOME: "/nonexistent" } : {};
  const env = serverEnv(kit, { ...home, ...options.env });
  return startServer(
    name,
    words[0]!,
    words.slice(1),
    options.cwd ?? kit.work,
    env,
    {
      from: "stdout",
      pattern: /^(\d+)$/,
    },
  );
}

/** The stdio-mode command line, from `main.ts` or from the bundle. */
export function stdioCommand(
  kit: Kit,
  bundled: boolean,
  flags: readonly string[] = [],
): string[] {
  const entry = bundled ? kit.bundle! : `${kit.repo}/main.ts`;
  const run = [kit.deno, "run", "--allow-all", ...flags];
  return [...run, entry, ...starterArgs(kit, "fd3exec"), HOSTNAME, kit.backend];
}

function serverEnv(kit: Kit, extra: Record<string, string> = {}) {
  return { NO_COLOR: "1", PASSWORD_COMMAND: kit.backend, ...extra };
}

/** Spawn a server and resolve once a line on `ready.from` gives its port. */
async function startServer(
  name: string,
  program: string,
  args: readonly string[],
  cwd: string,
  env: Record<string, string>,
  ready: { readonly from: "stdout" | "stderr"; readonly pattern: RegExp },
): Promise<Target> {
  // The log (fd 2) goes to a file, as with multilog: read back through a
  // pipe, every line would also wake and tax the load generator, and
  // more so for the servers that log more lines per session.
  const logFile = `${kit_work.dir}/${name.replace(/\W+/g, "-")}-${++kit_work
    .count}.log`;
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'f=$1; shift; exec "$@" 2>>"$f"',
      "sh",
      logFile,
      program,
      ...args,
    ],
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let found: (port: number) => void = () => {};
  const port = new Promise<number>((resolve) => (found = resolve));
  let exited = false;
  child.status.then(() => (exited = true));
  const stdout = new Output(child.stdout);
  const log = new LogFile(logFile);
  const source = ready.from === "stdout" ? stdout : log;
  void source.waitFor(ready.pattern, () => exited).then((match) => {
    if (match) found(Number(match[1]));
  });
  const tail = (separator: string) =>
    [stdout.tail(), log.tail()].join(separator);
  const stop = async () => {
    const kill = (signal: Deno.Signal) => {
      try {
        Deno.kill(child.pid, signal);
      } catch {
        // already gone
      }
    };
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 10_000);
    await child.status;
    clearTimeout(timer);
  };
  const failed = (why: string) => new Error(`${name}: ${why}: ${tail(" | ")}`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const first = await Promise.race([
    port,
    child.status.then((s) => failed(`exited ${s.code}`)),
    new Promise<Error>((r) =>
      timer = setTimeout(() => r(failed("no port")), 30_000)
    ),
  ]);
  clearTimeout(timer);
  if (first instanceof Error) {
    await stop();
    throw first;
  }
  return {
    name,
    port: first,
    pid: child.pid,
    tail: () => tail("\n"),
    running: () => !exited,
    stop,
  };
}

/** Where the servers' log files go: the kit's work folder (set by `prepareKit`). */
const kit_work = { dir: "/tmp", count: 0 };

/** A server's log file, read back only to find its startup line and for error messages. */
class LogFile {
  constructor(private readonly path: string) {}

  /** The first line matching `pattern`, polled every 20 ms; null once `gone()`. */
  async waitFor(
    pattern: RegExp,
    gone: () => boolean,
  ): Promise<RegExpMatchArray | null> {
    for (;;) {
      const text = await Deno.readTextFile(this.path).catch(() => "");
      for (const line of text.split("\n")) {
        const match = line.match(pattern);
        if (match) return match;
      }
      if (gone()) return null;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The last 4 KiB, as text. */
  tail(): string {
    try {
      const file = Deno.openSync(this.path);
      try {
        const size = file.statSync().size;
        const keep = Math.min(size, 4096);
        file.seekSync(size - keep, Deno.SeekMode.Start);
        const buffer = new Uint8Array(keep);
        let got = 0;
        while (got < keep) {
          const n = file.readSync(buffer.subarray(got));
          if (n === null) break;
          got += n;
        }
        return new TextDecoder().decode(buffer.subarray(0, got)).trim();
      } finally {
        file.close();
      }
    } catch {
      return "";
    }
  }
}

/**
 * A server's stdout, drained without decoding once the line a
 * caller waits for has been seen: the load generator shares the machine
 * with the server, and decoding every log line would tax the servers that
 * log more. The last few KiB are kept raw for error messages.
 */
class Output {
  #kept = new Uint8Array(0);
  #waiters: {
    pattern: RegExp;
    resolve: (m: RegExpMatchArray | null) => void;
  }[] = [];
  #pending = "";
  readonly #done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#done = this.#drain(stream);
    void this.#done.then(() =>
      this.#waiters.splice(0).forEach((w) => w.resolve(null))
    );
  }

  /** The first line matching `pattern`, or null at end of output. */
  waitFor(
    pattern: RegExp,
    _gone?: () => boolean,
  ): Promise<RegExpMatchArray | null> {
    return new Promise((resolve) => this.#waiters.push({ pattern, resolve }));
  }

  /** The last lines, as text. */
  tail(): string {
    return new TextDecoder().decode(this.#kept).trim();
  }

  /** Keep the last 4 KiB of output. */
  #keep(chunk: Uint8Array): void {
    const keep = 4096;
    if (chunk.length >= keep) {
      this.#kept = chunk.slice(chunk.length - keep);
      return;
    }
    const total = Math.min(keep, this.#kept.length + chunk.length);
    const next = new Uint8Array(total);
    const old = total - chunk.length;
    next.set(this.#kept.subarray(this.#kept.length - old), 0);
    next.set(chunk, old);
    this.#kept = next;
  }

  async #drain(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        this.#keep(chunk);
        if (this.#waiters.length === 0) continue;
        const lines = (this.#pending + decoder.decode(chunk, { stream: true }))
          .split("\n");
        this.#pending = lines.pop()!;
        for (const line of lines) {
          this.#waiters = this.#waiters.filter((w) => {
            const match = line.match(w.pattern);
            if (match) w.resolve(match);
            return !match;
          });
        }
      }
    } catch {
      // the pipe broke as the server died; its tail says why
    }
  }
}

/** Settings of a spawn-floor run. */
export interface FloorOptions {
  readonly backend: string;
  /** fd3exec's path; absent: the /bin/sh shim. */
  readonly helper?: string;
  /** fd3spawn's path; it replaces `helper`. */
  readonly spawner?: string;
  readonly sessions: number;
  readonly concurrency: number;
  readonly maxMs: number;
  readonly warmup: number;
}

/**
 * The spawn floor: per session the check and then the change program run
 * through `runProgram` with their payloads and the ucspi-tcp variables, as
 * in listen mode, with no socket and no protocol.
 */
export async function runFloor(
  options: FloorOptions,
): Promise<LoadResult & { cpuMs: number }> {
  const bytes = (text: string) => new TextEncoder().encode(text);
  const starter = openStarter(
    options.spawner !== undefined
      ? { kind: "fd3spawn", path: options.spawner }
      : options.helper !== undefined
      ? { kind: "fd3exec", path: options.helper }
      : { kind: "shim" },
    (m) => console.error(m),
  );
  const spawner = options.spawner === undefined
    ? undefined
    : starter as Fd3spawnStarter;
  const env: Record<string, string> = { PROTO: "TCP", TCPLOCALPORT: "106" };
  env.TCPREMOTEIP = env.TCPLOCALIP = "127.0.0.1";
  env.TCPREMOTEPORT = "40000";
  const once = async () => {
    const [user, old, next] = ["bench", "old-secret", "new-secret"].map(bytes);
    for (
      const payload of [
        checkPayload(user!, old!),
        changePayload(user!, old!, next!),
      ]
    ) {
      const result = await runProgram(starter, {
        argv: [options.backend],
        payload,
        timeoutMs: 30_000,
        env,
        redact: [old!, next!],
        onOutput: () => {},
      });
      if (result.kind !== "exited" || result.code !== 0) {
        throw new Error(`back end: ${JSON.stringify(result)}`);
      }
    }
  };
  try {
    await runPool({ ...options, sessions: options.warmup, mode: "full" }, once);
    const cpu0 = cpuOf("self") + (spawner ? cpuOf(spawner.pid() ?? 0) : 0);
    const result = await runPool({ ...options, mode: "full" }, once);
    // fd3spawn reaps the back ends: its CPU counts them.
    const cpu1 = cpuOf("self") + (spawner ? cpuOf(spawner.pid() ?? 0) : 0);
    return { ...result, cpuMs: cpu1 - cpu0 };
  } finally {
    await starter.close();
  }
}

/** Run the spawn floor in its own Deno process; `pid` is there to be sampled. */
export function spawnFloor(
  kit: Kit,
  options: FloorOptions,
): {
  readonly pid: number;
  readonly result: Promise<LoadResult & { cpuMs: number }>;
} {
  const self = `${kit.repo}/bench/targets.ts`;
  const child = new Deno.Command(kit.deno, {
    args: ["run", "--allow-all", self, "--floor", JSON.stringify(options)],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
  const result = child.output().then((out) => {
    if (!out.success) throw new Error(`spawn floor: ${text(out.stderr)}`);
    return JSON.parse(text(out.stdout)) as LoadResult & { cpuMs: number };
  });
  return { pid: child.pid, result };
}

if (import.meta.main) {
  const at = Deno.args.indexOf("--floor");
  if (at < 0) {
    console.error(
      "usage: deno run -A bench/targets.ts --floor '{FloorOptions}'",
    );
    Deno.exit(100);
  }
  console.log(JSON.stringify(await runFloor(JSON.parse(Deno.args[at + 1]!))));
}
