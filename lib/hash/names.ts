/**
 * The names of the schemes we write, in a module without dependencies, so
 * that option parsing can check `--passwd-scheme` without loading any
 * hash code.
 *
 * @module
 */

/** The schemes we write new hashes in (Dovecot names). */
export const WRITE_SCHEMES = ["ARGON2ID", "SHA512-CRYPT", "BLF-CRYPT"] as const;

/** A scheme we write new hashes in. */
export type WriteScheme = typeof WRITE_SCHEMES[number];

/** The scheme for new hashes unless configured otherwise: the strongest one. */
export const DEFAULT_SCHEME: WriteScheme = "ARGON2ID";

/** `text` as a write scheme (any case), or undefined. */
export function writeScheme(text: string): WriteScheme | undefined {
  const upper = text.toUpperCase();
  return WRITE_SCHEMES.find((scheme) => scheme === upper);
}
