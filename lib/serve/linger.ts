/**
 * The last step of a session on a socket: read and discard what the client
 * has already sent, so that closing sends FIN after the last reply. Closing
 * a TCP socket with unread input makes the kernel send RST instead, which
 * can destroy a final `500` reply still on its way (a client that sent
 * several lines at once and got an error for one of them). Bounded in time
 * and octets; what it reads may hold passwords and is zeroed.
 *
 * @module
 */

import type { Clock } from "../common/clock.ts";
import {
  LINGER_IDLE_MS,
  LINGER_MAX_MS,
  LINGER_MAX_OCTETS,
} from "../common/limits.ts";
import type { ChunkSource } from "../protocol/lines.ts";

/**
 * Read until end of input, a read error, LINGER_IDLE_MS without input,
 * LINGER_MAX_MS in all, or LINGER_MAX_OCTETS. A read still pending at the
 * end is left to the caller's close (or the process's exit).
 */
export async function discardPending(
  read: ChunkSource,
  clock: Clock,
): Promise<void> {
  const stop = clock.now() + LINGER_MAX_MS;
  let octets = 0;
  while (octets < LINGER_MAX_OCTETS && clock.now() < stop) {
    const idle = clock.timer(Math.min(LINGER_IDLE_MS, stop - clock.now()));
    const chunk = await Promise.race([
      read().catch(() => null),
      idle.done.then(() => null),
    ]);
    idle.cancel();
    if (chunk === null) return;
    octets += chunk.length;
    chunk.fill(0);
  }
}
