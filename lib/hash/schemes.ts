/**
 * The password schemes of Dovecot's passwd-file that the built-in back end
 * understands: verify what Dovecot (or crypt(3), openssl, mkpasswd) wrote,
 * and write new hashes that Dovecot accepts.
 *
 * Libraries, and why:
 * - `hash-wasm` for Argon2 and bcrypt: it takes the password as bytes, runs
 *   without native code, and its output was checked against libsodium and
 *   crypt_blowfish through `doveadm pw -t`. Its own verify helpers compare
 *   with `===`, so we recompute and compare in constant time ourselves.
 * - SHA-256/SHA-512 crypt is ours (./shacrypt.ts, on hash-wasm's SHA-2),
 *   from Drepper's specification: the one pure library found, unixcrypt,
 *   imports node:crypto, which the bundle loads at every start.
 *   `bcryptjs` was not needed: it takes strings only.
 *
 * @module
 */

import { argon2i, argon2id, bcrypt } from "hash-wasm";
import { base64Decode, latin1Decode, latin1Encode } from "./octets.ts";
import {
  decodeDigest,
  DIGEST_SCHEMES,
  digestOf,
  hexDecode,
  pbkdf2Keys,
  strictBase64,
} from "./digests.ts";
import { nativeArgon2, nativeCrypt } from "./native.ts";
import { parseShaCrypt, shaCrypt } from "./shacrypt.ts";

import { DEFAULT_SCHEME, WRITE_SCHEMES, type WriteScheme } from "./names.ts";

export { DEFAULT_SCHEME, WRITE_SCHEMES };
export type { WriteScheme };

/** What comparing a password with a stored field came to. */
export type Verdict =
  | { readonly kind: "match" }
  | { readonly kind: "mismatch" }
  | {
    readonly kind: "unsupported";
    readonly reason: string;
    /** The hash was not judged for want of capacity (pool full, worker lost). */
    readonly busy?: boolean;
  };

const verdict = (equal: boolean): Verdict => ({
  kind: equal ? "match" : "mismatch",
});
function unsupported(reason: string): Verdict {
  return { kind: "unsupported", reason };
}

// Ceilings on the cost a stored hash may ask for. The file is the admin's,
// but one typo (cost 31, rounds=999999999, m=4 GiB) must not hang or
// exhaust the server; Dovecot's defaults sit far below each of them.
const MAX_SHA_ROUNDS = 1_000_000;
const MAX_BCRYPT_COST = 16;
const MAX_ARGON2_MEMORY_KIB = 262_144;
const MAX_ARGON2_ITERATIONS = 16;
const MAX_ARGON2_LANES = 16;
const MAX_YESCRYPT_MEMORY = 256 * 1024 * 1024;

// Parameters of what we write: Dovecot's own ARGON2ID defaults (libsodium's
// "interactive" limits), glibc's default SHA-crypt rounds (hence no
// "rounds=" field), and bcrypt cost 10 (~0.1 s here; Dovecot's 5 is weak).
const ARGON2 = {
  memorySize: 65536,
  iterations: 3,
  parallelism: 1,
  hashLength: 32,
  outputType: "encoded",
} as const;
const BCRYPT = { costFactor: 10, outputType: "encoded" } as const;

/**
 * Hashes of random, forgotten passwords, one per write scheme, made with
 * the same parameters as {@link hashPassword}; see {@link burnTime}.
 */
export const DUMMY_HASHES: Readonly<Record<WriteScheme, string>> = {
  "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$" +
    "bQpiKjtoz0fVcUbN6qb6xA$N2flpP+tfw3fJMbPoC5RHxR00h8eyM0xdKYzbk45t7o",
  "SHA512-CRYPT": "{SHA512-CRYPT}$6$nw5uhaK.E/VrA8aX$MVxYel9YClNJ8rllKT8G7Xp" +
    "nQZ9vckWUwXJpXD/IyJ2RXLhI0T3miPaNVg9PsFKgsohU.JM1/2sjzgvP1F5uT.",
  "BLF-CRYPT":
    "{BLF-CRYPT}$2y$10$7pz.RUGRP643BUivkMR2bujaq/aII9jP2NsT2nIPR6ACnKpnD6Mpi",
};

