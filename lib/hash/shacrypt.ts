/**
 * SHA-256-crypt (`$5$`) and SHA-512-crypt (`$6$`) as specified by Ulrich
 * Drepper in "Unix crypt using SHA-256 and SHA-512"
 * (https://www.akkadia.org/drepper/SHA-crypt.txt), on the synchronous
 * hashers of `hash-wasm`. Written from the specification; the step numbers
 * below are its.
 *
 * {@link shaCrypt} is async only to await the one-time WebAssembly set-up of
 * each hasher; the hashing itself then runs synchronously on one cached
 * hasher per variant, so concurrent calls never interleave on it. Passwords
 * are octets throughout, and every buffer that held password-derived data is
 * zeroed afterwards, the hasher's WebAssembly memory included.
 *
 * @module
 */

import { createSHA256, createSHA512, type IHasher } from "hash-wasm";

/** The digest size of the variant: 256 for `$5$`, 512 for `$6$`. */
export type ShaVariant = 256 | 512;

/** A stored SHA-crypt hash, taken apart by {@link parseShaCrypt}. */
export interface ShaCryptHash {
  readonly variant: ShaVariant;
  /** As written after `rounds=`, unclamped; undefined when absent. */
  readonly rounds: number | undefined;
  readonly salt: string;
  /** The encoded digest: 43 chars for `$5$`, 86 for `$6$`. */
  readonly hash: string;
}

const ALPHABET =
  "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const DEFAULT_ROUNDS = 5000;
const [MIN_ROUNDS, MAX_ROUNDS] = [1000, 999_999_999];
const MAX_SALT = 16;

// Step 22e: the order in which the final digest's octets are encoded, in
// groups as the specification lists them: three octets (most significant
// first) make 4 chars; the last group is shorter (2 octets make 3 chars, 1
// octet 2 chars).
const groups = (table: string) =>
  table.split(" ").map((group) => group.split(",").map(Number));
const ORDER: Readonly<Record<ShaVariant, readonly number[][]>> = {
  256: groups(
    "0,10,20 21,1,11 12,22,2 3,13,23 24,4,14 15,25,5 6,16,26 27,7,17 " +
      "18,28,8 9,19,29 31,30",
  ),
  512: groups(
    "0,21,42 22,43,1 44,2,23 3,24,45 25,46,4 47,5,26 6,27,48 28,49,7 " +
      "50,8,29 9,30,51 31,52,10 53,11,32 12,33,54 34,55,13 56,14,35 " +
      "15,36,57 37,58,16 59,17,38 18,39,60 40,61,19 62,20,41 63",
  ),
};

const SHAPE =
  /^\$([56])\$(?:rounds=([0-9]{1,10})\$)?([./0-9A-Za-z]{0,16})\$([./0-9A-Za-z]{43}|[./0-9A-Za-z]{86})$/;

/**
 * Take a stored `$5$[rounds=N$]salt$hash` or `$6$…` apart; undefined unless
 * it has exactly that shape (salt of 0 to 16 chars and hash in the crypt
 * alphabet, hash of the variant's length, rounds of at most 10 digits).
 *
 * @example parseShaCrypt("$5$rounds=1000$abc$" + "x".repeat(43))
 * // {variant: 256, rounds: 1000, salt: "abc", hash: "xxx…"}
 */
export function parseShaCrypt(text: string): ShaCryptHash | undefined {
  const m = SHAPE.exec(text);
  const variant = m?.[1] === "5" ? 256 : 512;
  if (!m || m[4]!.length !== (variant === 256 ? 43 : 86)) return undefined;
  const rounds = m[2] === undefined ? undefined : Number(m[2]);
  return { variant, rounds, salt: m[3]!, hash: m[4]! };
}

const hashers = new Map<ShaVariant, Promise<IHasher>>();

/** The cached hasher of `variant`, created (and its wasm compiled) once. */
function hasher(variant: ShaVariant): Promise<IHasher> {
  let made = hashers.get(variant);
  if (!made) {
    made = variant === 256 ? createSHA256() : createSHA512();
    made.catch(() => hashers.delete(variant));
    hashers.set(variant, made);
  }
  return made;
}

