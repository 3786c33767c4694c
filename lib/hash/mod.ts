/**
 * The hashing engine every store uses: verify a password against a stored
 * hash and make a new hash. Stores import only this module.
 *
 * The work runs in a small pool of Workers (./pool.ts), never on the event
 * loop; crypt(3) strings go to the system's libcrypt and Argon2 to
 * libsodium through FFI when `--allow-ffi` is given (./native.ts), with
 * pure TypeScript/WebAssembly fallbacks for the schemes we write.
 *
 * @module
 */

import {
  costClass,
  DEFAULT_SCHEME,
  DUMMY_HASHES,
  isClearText,
  type Verdict,
  WRITE_SCHEMES,
  type WriteScheme,
} from "./schemes.ts";
import { closeHashPool, HashBusyError, poolMake, poolVerify } from "./pool.ts";

export {
  closeHashPool,
  costClass,
  DEFAULT_SCHEME,
  HashBusyError,
  isClearText,
  WRITE_SCHEMES,
};
export type { Verdict, WriteScheme };

/**
 * Does `password` match `stored` (`{SCHEME}hash` as Dovecot reads it, or a
 * bare crypt string)? Never throws: a hash that cannot be judged is
 * `unsupported`, with a reason that names the scheme, never the hash; when
 * the pool is full it is `unsupported` with `busy: true` (answer both as a
 * temporary failure, or see the passwd-file store for user enumeration).
 */
export function verify(stored: string, password: Uint8Array): Promise<Verdict> {
  return poolVerify(stored, password);
}

/**
 * Hash `password` in `scheme`, `{SCHEME}`-prefixed as Dovecot reads it.
 * Throws {@link HashBusyError} when the pool is full (a temporary failure).
 */
export function make(
  scheme: WriteScheme,
  password: Uint8Array,
): Promise<string> {
  return poolMake(scheme, password);
}

/**
 * Spend the time a wrong password costs in `scheme`, for a user who does
 * not exist, so that response times do not tell which users exist.
 * Throws {@link HashBusyError} when the pool is full, as a real check
 * would fail then.
 */
export async function dummyVerify(
  scheme: WriteScheme,
  password: Uint8Array,
): Promise<void> {
  const verdict = await poolVerify(DUMMY_HASHES[scheme], password);
  if (verdict.kind === "unsupported" && verdict.busy) {
    throw new HashBusyError(verdict.reason);
  }
}
