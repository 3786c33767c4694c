/**
 * The ways to start a back end, for tests that run every case through
 * each: the `/bin/sh` shim, and `lib/fd3exec.c` built by
 * `packaging/build-fd3exec.sh` into a temporary folder for the one test
 * (removed on dispose), with the C library and, on Linux x86_64 and
 * aarch64, without. A build that cannot be made here is ignored, and the
 * test's name says why.
 *
 * @module
 */

import { hasTool } from "./tools.ts";

const SCRIPT = decodeURIComponent(
  new URL("../../packaging/build-fd3exec.sh", import.meta.url).pathname,
);

/** How a child is started. */
export type LauncherKind = "sh" | "libc" | "nolibc";

/** All of them, in the order tests run them. */
const LAUNCHERS: readonly LauncherKind[] = ["sh", "libc", "nolibc"];

const NOLIBC_HERE = Deno.build.os === "linux" &&
  (Deno.build.arch === "x86_64" || Deno.build.arch === "aarch64");

/** Why `kind` cannot run here, or undefined. */
function missing(kind: LauncherKind): string | undefined {
  if (kind === "sh") return undefined;
  if (!hasTool("cc")) return "cc not installed";
  if (kind === "nolibc" && !NOLIBC_HERE) return "no nolibc build here";
  return undefined;
}

/** A launcher ready for `runChild` / `programBackend` options. */
export interface Launcher extends AsyncDisposable {
  /** Spread into the options: `{}` for the shell, `{ helper }` for fd3exec. */
  readonly options: { readonly helper?: string };
}

/** Test-name suffix and `ignore` flag for a test that uses `kind`. */
function launcherTest(kind: LauncherKind): {
  suffix: string;
  ignore: boolean;
} {
  const why = missing(kind);
  const label = kind === "sh" ? "sh shim" : `fd3exec ${kind}`;
  return {
    suffix: ` [${label}]${why ? ` (ignored: ${why})` : ""}`,
    ignore: why !== undefined,
  };
}

/** Build fd3exec of `kind` into a new temporary folder; throws with the script's output. */
async function buildFd3exec(
  kind: "libc" | "nolibc",
): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "fd3exec-" });
  const path = `${dir}/fd3exec`;
  const out = await new Deno.Command("sh", {
    args: [SCRIPT, path, kind],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(
      `build-fd3exec.sh ${kind}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return { dir, path };
}

/**
 * Register one test per launcher: `name [sh shim]`, `name [fd3exec libc]`,
 * `name [fd3exec nolibc]`, each ignored (and saying why) where it cannot
 * run, each with its own launcher, disposed after the test.
 */
export function forEachLauncher(
  name: string,
  fn: (
    launch: Launcher,
    t: Deno.TestContext,
    kind: LauncherKind,
  ) => Promise<void>,
): void {
  for (const kind of LAUNCHERS) {
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
    return { options: {}, [Symbol.asyncDispose]: async () => {} };
  }
  const { dir, path } = await buildFd3exec(kind);
  return {
    options: { helper: path },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