/**
 * Hash `password` as crypt(3) does with the setting `$5$salt` or `$6$salt`
 * (`$5$rounds=N$salt` when `rounds` is given): the result is the full
 * `$5$…`/`$6$…` string. Per the specification, `salt` is cut to 16 chars
 * and `rounds` is clamped to 1000..999999999 and then written out; without
 * `rounds`, 5000 rounds are used and not written.
 * Throws a RangeError for a salt char that is `$` or above U+00FF, or for
 * rounds that are not an integer.
 */
export async function shaCrypt(
  password: Uint8Array,
  salt: string,
  rounds: number | undefined,
  variant: ShaVariant,
): Promise<string> {
  const saltText = salt.slice(0, MAX_SALT);
  if (/[$\u0100-\uffff]/.test(saltText)) {
    throw new RangeError("SHA-crypt salt chars must be octets other than $");
  }
  if (rounds !== undefined && !Number.isSafeInteger(rounds)) {
    throw new RangeError("SHA-crypt rounds must be an integer");
  }
  const count = rounds === undefined
    ? DEFAULT_ROUNDS
    : Math.min(MAX_ROUNDS, Math.max(MIN_ROUNDS, rounds));
  const h = await hasher(variant);
  const saltBytes = Uint8Array.from(saltText, (c) => c.charCodeAt(0));
  const digest = compute(h, variant / 8, password, saltBytes, count);
  const prefix = `$${variant === 256 ? 5 : 6}$` +
    (rounds === undefined ? "" : `rounds=${count}$`);
  const encoded = encode(digest, ORDER[variant]);
  digest.fill(0);
  return `${prefix}${saltText}$${encoded}`;
}

/** `length` octets of `digest` repeated (steps 16 and 20). */
function stretch(digest: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += digest.length) {
    out.set(digest.subarray(0, Math.min(digest.length, length - i)), i);
  }
  return out;
}

/** Steps 1 to 21: the final digest C; the caller wipes it. */
function compute(
  h: IHasher,
  size: number,
  pw: Uint8Array,
  salt: Uint8Array,
  rounds: number,
): Uint8Array {
  // Steps 4-8: digest B. Steps 1-3 and 9-12: digest A.
  const b = h.init().update(pw).update(salt).update(pw).digest("binary");
  h.init().update(pw).update(salt);
  for (let n = pw.length; n > 0; n -= size) {
    h.update(b.subarray(0, Math.min(n, size)));
  }
  for (let n = pw.length; n > 0; n >>>= 1) h.update(n & 1 ? b : pw);
  const a = h.digest("binary");
  h.init(); // steps 13-15
  for (let i = 0; i < pw.length; i++) h.update(pw);
  const dp = h.digest("binary");
  const p = stretch(dp, pw.length);
  h.init(); // steps 17-19
  for (let i = 0; i < 16 + a[0]!; i++) h.update(salt);
  const ds = h.digest("binary");
  const s = stretch(ds, salt.length);
  // Step 21: each round's input is gathered in one buffer, one update().
  const scratch = new Uint8Array(2 * p.length + s.length + size);
  let [c, n] = [a, 0];
  const put = (part: Uint8Array) => {
    scratch.set(part, n);
    n += part.length;
  };
  for (let i = 0; i < rounds; i++) {
    n = 0;
    put(i & 1 ? p : c);
    if (i % 3) put(s);
    if (i % 7) put(p);
    put(i & 1 ? c : p);
    const next = h.init().update(scratch.subarray(0, n)).digest("binary");
    c.fill(0);
    c = next;
  }
  // Overwrite what the hasher's memory kept of the input and state.
  scratch.fill(0);
  h.init().update(scratch.subarray(0, Math.min(16384, scratch.length)))
    .update(new Uint8Array(256)).digest("binary");
  for (const buffer of [b, dp, p, ds, s]) buffer.fill(0);
  return c;
}

/** Step 22e: crypt's base64 of `digest`, octets taken in `order`. */
function encode(digest: Uint8Array, order: readonly number[][]): string {
  let out = "";
  for (const group of order) {
    let w = group.reduce((acc, k) => (acc << 8) | digest[k]!, 0);
    for (let j = 0; j <= group.length; j++, w >>>= 6) out += ALPHABET[w & 63];
  }
  return out;
}
