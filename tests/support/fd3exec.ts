/**
 * The ways to start a back end, for tests that run every case through
 * each: the `/bin/sh` shim; `lib/stores/programs/fd3exec.c` built by
 * `packaging/build-fd3exec.sh`; and a running `lib/stores/programs/fd3spawn.c`
 * (listen mode's `--fd3-spawner`). Each is built once and cached by source
 * hash (`buildStarter`). A build that cannot be made here is ignored, and the
 * test's name says why.
 *
 * @module
 */

import {
  fd3execStarter,
  shimStarter,
} from "../../lib/stores/programs/command.ts";
import {
  type Fd3spawnStarter,
  fd3spawnStarter,
} from "../../lib/stores/programs/fd3spawn.ts";
import type { Starter } from "../../lib/stores/programs/starter.ts";
import { aptLine, needs } from "./tools.ts";

const script = (name: string) =>
  decodeURIComponent(
    new URL(`../../packaging/${name}`, import.meta.url).pathname,
  );

/** How a child is started. */
export type LauncherKind = "sh" | "fd3exec" | "spawner";

/** All of them, in the order tests run them. */
const LAUNCHERS: readonly LauncherKind[] = ["sh", "fd3exec", "spawner"];

/** The starters stdio mode can use (`--fd3-spawner` is for listen mode). */
export const STDIO_LAUNCHERS: readonly LauncherKind[] = ["sh", "fd3exec"];

/** Why `kind` cannot run here, or undefined. */
export function missing(kind: LauncherKind): string | undefined {
  if (kind === "sh") return undefined;
  // The fd3exec/fd3spawn variants of every test need a C compiler; said
  // once per process on stderr with its apt-get line.
  if (needs(import.meta.url, "cc").ignore) {
    return `cc not installed: ${aptLine(["cc"])}`;
  }
  return undefined;
}

/** A launcher for `runProgram` / `programBackend`, and its main.ts flags. */
export interface Launcher extends AsyncDisposable {
  /** The starter itself, opened for this test. */
  readonly starter: Starter;
  /** The same as main.ts options: `[]`, `--fd3-helper PATH`, `--fd3-spawner PATH`. */
  readonly flags: readonly string[];
  /** How listen mode's startup line ends with these flags. */
  readonly startup: string;
  /** What an unrunnable program's error line starts with, after the shell's. */
  readonly name: "sh" | "fd3exec" | "fd3spawn";
}

/** Test-name suffix and `ignore` flag for a test that uses `kind`. */
function launcherTest(kind: LauncherKind): {
  suffix: string;
  ignore: boolean;
} {
  const why = missing(kind);
  const label = kind === "sh"
    ? "sh shim"
    : kind === "spawner"
    ? "fd3spawn"
    : "fd3exec";
  return {
    suffix: ` [${label}]${why ? ` (ignored: ${why})` : ""}`,
    ignore: why !== undefined,
  };
}

const repoFile = (path: string) =>
  decodeURIComponent(new URL(`../../${path}`, import.meta.url).pathname);

/** What a build depends on: a change to any of these makes a new build. */
const BUILD_INPUTS = [
  "packaging/build-fd3exec.sh",
  "packaging/build-fd3spawn.sh",
  "lib/stores/programs/fd3exec.c",
  "lib/stores/programs/fd3spawn.c",
];

/** How old another build must be before a new build removes it. */
const DAY_MS = 24 * 60 * 60 * 1000;

/** One build per kind and process, shared by every test that needs it. */
const builds = new Map<string, Promise<string>>();

/**
 * fd3exec (or fd3spawn), built once: into a cache folder in the temporary
 * directory keyed by the SHA-256 of the build scripts and the C sources,
 * so a test run builds each kind once and later runs reuse it until the
 * sources change. Builds of other sources are removed only once they are a
 * day old: checkouts of other branches on the same machine may be testing
 * with them right now. Throws with the build script's output.
 */
export function buildStarter(
  kind: "fd3exec" | "spawner",
): Promise<{ path: string }> {
  let build = builds.get(kind);
  if (!build) {
    build = cachedBuild(kind);
    builds.set(kind, build);
    build.catch(() => builds.delete(kind));
  }
  return build.then((path) => ({ path }));
}

