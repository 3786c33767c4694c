/**
 * The built-in back end: check and change passwords in a Dovecot
 * passwd-file directly, without external programs.
 *
 * @module
 */

import type { Backend, Outcome } from "../backend.ts";
import {
  findEntry,
  type PasswdEntry,
  readPasswdFile,
  updatePasswdFile,
} from "./file.ts";
import {
  burnTime,
  DEFAULT_SCHEME,
  hashPassword,
  isClearText,
  type Verdict,
  verifyPassword,
  type WriteScheme,
} from "../../hash/schemes.ts";
import { errorMessage } from "../../common/errors.ts";

/** Settings of {@link createPasswdFileBackend}. */
export interface PasswdFileOptions {
  /** The passwd-file; it must exist and parse when the back end is made. */
  readonly path: string;
  /** The scheme new passwords are hashed in. */
  readonly scheme: WriteScheme;
  /** Fewest characters a new password may have; see {@link passwordLength}. */
  readonly minPasswordLength: number;
  /** One line per call, never containing a password. */
  readonly log: (line: string) => void;
}

/**
 * At most this many hash computations run at once; the rest queue. The
 * libraries compute synchronously, so one hash holds the only JS thread
 * while it runs (~0.5 s for Argon2; a Worker would be needed to avoid
 * that). The queue bounds memory (hash-wasm gives each Argon2 call its own
 * 64 MiB of wasm memory) and, with one event-loop turn before each
 * computation, serves other sessions' I/O between hashes rather than after
 * a burst of them.
 */
export const MAX_CONCURRENT_HASHES = 2;

/**
 * Make a {@link Backend} over a passwd-file. Throws when the file cannot
 * be read or parsed, so that a bad path fails at start-up, not per login.
 * Logs a warning when users have clear-text passwords.
 */
export async function createPasswdFileBackend(
  options: PasswdFileOptions,
): Promise<Backend> {
  const { path, scheme, minPasswordLength, log } = options;
  const file = await readPasswdFile(path).catch((error) => {
    throw new Error(`Cannot use passwd file ${path}: ${message(error)}`);
  });
  const clear = [...file.entries.values()].filter((e) =>
    isClearText(e.password)
  );
  if (clear.length > 0) {
    log(`warning: ${path}: ${clear.length} users have clear-text passwords`);
  }
  const limit = limiter(MAX_CONCURRENT_HASHES);
  const verify = (pw: Uint8Array, entry: PasswdEntry) =>
    limit(() => verifyPassword(pw, entry.password));

  /** Find the user and verify `pw`; an entry only when the password matches. */
  async function authenticate(
    user: Uint8Array,
    pw: Uint8Array,
  ): Promise<Outcome | PasswdEntry> {
    let entry: PasswdEntry | undefined;
    try {
      entry = findEntry(await readPasswdFile(path), user);
    } catch (error) {
      return temporary(`passwd file ${path}: ${message(error)}`);
    }
    if (!entry) {
      // Unknown users cost what a wrong password costs, so response time
      // does not tell who has an account.
      await limit(() => burnTime(pw, scheme));
      return { kind: "rejected", reason: "unknown user" };
    }
    const verdict = await verify(pw, entry);
    return verdict.kind === "match" ? entry : outcomeOf(verdict);
  }

  return {
    async check(user, oldPassword) {
      const found = await authenticate(user, oldPassword);
      return "kind" in found ? found : { kind: "ok" };
    },
    async change(user, oldPassword, newPassword) {
      const found = await authenticate(user, oldPassword);
      if ("kind" in found) return found;
      const refusal = refuseNewPassword(
        oldPassword,
        newPassword,
        minPasswordLength,
      );
      if (refusal) return refusal;
      let hashed: string;
      try {
        hashed = await limit(() => hashPassword(newPassword, scheme));
      } catch (error) {
        return temporary(`cannot hash the new password: ${message(error)}`);
      }
      // Hashing happened outside the lock; under it we only re-read, and
      // re-verify the old password if the user's field changed meanwhile
      // (an unchanged field gives the same verdict), so writers wait for
      // each other for milliseconds, not for a hash.
      return await updatePasswdFile(path, user, async (current) => {
        if (!current) return keep({ kind: "rejected", reason: "unknown user" });
        if (current.password !== found.password) {
          const verdict = await verify(oldPassword, current);
          if (verdict.kind !== "match") return keep(outcomeOf(verdict));
        }
        return { kind: "write", password: hashed };
      }, { warn: log });
    },
  };
}

const message = errorMessage;
const temporary = (reason: string): Outcome => ({ kind: "temporary", reason });
const keep = (outcome: Outcome) => ({ kind: "keep", outcome }) as const;

function outcomeOf(verdict: Verdict): Outcome {
  if (verdict.kind === "match") return { kind: "ok" };
  if (verdict.kind === "mismatch") {
    return { kind: "rejected", reason: "wrong password" };
  }
  return temporary(verdict.reason);
}

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

/** A semaphore: run at most `max` tasks at once, the rest in arrival order. */
export function limiter(max: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (running < max) running++;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    try {
      await new Promise((resolve) => setTimeout(resolve, 0));
      return await task();
    } finally {
      // Hand the slot straight to the next waiter, or give it back.
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/**
 * First run: create `path` (mode 0600) with the user `demo` and a random
 * 16-character password hashed in the default scheme, and log that
 * password once: the single deliberate exception to "never log a password",
 * so that a new installation can be tried at once. An existing file, or one
 * created meanwhile by someone else, is left alone.
 */
export async function ensureDemoPasswdFile(
  path: string,
  log: (line: string) => void,
): Promise<void> {
  try {
    await Deno.lstat(path);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  // 16 base32 chars = 80 random bits; lower case is easy to type.
  const password = Array.from(
    crypto.getRandomValues(new Uint8Array(16)),
    (b) => BASE32[b & 31],
  ).join("");
  const octets = new TextEncoder().encode(password);
  const line = `demo:${await hashPassword(octets, DEFAULT_SCHEME)}\n`;
  octets.fill(0);
  // Write aside, then link into place: the link fails if the file appeared
  // meanwhile, and nobody ever sees a half-written file.
  const temp = `${path}.${Deno.pid}.demo.tmp`;
  await Deno.writeTextFile(temp, line, { createNew: true, mode: 0o600 });
  try {
    await Deno.link(temp, path);
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    return;
  } finally {
    await Deno.remove(temp);
  }
  log(`demo account created in ${path}: user demo password ${password}`);
}
