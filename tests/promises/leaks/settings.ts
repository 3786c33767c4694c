/**
 * The leak tests' timings and soak size (SOAK_SESSIONS from the
 * environment, default 300).
 *
 * @module
 */

/** Short timings; the child deadline is 2 s so a 400 MiB flood finishes well inside it. */
export const TIMINGS = [
  "--fail-delay",
  "0.1",
  "--idle-timeout",
  "2",
  "--session-timeout",
  "5",
  "--child-timeout",
  "2",
] as const;
/** The child deadline in `TIMINGS`, in milliseconds. */
export const CHILD_TIMEOUT_MS = 2_000;
/** Sessions in the stdio soak (SOAK_SESSIONS). */
export const SOAK_SESSIONS = Number(Deno.env.get("SOAK_SESSIONS") ?? 300);
/** Soak sessions at a time. */
export const SOAK_CONCURRENCY = 10;
/** Measured: ~12 stdio sessions/s on 2 busy cores; the cap allows a third of that. */
export const SOAK_CAP_MS = Math.max(60_000, SOAK_SESSIONS * 250);
