/**
 * The hashing engine every store uses: verify a password against a stored
 * hash and make a new hash. Stores import only this module.
 *
 * @module
 */

import {
  burnTime,
  DEFAULT_SCHEME,
  hashPassword,
  isClearText,
  type Verdict,
  verifyPassword,
  WRITE_SCHEMES,
  type WriteScheme,
} from "./schemes.ts";

export { DEFAULT_SCHEME, isClearText, WRITE_SCHEMES };
export type { Verdict, WriteScheme };

/**
 * Does `password` match `stored` (`{SCHEME}hash` as Dovecot reads it, or a
 * bare crypt string)? Never throws: a hash that cannot be judged is
 * `unsupported`, with a reason that names the scheme, never the hash.
 */
export function verify(stored: string, password: Uint8Array): Promise<Verdict> {
  return verifyPassword(password, stored);
}

/** Hash `password` in `scheme`, `{SCHEME}`-prefixed as Dovecot reads it. */
export function make(
  scheme: WriteScheme,
  password: Uint8Array,
): Promise<string> {
  return hashPassword(password, scheme);
}

/**
 * Spend the time a wrong password costs in `scheme`, for a user who does
 * not exist, so that response times do not tell which users exist.
 */
export function dummyVerify(
  scheme: WriteScheme,
  password: Uint8Array,
): Promise<void> {
  return burnTime(password, scheme);
}
