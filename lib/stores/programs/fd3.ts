/**
 * The fd-3 payloads, byte for byte as the C original writes them
 * (`doc/protocol.md` §4).
 *
 * @module
 */

import { PAYLOAD_MAX } from "../../common/limits.ts";

/**
 * Check payload: `user NUL old NUL NUL NUL` (length u+o+4). The empty third
 * field is the checkpassword "timestamp"; the last NUL is indimail's method
 * byte (0 = plain comparison).
 */
export function checkPayload(user: Uint8Array, old: Uint8Array): Uint8Array {
  const out = new Uint8Array(user.length + old.length + 4);
  out.set(user, 0);
  out.set(old, user.length + 1);
  return out;
}

/**
 * Change payload: `user NUL old NUL NUL new NUL` (length u+o+n+4), the
 * layout indimail's vsetpass parses (the empty third field is the
 * "response", meaning the old password is plain text).
 */
export function changePayload(
  user: Uint8Array,
  old: Uint8Array,
  next: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(user.length + old.length + next.length + 4);
  out.set(user, 0);
  out.set(old, user.length + 1);
  out.set(next, user.length + old.length + 3);
  return out;
}

/** True when a payload may be sent: checkpassword programs refuse more than 512 octets. */
export function payloadFits(payload: Uint8Array): boolean {
  return payload.length <= PAYLOAD_MAX;
}
