/**
 * Time as the session runner sees it, so tests can replace it.
 *
 * @module
 */

/** A cancellable one-shot timer. */
export interface Timer {
  /** Resolves when the time is up; never rejects. */
  readonly done: Promise<void>;
  /** Stop the timer; `done` then never resolves. */
  cancel(): void;
}

/** The clock a session uses: milliseconds, monotonic. */
export interface Clock {
  now(): number;
  timer(ms: number): Timer;
}

/** The real clock: `performance.now()` and `setTimeout`. */
export const realClock: Clock = {
  now: () => performance.now(),
  timer(ms) {
    let id: ReturnType<typeof setTimeout> | undefined;
    const done = new Promise<void>((resolve) => {
      id = setTimeout(resolve, Math.max(0, ms));
    });
    return { done, cancel: () => clearTimeout(id) };
  },
};
