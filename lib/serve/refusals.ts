/**
 * Refused connections, logged without flooding the log: the first refusal
 * for a limit is logged in full, later ones for the same limit are only
 * counted, and one summary line per interval says how many there were. A
 * client that opens thousands of connections a second thus costs two
 * lines per interval, not one line per connection (which could rotate a
 * multilog history away in seconds).
 *
 * @module
 */

import type { Clock } from "../common/clock.ts";
import { REFUSAL_LOG_INTERVAL_MS } from "../common/limits.ts";

/** Logs refusals, summarising repeats. */
export interface RefusalLog {
  /**
   * A connection was refused for `limit` (e.g. `max-per-ip 10`); `full`
   * logs the line about this one connection, used only for the first
   * refusal of an interval.
   */
  refused(limit: string, full: () => void): void;
  /** Log the pending summaries now (at shutdown). */
  flush(): void;
}

/** A `RefusalLog` writing its summary lines to `log`. */
export function refusalLog(
  log: (message: string) => void,
  clock: Clock,
  intervalMs: number = REFUSAL_LOG_INTERVAL_MS,
): RefusalLog {
  // Per limit: refusals since the first one of the interval was logged.
  const open = new Map<string, { count: number; cancel: () => void }>();
  const summarise = (limit: string) => {
    const entry = open.get(limit);
    if (!entry) return;
    open.delete(limit);
    entry.cancel();
    if (entry.count > 0) {
      log(
        `limit reached: ${limit}, ${entry.count} more connection${
          entry.count === 1 ? "" : "s"
        } refused in the last ${intervalMs / 1000} s`,
      );
    }
  };
  return {
    refused(limit, full) {
      const entry = open.get(limit);
      if (entry) {
        entry.count++;
        return;
      }
      full();
      const timer = clock.timer(intervalMs);
      open.set(limit, { count: 0, cancel: timer.cancel });
      timer.done.then(() => summarise(limit));
    },
    flush() {
      for (const limit of [...open.keys()]) summarise(limit);
    },
  };
}