async function cachedBuild(kind: "fd3exec" | "spawner") {
  const spawner = kind === "spawner";
  const name = spawner ? "fd3spawn" : "fd3exec";
  const sources = BUILD_INPUTS.map((f) => Deno.readFileSync(repoFile(f)));
  const digest = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      await new Blob([kind, ...sources]).arrayBuffer(),
    ),
  );
  const key = Array.from(
    digest.subarray(0, 8),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const root = `${Deno.env.get("TMPDIR") ?? "/tmp"}/qmail-poppass-test-builds`;
  const path = `${root}/${name}-${key}/${name}`;
  try {
    if (Deno.statSync(path).isFile) return path;
  } catch {
    // not built yet
  }
  Deno.mkdirSync(root, { recursive: true });
  const dir = await Deno.makeTempDir({ dir: root, prefix: `.${name}-` });
  const out = await new Deno.Command("sh", {
    args: [script(`build-${name}.sh`), `${dir}/${name}`],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(
      `building ${kind}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  for (const entry of Deno.readDirSync(root)) {
    if (!entry.name.startsWith(`${name}-`)) continue;
    try {
      const at = `${root}/${entry.name}`;
      if (Date.now() - (Deno.statSync(at).mtime?.getTime() ?? 0) > DAY_MS) {
        Deno.removeSync(at, { recursive: true });
      }
    } catch {
      // removed meanwhile by another test process
    }
  }
  try {
    // Atomic: a test process building the same kind at the same time
    // either wins or finds the other's build in place.
    Deno.renameSync(dir, `${root}/${name}-${key}`);
  } catch {
    await Deno.remove(dir, { recursive: true });
  }
  return path;
}

/**
 * Register one test per launcher: `name [sh shim]`, `name [fd3exec]`,
 * `name [fd3spawn]`, each ignored (and saying
 * why) where it cannot run, each with its own launcher, disposed after the
 * test. `gate` (from `needs()` in tools.ts) ignores them all when the test
 * file's other tools are missing.
 */
export function forEachLauncher(
  name: string,
  fn: (
    launch: Launcher,
    t: Deno.TestContext,
    kind: LauncherKind,
  ) => Promise<void>,
  kinds: readonly LauncherKind[] = LAUNCHERS,
  gate: { ignore: boolean } = { ignore: false },
): void {
  for (const kind of kinds) {
    const { suffix, ignore } = launcherTest(kind);
    Deno.test({
      name: name + suffix,
      ignore: ignore || gate.ignore,
      fn: async (t) => {
        await using launch = await launcher(kind);
        await fn(launch, t, kind);
      },
    });
  }
}

/** Get a launcher of `kind` for one test. */
async function launcher(kind: LauncherKind): Promise<Launcher> {
  if (kind === "sh") {
    // `fd-3 shim /bin/sh`, or /bin/bash when this process (and so the
    // server it starts) inherited descriptors above 9 that dash cannot close.
    const starter = shimStarter();
    return {
      starter,
      flags: [],
      startup: `; ${starter.name}`,
      name: "sh",
      [Symbol.asyncDispose]: async () => {},
    };
  }
  const { path } = await buildStarter(kind);
  if (kind === "spawner") {
    const starter: Fd3spawnStarter = fd3spawnStarter(path, (m) => {
      throw new Error(`unexpected spawner log line: ${m}`);
    });
    return {
      starter,
      flags: ["--fd3-spawner", path],
      startup: `; fd-3 spawner ${path}`,
      name: "fd3spawn",
      [Symbol.asyncDispose]: () => starter.close(),
    };
  }
  return {
    starter: fd3execStarter(path),
    flags: ["--fd3-helper", path],
    startup: `; fd-3 helper ${path}`,
    name: "fd3exec",
    [Symbol.asyncDispose]: async () => {},
  };
}

/** The pid of the fd3spawn that the process `pid` (a listen server) started, or 0. */
export function spawnerOf(pid: number): number {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid && stat.includes("(fd3spawn)")) {
        return Number(entry.name);
      }
    } catch {
      // gone meanwhile
    }
  }
  return 0;
}