/**
 * Split a stored password field into its upper-cased scheme and the rest.
 * A field without `{SCHEME}` is CRYPT, Dovecot's default for passwd-file.
 *
 * @example splitScheme("{plain}secret") // {scheme: "PLAIN", hash: "secret"}
 */
export function splitScheme(stored: string): { scheme: string; hash: string } {
  const close = stored.startsWith("{") ? stored.indexOf("}") : -1;
  if (close < 0) return { scheme: "CRYPT", hash: stored };
  const scheme = stored.slice(1, close).toUpperCase();
  return { scheme, hash: stored.slice(close + 1) };
}

const CLEAR_SCHEMES = new Set(["PLAIN", "CLEAR", "CLEARTEXT"]);
// Dovecot hands all of these to crypt(3), which picks the algorithm by the
// hash's "$id$", not by the scheme name; we do the same.
const CRYPT_SCHEMES = new Set([
  "CRYPT",
  "DES-CRYPT",
  "MD5-CRYPT",
  "SHA256-CRYPT",
  "SHA512-CRYPT",
  "BLF-CRYPT",
]);
// Likewise libsodium reads argon2i versus argon2id from the hash itself.
const ARGON2_SCHEMES = new Set(["ARGON2I", "ARGON2ID"]);

/** Does this stored field hold the password in clear text? */
export function isClearText(stored: string): boolean {
  return CLEAR_SCHEMES.has(splitEncoding(splitScheme(stored).scheme).scheme);
}

/** `SHA512.HEX` to `SHA512` and `HEX`: Dovecot's encoding suffixes. */
export function splitEncoding(
  scheme: string,
): { scheme: string; suffix: "B64" | "HEX" | undefined } {
  const match = /^(.+)\.(B64|BASE64|HEX)$/.exec(scheme);
  if (!match) return { scheme, suffix: undefined };
  return { scheme: match[1]!, suffix: match[2] === "HEX" ? "HEX" : "B64" };
}

/**
 * Compare two byte strings in time that depends only on their lengths, so
 * that a hash comparison does not reveal how many leading octets matched.
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) {
    diff |= a[i]! ^ (b[i % (b.length || 1)] ?? 0);
  }
  return diff === 0;
}

/** Latin-1 maps each char of a stored field back to the octet it was read from. */
const octets = latin1Encode;

/**
 * Does `password` match the stored passwd-file field (`{SCHEME}hash`, or a
 * bare crypt hash)? `stored` holds one char per file octet (latin1).
 * Never throws: a hash we cannot judge is `unsupported`, with a reason that
 * names the scheme but never includes the hash.
 */
export async function verifyPassword(
  password: Uint8Array,
  stored: string,
): Promise<Verdict> {
  const split = splitScheme(stored);
  const { scheme, suffix } = splitEncoding(split.scheme);
  let hash = split.hash;
  try {
    const digest = DIGEST_SCHEMES.get(scheme);
    if (digest) return await verifyDigest(password, digest, hash, suffix);
    // Every other scheme stores a string; a suffix encodes that string.
    if (suffix) {
      const raw = suffix === "HEX" ? hexDecode(hash) : strictBase64(hash);
      if (!raw) return unsupported(`{${split.scheme}} hash is not ${suffix}`);
      hash = latin1Decode(raw);
    }
    if (CLEAR_SCHEMES.has(scheme)) {
      return verdict(constantTimeEqual(password, octets(hash)));
    }
    if (ARGON2_SCHEMES.has(scheme)) return await verifyArgon2(password, hash);
    if (scheme === "PBKDF2") {
      const keys = await pbkdf2Keys(password, hash);
      if (typeof keys === "string") return unsupported(keys);
      return verdict(constantTimeEqual(keys.actual, keys.expected));
    }
    // Dovecot's MD5 is MD5-CRYPT for "$1$" strings, else PLAIN-MD5.
    if (scheme === "MD5" && !hash.startsWith("$1$")) {
      return await verifyDigest(
        password,
        DIGEST_SCHEMES.get("PLAIN-MD5")!,
        hash,
        undefined,
      );
    }
    if (CRYPT_SCHEMES.has(scheme) || scheme === "MD5") {
      return await verifyCrypt(password, hash);
    }
    return unsupported(`unsupported scheme {${split.scheme}}`);
  } catch (error) {
    return unsupported(`cannot verify {${scheme}} hash: ${String(error)}`);
  }
}

