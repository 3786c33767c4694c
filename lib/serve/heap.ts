/**
 * Listen mode: refuse at startup a `--max-sessions` the V8 heap cannot
 * hold, instead of dying with `Fatal JavaScript out of memory` (and every
 * session with it) when the sessions arrive.
 *
 * @module
 */

import {
  HEAP_BASE_MIB,
  HEAP_PER_SESSION_KIB,
  heapNeedMib,
  V8_YOUNG_MIB,
} from "../common/limits.ts";

/** Why `maxSessions` cannot fit in this process's heap, or `undefined`. */
export async function heapProblem(
  maxSessions: number,
): Promise<string | undefined> {
  const { getHeapStatistics } = await import("node:v8");
  const limitMib = getHeapStatistics().heap_size_limit / 2 ** 20;
  const oldSpaceMib = Math.floor(limitMib - V8_YOUNG_MIB);
  const need = heapNeedMib(maxSessions);
  if (oldSpaceMib >= need) return undefined;
  const fits = Math.max(
    0,
    Math.floor((oldSpaceMib - HEAP_BASE_MIB) * 1024 / HEAP_PER_SESSION_KIB),
  );
  return `--max-sessions ${maxSessions} needs about ${need} MiB of V8 heap, but this process may use about ${oldSpaceMib} MiB: ` +
    `lower --max-sessions (at most about ${fits} fit) or raise --v8-flags=--max-old-space-size to ${need} ` +
    `(the packaged launcher derives it from --max-sessions)`;
}
