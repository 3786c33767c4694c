/**
 * The one executable probe: config checks every program it is given with
 * it at startup, and the programs store asks it whether `setsid` exists.
 *
 * @module
 */

/** What a path is, as far as running it goes. */
export type ExecutableState = "ok" | "missing" | "notExecutable";

/** A regular file with at least one execute bit is "ok". */
export function executableState(path: string): ExecutableState {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o755) & 0o111) !== 0
      ? "ok"
      : "notExecutable";
  } catch {
    return "missing";
  }
}