async function verifyDigest(
  pw: Uint8Array,
  scheme: NonNullable<ReturnType<typeof DIGEST_SCHEMES.get>>,
  hash: string,
  suffix: "B64" | "HEX" | undefined,
): Promise<Verdict> {
  const raw = decodeDigest(scheme, hash, suffix);
  const size = scheme.digest.size;
  if (!raw || (scheme.salted ? raw.length <= size : raw.length !== size)) {
    return unsupported("malformed digest hash");
  }
  const salt = scheme.salted ? raw.subarray(size) : new Uint8Array(0);
  const actual = await digestOf(scheme, pw, salt);
  return verdict(constantTimeEqual(actual, raw.subarray(0, size)));
}

/** The "$id$" of a crypt string for messages, e.g. "$y$"; never the hash. */
const cryptId = (hash: string) =>
  /^\$[^$]{0,16}\$/.exec(hash)?.[0] ??
    (/^[./0-9A-Za-z]{13}$/.test(hash) ? "DES" : "(no $id$)");

/** A reason not to hand `hash` to crypt(3): a cost past our ceilings. */
function cryptCostProblem(hash: string): string | undefined {
  const sha = /^\$[56]\$rounds=(\d{1,12})\$/.exec(hash);
  if (sha && Number(sha[1]) > MAX_SHA_ROUNDS) {
    return "SHA-crypt rounds too high";
  }
  const blf = /^\$2[abxy]\$(\d\d)\$/.exec(hash);
  if (blf && Number(blf[1]) > MAX_BCRYPT_COST) return "bcrypt cost too high";
  // yescrypt "$y$" + flags, N as log2 - 1 and r - 1 in crypt's base64.
  const yes = /^\$y\$[./0-9A-Za-z]([./0-9A-Za-z])([./0-9A-Za-z])\$/.exec(hash);
  if (yes) {
    const log2N = CRYPT_SALT_ALPHABET.indexOf(yes[1]!) + 1;
    const r = CRYPT_SALT_ALPHABET.indexOf(yes[2]!) + 1;
    if (128 * 2 ** log2N * r > MAX_YESCRYPT_MEMORY) {
      return "yescrypt memory too high";
    }
  }
  return undefined;
}

/**
 * A crypt(3) string: the system's libcrypt when we may load it (every
 * algorithm the system knows), else our own code for "$5$ $6$ $2?$".
 */
async function verifyCrypt(pw: Uint8Array, hash: string): Promise<Verdict> {
  const problem = cryptCostProblem(hash);
  if (problem) return unsupported(problem);
  const native = nativeCrypt();
  if (native) {
    // crypt(3) stops at NUL, as in Dovecot: such a password never matched.
    const result = native.crypt(pw, hash);
    if (result === undefined) {
      return unsupported(`crypt(3) cannot judge ${cryptId(hash)} hashes`);
    }
    return verdict(constantTimeEqual(octets(result), octets(hash)));
  }
  if (/^\$[56]\$/.test(hash)) return await verifyShaCrypt(pw, hash);
  if (/^\$2[aby]\$/.test(hash)) return await verifyBcrypt(pw, hash);
  return unsupported(
    `${cryptId(hash)} hashes need the system's libcrypt (--allow-ffi)`,
  );
}

