/**
 * The rules every built-in store that hashes passwords itself (passwd-file,
 * SQL) applies to a new password, and the hashing of it.
 *
 * @module
 */

import type { Outcome } from "./backend.ts";
import { make, type WriteScheme } from "../hash/mod.ts";
import { errorMessage } from "../common/errors.ts";

/**
 * The length of a password for the minimum-length rule: Unicode code points
 * when the octets are valid UTF-8 (so "pässwörd" counts 8, as a user would
 * count it), otherwise octets, the only unit left for legacy encodings.
 */
export function passwordLength(pw: Uint8Array): number {
  try {
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
      .decode(pw);
    let count = 0;
    for (const _ of text) count++;
    return count;
  } catch {
    return pw.length;
  }
}

/** Policy on the new password, or undefined when it is acceptable. */
export function refuseNewPassword(
  oldPassword: Uint8Array,
  newPassword: Uint8Array,
  minPasswordLength: number,
): Outcome | undefined {
  // Never fewer than 1: bcrypt cannot hash an empty password.
  const min = Math.max(1, minPasswordLength);
  if (passwordLength(newPassword) < min) {
    return { kind: "rejected", reason: `new password shorter than ${min}` };
  }
  // crypt(3), which Dovecot uses for the CRYPT family, stops at NUL; such a
  // password could never be verified by Dovecot.
  if (newPassword.includes(0)) {
    return { kind: "rejected", reason: "new password contains a NUL octet" };
  }
  const same = oldPassword.length === newPassword.length &&
    oldPassword.every((octet, i) => octet === newPassword[i]);
  if (same) {
    return { kind: "rejected", reason: "new password equals the old one" };
  }
  return undefined;
}

/**
 * Check `newPassword` against the rules, then hash it in `scheme`: the
 * `{SCHEME}`-prefixed hash, or the outcome to answer with (a refusal, or a
 * temporary failure when hashing failed, e.g. a full hash pool).
 */
export async function hashNewPassword(
  oldPassword: Uint8Array,
  newPassword: Uint8Array,
  minPasswordLength: number,
  scheme: WriteScheme,
): Promise<string | Outcome> {
  const refusal = refuseNewPassword(
    oldPassword,
    newPassword,
    minPasswordLength,
  );
  if (refusal) return refusal;
  try {
    return await make(scheme, newPassword);
  } catch (error) {
    return {
      kind: "temporary",
      reason: `cannot hash the new password: ${errorMessage(error)}`,
    };
  }
}
