/**
 * The system's own hashing libraries through Deno FFI, used inside the hash
 * workers (./pool.ts) so that a blocking call holds a worker, never the
 * event loop:
 *
 * - libcrypt (libxcrypt, `libcrypt.so.1`), `crypt_rn`: every crypt(3)
 *   string the system can verify (`$1$ $5$ $6$ $2a$ $2b$ $2y$ $y$ $7$`,
 *   DES), as Dovecot's CRYPT family does;
 * - libsodium (`libsodium.so.23`), `crypto_pwhash`: Argon2i/Argon2id at
 *   native speed, the library Dovecot itself uses for them (measured here:
 *   80 ms per Dovecot-default ARGON2ID hash against 240 ms in WebAssembly).
 *
 * Either is optional: outside a hash worker, without `--allow-ffi` or
 * without the library the
 * loaders return undefined and ./schemes.ts falls back to its pure
 * TypeScript/WebAssembly code where it has some.
 *
 * @module
 */

/** Size of libxcrypt's `struct crypt_data`, the scratch area of crypt_rn. */
const CRYPT_DATA_SIZE = 32_768;

/** crypt(3) from the system's libcrypt. */
export interface NativeCrypt {
  /**
   * `crypt(password, setting)`, or undefined when libcrypt refuses the
   * setting (an algorithm it does not know, a malformed string).
   */
  crypt(password: Uint8Array, setting: string): string | undefined;
}

/** The raw Argon2 of libsodium. */
export interface NativeArgon2 {
  /**
   * Argon2 (version 0x13) of `password` into `out`; false when libsodium
   * refuses the parameters (it takes only 16-octet salts, one lane, and
   * for Argon2i at least 3 passes), so that the caller can fall back.
   */
  argon2(
    variant: "argon2i" | "argon2id",
    password: Uint8Array,
    salt: Uint8Array,
    iterations: number,
    memoryKiB: number,
    lanes: number,
    out: Uint8Array,
  ): boolean;
}

/** The Worker name of the hash workers (./pool.ts). */
export const HASH_WORKER_NAME = "qmail-poppass-hash";

/**
 * Only inside a hash worker, with `--allow-ffi`: a blocking FFI call on the
 * main thread would stall every session, so there the pure code runs.
 */
const allowed = (): boolean => {
  if ((globalThis as { name?: string }).name !== HASH_WORKER_NAME) return false;
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
};

let cryptLoaded: NativeCrypt | undefined | null = null;
let sodiumLoaded: NativeArgon2 | undefined | null = null;

/** NUL-terminated copy of `bytes`; the caller wipes it. */
function cString(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** libcrypt's crypt_rn, loaded once per worker; undefined when unavailable. */
export function nativeCrypt(): NativeCrypt | undefined {
  if (cryptLoaded !== null) return cryptLoaded;
  cryptLoaded = undefined;
  if (!allowed()) return undefined;
  try {
    const lib = Deno.dlopen("libcrypt.so.1", {
      crypt_rn: {
        parameters: ["buffer", "buffer", "buffer", "i32"],
        result: "pointer",
      },
    });
    const data = new Uint8Array(CRYPT_DATA_SIZE);
    cryptLoaded = {
      crypt(password, setting) {
        const phrase = cString(password);
        const salt = cString(new TextEncoder().encode(setting));
        try {
          const result = lib.symbols.crypt_rn(
            phrase,
            salt,
            data,
            CRYPT_DATA_SIZE,
          );
          if (result === null) return undefined;
          const text = new Deno.UnsafePointerView(result).getCString();
          // libxcrypt's failure tokens start with '*'; no hash does.
          return text.startsWith("*") ? undefined : text;
        } finally {
          phrase.fill(0);
          data.fill(0);
        }
      },
    };
  } catch {
    cryptLoaded = undefined;
  }
  return cryptLoaded;
}

/** libsodium's crypto_pwhash, loaded once per worker; undefined when unavailable. */
export function nativeArgon2(): NativeArgon2 | undefined {
  if (sodiumLoaded !== null) return sodiumLoaded;
  sodiumLoaded = undefined;
  if (!allowed()) return undefined;
  try {
    const lib = Deno.dlopen("libsodium.so.23", {
      sodium_init: { parameters: [], result: "i32" },
      crypto_pwhash: {
        parameters: [
          "buffer",
          "u64",
          "buffer",
          "u64",
          "buffer",
          "u64",
          "usize",
          "i32",
        ],
        result: "i32",
      },
    });
    if (lib.symbols.sodium_init() < 0) return undefined;
    // crypto_pwhash_ALG_ARGON2I13 and crypto_pwhash_ALG_ARGON2ID13.
    const ALG = { argon2i: 1, argon2id: 2 } as const;
    sodiumLoaded = {
      argon2(variant, password, salt, iterations, memoryKiB, lanes, out) {
        if (lanes !== 1 || salt.length !== 16 || out.length < 16) return false;
        // Copies: FFI needs ArrayBuffer-backed views.
        const pw = password.slice();
        try {
          return lib.symbols.crypto_pwhash(
            out as Uint8Array<ArrayBuffer>,
            BigInt(out.length),
            pw,
            BigInt(pw.length),
            salt.slice(),
            BigInt(iterations),
            BigInt(memoryKiB) * 1024n,
            ALG[variant],
          ) === 0;
        } finally {
          pw.fill(0);
        }
      },
    };
  } catch {
    sodiumLoaded = undefined;
  }
  return sodiumLoaded;
}
