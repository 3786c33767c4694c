/**
 * What a bench run works with: the `Kit` (every built piece: back ends,
 * the C baseline, fd3exec, fd3spawn, the bundle, tcpserver, Debian's
 * poppassd, the code caches) made by `prepareKit` in a temporary work
 * folder, and the `Target` every started server is.
 *
 * @module
 */

import {
  aptInstall,
  asNobody,
  debianPoppassd,
  run,
  SHELL_BACKEND,
  which,
} from "./system.ts";
import { kit_work } from "./logs.ts";

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
  /** lib/stores/programs/fd3exec.c built as the Debian package builds it (packaging/build-fd3exec.sh). */
  readonly fd3exec?: string;
  /** lib/stores/programs/fd3spawn.c built as the Debian package builds it (packaging/build-fd3spawn.sh). */
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
