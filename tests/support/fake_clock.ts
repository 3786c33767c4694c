/**
 * A manual clock for session tests: time moves only when the test says so,
 * so delays and deadlines cost nothing and are exact.
 *
 * @module
 */

import type { Clock, Timer } from "../../lib/common/clock.ts";

interface Pending {
  readonly at: number;
  readonly resolve: () => void;
  cancelled: boolean;
}

/** A clock whose timers fire only in `advance` / `runUntilIdle`. */
export class FakeClock implements Clock {
  #now = 0;
  #timers: Pending[] = [];
  /** Every timer length asked for, in order. */
  readonly requested: number[] = [];

  now = (): number => this.#now;

  timer(ms: number): Timer {
    this.requested.push(ms);
    let entry!: Pending;
    const done = new Promise<void>((resolve) => {
      entry = { at: this.#now + Math.max(0, ms), resolve, cancelled: false };
    });
    this.#timers.push(entry);
    return {
      done,
      cancel: () => {
        entry.cancelled = true;
      },
    };
  }

  /** Move time forward by `ms`, firing due timers in order; lets promises settle between. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const due = this.#timers
        .filter((t) => !t.cancelled && t.at <= target)
        .sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#now = due.at;
      due.cancelled = true;
      due.resolve();
    }
    this.#now = target;
    this.#timers = this.#timers.filter((t) => !t.cancelled);
    await settle();
  }

  /** Timers still waiting (not cancelled, not fired). */
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }
}

/** Let queued promise reactions run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((resolve) => setTimeout(resolve, 0));
}