// The password stays octets (non-UTF-8 ones work; no string copy of it).
// As crypt(3) in Dovecot, we recompute the whole string from the stored
// setting and compare: a stored "rounds=10" (clamped to 1000) never matches.
async function verifyShaCrypt(pw: Uint8Array, hash: string): Promise<Verdict> {
  const parsed = parseShaCrypt(hash);
  if (!parsed) return unsupported("malformed SHA-crypt hash");
  if ((parsed.rounds ?? 0) > MAX_SHA_ROUNDS) {
    return unsupported("SHA-crypt rounds too high");
  }
  const { salt, rounds, variant } = parsed;
  const actual = await shaCrypt(pw, salt, rounds, variant);
  return verdict(constantTimeEqual(octets(actual), octets(hash)));
}

const BCRYPT_SHAPE =
  /^\$2[aby]\$(\d\d)\$([./A-Za-z0-9]{22})([./A-Za-z0-9]{31})$/;
const BCRYPT_ALPHABET =
  "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Decode bcrypt's own base64 (other alphabet, no padding) to `size` octets. */
function decodeBcryptBase64(text: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let bits = 0, value = 0, n = 0;
  for (const char of text) {
    value = (value << 6) | BCRYPT_ALPHABET.indexOf(char);
    bits += 6;
    if (bits >= 8 && n < size) out[n++] = (value >> (bits -= 8)) & 0xff;
  }
  return out;
}

async function verifyBcrypt(pw: Uint8Array, hash: string): Promise<Verdict> {
  const shape = BCRYPT_SHAPE.exec(hash);
  const cost = Number(shape?.[1]);
  if (!shape || cost < 4 || cost > 31) {
    return unsupported("malformed bcrypt hash");
  }
  if (cost > MAX_BCRYPT_COST) return unsupported("bcrypt cost too high");
  // crypt_blowfish (Dovecot, libxcrypt) uses only the first 72 octets and
  // hash-wasm refuses longer input; it also refuses an empty password.
  if (pw.length === 0) return verdict(false);
  const encoded = await bcrypt({
    password: pw.subarray(0, 72),
    salt: decodeBcryptBase64(shape[2]!, 16),
    costFactor: cost,
    outputType: "encoded",
  });
  return verdict(
    constantTimeEqual(octets(encoded.slice(-31)), octets(shape[3]!)),
  );
}

const ARGON2_SHAPE =
  /^\$(argon2id|argon2i)\$v=19\$m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{22,})$/;

async function verifyArgon2(pw: Uint8Array, hash: string): Promise<Verdict> {
  const shape = ARGON2_SHAPE.exec(hash);
  if (!shape) return unsupported("malformed or unsupported argon2 hash");
  const [memorySize, iterations, parallelism] = [shape[2], shape[3], shape[4]]
    .map(Number);
  if (
    memorySize! > MAX_ARGON2_MEMORY_KIB ||
    iterations! > MAX_ARGON2_ITERATIONS ||
    parallelism! > MAX_ARGON2_LANES
  ) return unsupported("argon2 parameters too high");
  const expected = base64Decode(shape[6]!);
  const salt = base64Decode(shape[5]!);
  if (!expected || !salt) return unsupported("argon2 hash is not base64");
  const variant = shape[1] === "argon2id" ? "argon2id" : "argon2i";
  const native = nativeArgon2();
  if (native) {
    const actual = new Uint8Array(expected.length);
    const done = native.argon2(
      variant,
      pw,
      salt,
      iterations!,
      memorySize!,
      parallelism!,
      actual,
    );
    if (done) return verdict(constantTimeEqual(actual, expected));
  }
  const compute = variant === "argon2id" ? argon2id : argon2i;
  const actual = await compute({
    password: pw,
    salt,
    memorySize: memorySize!,
    iterations: iterations!,
    parallelism: parallelism!,
    hashLength: expected.length,
    outputType: "binary",
  });
  return verdict(constantTimeEqual(actual, expected));
}

