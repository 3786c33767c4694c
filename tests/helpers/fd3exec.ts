/**
 * The two ways to start a back end, for tests that run every case through
 * both: the `/bin/sh` shim, and `lib/fd3exec.c` compiled with `cc` into a
 * temporary folder for the one test (removed on dispose). Without `cc` the
 * fd3exec tests are ignored, and their names say so.
 *
 * @module
 */

import { hasTool } from "./tools.ts";

/** The source of the compiled shim. */
export const FD3EXEC_SOURCE = decodeURIComponent(
  new URL("../../lib/fd3exec.c", import.meta.url).pathname,
);

/** Is a C compiler here to build the helper? */
export const HAVE_CC = hasTool("cc");

/** How a child is started. */
export type LauncherKind = "sh" | "fd3exec";

/** Both, in the order tests run them. */
export const LAUNCHERS: readonly LauncherKind[] = ["sh", "fd3exec"];

/** A launcher ready for `runChild` / `programBackend` options. */
export interface Launcher extends AsyncDisposable {
  /** Spread into the options: `{}` for the shell, `{ helper }` for fd3exec. */
  readonly options: { readonly helper?: string };
}

/** Test-name suffix and `ignore` flag for a test that uses `kind`. */
export function launcherTest(kind: LauncherKind): {
  suffix: string;
  ignore: boolean;
} {
  const ignore = kind === "fd3exec" && !HAVE_CC;
  const label = kind === "sh" ? "sh shim" : "fd3exec";
  return {
    suffix: ` [${label}]${ignore ? " (ignored: cc not installed)" : ""}`,
    ignore,
  };
}

/** Compile `lib/fd3exec.c` (warnings are errors); throws with cc's output. */
export async function buildFd3exec(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "fd3exec-" });
  const path = `${dir}/fd3exec`;
  const out = await new Deno.Command("cc", {
    args: ["-O2", "-Wall", "-Wextra", "-Werror", "-o", path, FD3EXEC_SOURCE],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(`cc failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return { dir, path };
}

/** Get a launcher of `kind` for one test. */
export async function launcher(kind: LauncherKind): Promise<Launcher> {
  if (kind === "sh") {
    return { options: {}, [Symbol.asyncDispose]: async () => {} };
  }
  const { dir, path } = await buildFd3exec();
  return {
    options: { helper: path },
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}
