/**
 * Secret buffers are wiped as soon as their work is done.
 *
 * @module
 */

/** Overwrite secret octets so they do not linger in memory. */
export function wipe(...buffers: Uint8Array[]): void {
  for (const buffer of buffers) buffer.fill(0);
}
