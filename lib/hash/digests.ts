/**
 * Dovecot's plain and salted digest schemes and its PBKDF2, as Dovecot
 * reads them (src/auth/password-scheme*.c, behaviour checked against
 * `doveadm pw`): the raw digest (plus salt) is stored base64-encoded,
 * hex for PLAIN-MD5; a `.B64`/`.HEX` suffix on the scheme picks the
 * encoding; a digest of the wrong length in the default encoding is tried
 * in the other one, as Dovecot does for old files.
 *
 * @module
 */

import {
  createMD5,
  createSHA1,
  createSHA256,
  createSHA512,
  type IHasher,
} from "hash-wasm";
import { base64Decode, latin1Encode } from "./octets.ts";

/** The digest behind a scheme: output length and a hasher factory. */
interface Digest {
  readonly size: number;
  readonly create: () => Promise<IHasher>;
}

const MD5: Digest = { size: 16, create: createMD5 };
const SHA1: Digest = { size: 20, create: createSHA1 };
const SHA256: Digest = { size: 32, create: createSHA256 };
const SHA512: Digest = { size: 64, create: createSHA512 };

/** A digest scheme: its digest, salted or not, and its default encoding. */
interface DigestScheme {
  readonly digest: Digest;
  readonly salted: boolean;
  readonly encoding: "B64" | "HEX";
}

/** Dovecot's digest schemes by upper-case name. */
export const DIGEST_SCHEMES: ReadonlyMap<string, DigestScheme> = new Map([
  ["SHA", { digest: SHA1, salted: false, encoding: "B64" }],
  ["SHA1", { digest: SHA1, salted: false, encoding: "B64" }],
  ["SHA256", { digest: SHA256, salted: false, encoding: "B64" }],
  ["SHA512", { digest: SHA512, salted: false, encoding: "B64" }],
  ["SSHA", { digest: SHA1, salted: true, encoding: "B64" }],
  ["SSHA256", { digest: SHA256, salted: true, encoding: "B64" }],
  ["SSHA512", { digest: SHA512, salted: true, encoding: "B64" }],
  ["SMD5", { digest: MD5, salted: true, encoding: "B64" }],
  ["PLAIN-MD5", { digest: MD5, salted: false, encoding: "HEX" }],
  ["LDAP-MD5", { digest: MD5, salted: false, encoding: "B64" }],
]);

/** Hex to octets; undefined when `text` is not even-length hex. */
export function hexDecode(text: string): Uint8Array | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** Strict base64 (padding optional); undefined when malformed. */
export function strictBase64(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return undefined;
  return base64Decode(text);
}

/**
 * The raw octets of a digest field, in the encoding the scheme or its
 * suffix names; undefined when it decodes in neither.
 */
export function decodeDigest(
  scheme: DigestScheme,
  text: string,
  suffix: "B64" | "HEX" | undefined,
): Uint8Array | undefined {
  const first = suffix ?? scheme.encoding;
  const decode = (how: "B64" | "HEX") =>
    how === "HEX" ? hexDecode(text) : strictBase64(text);
  const fits = (raw: Uint8Array | undefined) =>
    raw !== undefined &&
    (scheme.salted
      ? raw.length > scheme.digest.size
      : raw.length === scheme.digest.size);
  const raw = decode(first);
  if (fits(raw) || suffix !== undefined) return raw;
  const other = decode(first === "HEX" ? "B64" : "HEX");
  return fits(other) ? other : raw;
}

/**
 * The digest of `password` (then `salt`, for salted schemes) in the
 * scheme's digest; compared by the caller in constant time.
 */
export async function digestOf(
  scheme: DigestScheme,
  password: Uint8Array,
  salt: Uint8Array,
): Promise<Uint8Array> {
  const hasher = await scheme.digest.create();
  hasher.init();
  hasher.update(password);
  if (salt.length > 0) hasher.update(salt);
  return hasher.digest("binary");
}

/** Ceiling on PBKDF2 rounds a stored hash may ask for (Dovecot writes 5000). */
export const MAX_PBKDF2_ROUNDS = 1_000_000;

const PBKDF2_SHAPE = /^\$1\$([^$]{1,64})\$(\d{1,10})\$([0-9a-fA-F]{40})$/;

/**
 * Dovecot's PBKDF2: `$1$SALT$ROUNDS$HEX`, PBKDF2-HMAC-SHA1 with the salt's
 * text as salt and 20 octets of output. Returns the expected and actual
 * keys, or a reason the hash cannot be judged.
 */
export async function pbkdf2Keys(
  password: Uint8Array,
  hash: string,
): Promise<{ expected: Uint8Array; actual: Uint8Array } | string> {
  const shape = PBKDF2_SHAPE.exec(hash);
  if (!shape) return "malformed PBKDF2 hash";
  const rounds = Number(shape[2]);
  if (rounds < 1) return "malformed PBKDF2 hash";
  if (rounds > MAX_PBKDF2_ROUNDS) return "PBKDF2 rounds too high";
  const key = await crypto.subtle.importKey(
    "raw",
    password.slice(),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    {
      name: "PBKDF2",
      hash: "SHA-1",
      salt: latin1Encode(shape[1]!).slice(),
      iterations: rounds,
    },
    key,
    160,
  );
  return { expected: hexDecode(shape[3]!)!, actual: new Uint8Array(bits) };
}