const CRYPT_SALT_ALPHABET =
  "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const randomOctets = (n: number) => crypto.getRandomValues(new Uint8Array(n));

/** 16 random salt chars; the alphabet has 64 chars, so `& 63` is unbiased. */
const cryptSalt = () =>
  Array.from(randomOctets(16), (b) => CRYPT_SALT_ALPHABET[b & 63]).join("");

/**
 * Hash the password `pw` in `scheme` as Dovecot writes it, `{SCHEME}` prefix
 * included, e.g. `{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$salt$hash`.
 * Throws on an empty password (bcrypt cannot hash one).
 */
export async function hashPassword(
  pw: Uint8Array,
  scheme: WriteScheme,
): Promise<string> {
  if (pw.length === 0) throw new RangeError("Cannot hash an empty password");
  switch (scheme) {
    case "ARGON2ID": {
      const salt = randomOctets(16);
      const native = nativeArgon2();
      const key = new Uint8Array(ARGON2.hashLength);
      const { iterations: t, memorySize: m, parallelism: p } = ARGON2;
      if (native?.argon2("argon2id", pw, salt, t, m, p, key)) {
        const b64 = (b: Uint8Array) => btoa(latin1Decode(b)).replace(/=+$/, "");
        return `{ARGON2ID}$argon2id$v=19$m=${m},t=${t},p=${p}$${b64(salt)}$${
          b64(key)
        }`;
      }
      const encoded = await argon2id({ password: pw, salt, ...ARGON2 });
      return `{ARGON2ID}${encoded}`;
    }
    case "SHA512-CRYPT": // glibc's default 5000 rounds, so no "rounds=".
      return `{SHA512-CRYPT}${await shaCrypt(pw, cryptSalt(), undefined, 512)}`;
    case "BLF-CRYPT": {
      const [key, salt] = [pw.subarray(0, 72), randomOctets(16)];
      const encoded = await bcrypt({ password: key, salt, ...BCRYPT });
      // hash-wasm labels its output $2a$, but it has none of the old $2a$
      // sign-extension bug, so it is $2y$, the label Dovecot writes.
      return `{BLF-CRYPT}$2y$${encoded.slice(4)}`;
    }
  }
}

/**
 * Spend the time a wrong password would cost, for a user who does not
 * exist, so that response times do not tell which users exist. Verifies
 * against {@link DUMMY_HASHES}, whose parameters equal what we write.
 */
export async function burnTime(pw: Uint8Array, scheme: WriteScheme) {
  await verifyPassword(pw, DUMMY_HASHES[scheme]);
}

/**
 * The cost class of a stored field: its scheme plus the parameters that set
 * how long a check takes (Argon2 m/t/p, bcrypt cost, SHA-crypt rounds,
 * yescrypt and PBKDF2 parameters), never the salt or hash. Two fields of
 * one class cost the same to check; the passwd-file store spends an
 * unknown user's dummy check on the most common class in its file.
 *
 * @example costClass("{BLF-CRYPT}$2y$10$abc…") // "BLF-CRYPT $2y$10"
 */
export function costClass(stored: string): string {
  const { scheme, hash } = splitScheme(stored);
  if (!hash.startsWith("$")) return scheme;
  const parts = hash.split("$", 5);
  const id = parts[1] ?? "";
  let params = "";
  if (/^argon2/.test(id)) params = `$${parts[2]}$${parts[3]}`;
  else if (/^[56]$/.test(id) && parts[2]?.startsWith("rounds=")) {
    params = `$${parts[2]}`;
  } else if (/^(?:2[abxy]|y|gy|7)$/.test(id)) params = `$${parts[2]}`;
  else if (scheme === "PBKDF2") params = `$${parts[3]}`;
  return `${scheme} $${id}${params}`;
}
