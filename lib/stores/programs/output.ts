/**
 * What a program printed, turned into log lines: passwords blanked out,
 * at most `CHILD_LOG_LINES` lines of at most `CHILD_LINE_MAX` characters
 * from the first `CHILD_LOG_MAX` octets of each stream. The same for every
 * starter: they only capture (`starter.ts`).
 *
 * @module
 */

import {
  CHILD_LINE_MAX,
  CHILD_LOG_LINES,
  CHILD_LOG_MAX,
} from "../../common/limits.ts";
import { sanitize } from "../../common/log.ts";
import type { Captured } from "./starter.ts";

/**
 * Octets of each stream a starter keeps: the log's share plus the longest
 * secret, so a password cut at the limit is still found and blanked out.
 */
export function keepFor(secrets: readonly Uint8Array[]): number {
  return CHILD_LOG_MAX +
    secrets.reduce((max, secret) => Math.max(max, secret.length), 0);
}

/**
 * Log what a program printed on one stream, then wipe the captured octets.
 * Passwords are blanked out before anything is logged.
 */
export function emitCaptured(
  captured: Captured,
  secrets: readonly Uint8Array[],
  emit: (line: string) => void,
): void {
  const { kept, total } = captured;
  try {
    if (total === 0) return;
    const logged = emitLines(kept, secrets, emit);
    if (total > logged) emit(`(${total - logged} more octets not logged)`);
  } finally {
    kept.fill(0);
  }
}

/** Emit at most CHILD_LOG_LINES lines of the captured octets; returns the octets logged. */
function emitLines(
  captured: Uint8Array,
  secrets: readonly Uint8Array[],
  emit: (line: string) => void,
): number {
  for (const secret of secrets) blankOut(captured, secret);
  const text = captured.subarray(0, Math.min(captured.length, CHILD_LOG_MAX));
  let start = 0;
  for (let lines = 0; start < text.length && lines < CHILD_LOG_LINES; lines++) {
    let end = text.indexOf(0x0a, start);
    if (end < 0) end = text.length;
    if (end > start) {
      emit(
        sanitize(text.subarray(start, end), {
          allowSpace: true,
          max: CHILD_LINE_MAX,
        }),
      );
    }
    start = end + 1;
  }
  return Math.min(start, text.length);
}

/** Replace every occurrence of `secret` in `buffer` with `*`. */
function blankOut(buffer: Uint8Array, secret: Uint8Array): void {
  if (secret.length === 0) return;
  for (
    let i = buffer.indexOf(secret[0]!);
    i >= 0;
    i = buffer.indexOf(secret[0]!, i + 1)
  ) {
    if (i + secret.length > buffer.length) break;
    let match = true;
    for (let j = 1; j < secret.length && match; j++) {
      match = buffer[i + j] === secret[j];
    }
    if (match) buffer.fill(0x2a, i, i + secret.length);
  }
}
