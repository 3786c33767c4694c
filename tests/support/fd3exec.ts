/**
 * The ways to start a back end, for tests that run every case through
 * each: the `/bin/sh` shim; `lib/stores/programs/fd3exec.c` built by
 * `packaging/build-fd3exec.sh` into a temporary folder for the one test
 * (removed on dispose); and a running `lib/stores/programs/fd3spawn.c` (listen mode's
 * `--fd3-spawner`). A build that cannot be made here is ignored, and the
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
import { hasTool } from "./tools.ts";

const script = (name: string) =>
  decodeURIComponent(
    new URL(`../../packaging/${name}`, import.meta.url).pathname,
  );

/** How a child is started. */
export type LauncherKind = "sh" | "fd3exec" | "spawner";

/** All of them, in the order tests run them. */
export const LAUNCHERS: readonly LauncherKind[] = ["sh", "fd3exec", "spawner"];

/** The starters stdio mode can use (`--fd3-spawner` is for listen mode). */
export const STDIO_LAUNCHERS: readonly LauncherKind[] = ["sh", "fd3exec"];

/** Why `kind` cannot run here, or undefined. */
export function missing(kind: LauncherKind): string | undefined {
  if (kind === "sh") return undefined;
  if (!hasTool("cc")) return "cc not installed";
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

/** Build fd3exec (or fd3spawn) into a new temporary folder; throws with the script's output. */
export async function buildStarter(
  kind: "fd3exec" | "spawner",
): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "fd3exec-" });
  const spawner = kind === "spawner";
  const path = `${dir}/${spawner ? "fd3spawn" : "fd3exec"}`;
  const out = await new Deno.Command("sh", {
    args: spawner
      ? [script("build-fd3spawn.sh"), path]
      : [script("build-fd3exec.sh"), path],
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
  return { dir, path };
}

/**
 * Register one test per launcher: `name [sh shim]`, `name [fd3exec]`,
 * `name [fd3spawn]`, each ignored (and saying
 * why) where it cannot run, each with its own launcher, disposed after the
 * test.
 */
export function forEachLauncher(
  name: string,
  fn: (
    launch: Launcher,
    t: Deno.TestContext,
    kind: LauncherKind,
  ) => Promise<void>,
  kinds: readonly LauncherKind[] = LAUNCHERS,
): void {
  for (const kind of kinds) {
    const { suffix, ignore } = launcherTest(kind);
    Deno.test({
      name: name + suffix,
      ignore,
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
  const { dir, path } = await buildStarter(kind);
  const remove = () => Deno.remove(dir, { recursive: true });
  if (kind === "spawner") {
    const starter: Fd3spawnStarter = fd3spawnStarter(path, (m) => {
      throw new Error(`unexpected spawner log line: ${m}`);
    });
    return {
      starter,
      flags: ["--fd3-spawner", path],
      startup: `; fd-3 spawner ${path}`,
      name: "fd3spawn",
      [Symbol.asyncDispose]: () => starter.close().finally(remove),
    };
  }
  return {
    starter: fd3execStarter(path),
    flags: ["--fd3-helper", path],
    startup: `; fd-3 helper ${path}`,
    name: "fd3exec",
    [Symbol.asyncDispose]: remove,
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
