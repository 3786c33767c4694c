/**
 * The built-in back end: check and change passwords in a Dovecot
 * passwd-file directly, without external programs.
 *
 * @module
 */

import type { Backend, Outcome } from "../backend.ts";
import { type PasswdEntry, updatePasswdFile } from "./file.ts";
import { scanForUser } from "./scan.ts";
import { hashNewPassword } from "../policy.ts";
import { latin1Decode } from "../../hash/octets.ts";
import { PROFILE_SAMPLES } from "../../common/limits.ts";
import {
  costClass,
  DEFAULT_SCHEME,
  dummyVerify,
  HashBusyError,
  make,
  type Verdict,
  verify,
  type WriteScheme,
} from "../../hash/mod.ts";
import { errorMessage } from "../../common/errors.ts";

/** Settings of {@link createPasswdFileBackend}. */
export interface PasswdFileOptions {
  /** The passwd-file; read at each check, never before. */
  readonly path: string;
  /** The scheme new passwords are hashed in. */
  readonly scheme: WriteScheme;
  /** Fewest characters a new password may have; see {@link passwordLength}. */
  readonly minPasswordLength: number;
  /** One line per call, never containing a password. */
  readonly log: (line: string) => void;
}

/**
 * What an unknown user's dummy check verifies against: a field of the most
 * common cost class in the file (ties: the first seen), so that the dummy
 * costs what most real users' checks cost. Recomputed when the file
 * changes (inode, size, mtime).
 */
interface Profile {
  readonly identity: string;
  readonly dummy: string | undefined;
}

/** The clear-text schemes as octets, each followed by `}` or `.`. */
const CLEAR = ["PLAIN", "CLEAR", "CLEARTEXT"].map((s) =>
  Array.from(s, (c) => c.charCodeAt(0))
);

/** Does a password field start with `{PLAIN}`, `{CLEAR.B64}`…? No string made. */
function clearField(field: Uint8Array): boolean {
  if (field[0] !== 0x7b) return false;
  return CLEAR.some((name) =>
    name.every((c, i) => ((field[i + 1] ?? 0) & 0xdf) === c) &&
    (field[name.length + 1] === 0x7d || field[name.length + 1] === 0x2e)
  );
}

/**
 * Tallies cost classes while a scan walks the file: clear-text fields all
 * of them (octet compares), cost classes on a sample of about
 * `PROFILE_SAMPLES` fields spread over the file, since decoding every
 * field of a 200,000-user file cost ~1 s of CPU.
 */
function profiler(fileSize: number) {
  const counts = new Map<string, { count: number; sample: string }>();
  // ~100 octets a line.
  const stride = Math.max(1, Math.floor(fileSize / 100 / PROFILE_SAMPLES));
  let clear = 0;
  let seen = 0;
  return {
    field(bytes: Uint8Array) {
      if (clearField(bytes)) clear++;
      if (seen++ % stride !== 0) return;
      const password = latin1Decode(bytes);
      const key = costClass(password);
      const found = counts.get(key);
      if (found) found.count++;
      else counts.set(key, { count: 1, sample: password });
    },
    result(identity: string): Profile & { clear: number } {
      let best: { count: number; sample: string } | undefined;
      for (const c of counts.values()) {
        if (!best || c.count > best.count) best = c;
      }
      return { identity, dummy: best?.sample, clear };
    },
  };
}

/** The line that warns about clear-text passwords, or undefined. */
function clearTextWarning(path: string, clear: number): string | undefined {
  return clear > 0
    ? `${path}: ${clear} users have clear-text passwords`
    : undefined;
}

/**
 * What `--check-config` says about the file: the warnings a first check
 * would log. Scans the whole file once (a check does the same).
 */
export async function passwdFileWarnings(path: string): Promise<string[]> {
  const info = await Deno.stat(path);
  const tally = profiler(info.size);
  // ":" never occurs in a user field, so no line matches: only the tally runs.
  const scan = await scanForUser(path, new Uint8Array([0x3a]), tally.field);
  const warning = clearTextWarning(path, tally.result(scan.identity).clear);
  return warning === undefined ? [] : [warning];
}

/**
 * Make a {@link Backend} over a passwd-file. Nothing is read here: the
 * file is scanned for one user's line at each `pass` (see ./scan.ts), so
 * a connection that never sends one costs no file I/O and no hashing.
 * Logs a warning, once per process, when users have clear-text passwords.
 */
export function createPasswdFileBackend(
  options: PasswdFileOptions,
): Promise<Backend> {
  const { path, scheme, minPasswordLength, log } = options;
  let profile: Profile | undefined;
  let warnedClear = false;

  /** The dummy check of an unknown user, or of a hash we cannot judge. */
  async function dummy(pw: Uint8Array): Promise<void> {
    if (profile?.dummy === undefined) return await dummyVerify(scheme, pw);
    const verdict = await verify(profile.dummy, pw);
    if (verdict.kind === "unsupported" && verdict.busy) {
      throw new HashBusyError(verdict.reason);
    }
  }

  /**
   * Find the user and verify `pw`; an entry only when the password
   * matches. An unknown user and a user whose hash cannot be judged get
   * the same answer and cost the same (a dummy check in the file's most
   * common cost class); the log tells them apart. A full hash pool is a
   * temporary failure for both.
   */
  async function authenticate(
    user: Uint8Array,
    pw: Uint8Array,
  ): Promise<Outcome | PasswdEntry> {
    let entry: PasswdEntry | undefined;
    try {
      // Tally cost classes only when the file changed since the last scan.
      const info = await Deno.stat(path);
      const stale = profile?.identity !==
        `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
      const tally = profiler(info.size);
      const scan = await scanForUser(
        path,
        user,
        stale ? tally.field : undefined,
      );
      entry = scan.entry;
      if (stale) {
        const result = tally.result(scan.identity);
        profile = result;
        const warning = clearTextWarning(path, result.clear);
        if (warning !== undefined && !warnedClear) {
          warnedClear = true;
          log(`warning: ${warning}`);
        }
      }
    } catch (error) {
      return temporary(`passwd file ${path}: ${message(error)}`);
    }
    try {
      if (!entry) {
        await dummy(pw);
        return { kind: "rejected", reason: "unknown user" };
      }
      const verdict = await verify(entry.password, pw);
      if (verdict.kind === "match") return entry;
      if (verdict.kind === "unsupported" && !verdict.busy) {
        await dummy(pw);
        return {
          kind: "rejected",
          reason: `cannot judge the hash (${verdict.reason}); ` +
            "answered as for an unknown user",
        };
      }
      return outcomeOf(verdict);
    } catch (error) {
      return temporary(message(error));
    }
  }

  return Promise.resolve({
    async check(user, oldPassword) {
      const found = await authenticate(user, oldPassword);
      return "kind" in found ? found : { kind: "ok" };
    },
    async change(user, oldPassword, newPassword) {
      const found = await authenticate(user, oldPassword);
      if ("kind" in found) return found;
      const hashed = await hashNewPassword(
        oldPassword,
        newPassword,
        minPasswordLength,
        scheme,
      );
      if (typeof hashed !== "string") return hashed;
      // Hashing happened outside the lock; under it we only re-read, and
      // re-verify the old password if the user's field changed meanwhile
      // (an unchanged field gives the same verdict), so writers wait for
      // each other for milliseconds, not for a hash.
      return await updatePasswdFile(path, user, async (current) => {
        if (!current) return keep({ kind: "rejected", reason: "unknown user" });
        if (current.password !== found.password) {
          const verdict = await verify(current.password, oldPassword);
          if (verdict.kind !== "match") return keep(outcomeOf(verdict));
        }
        return { kind: "write", password: hashed };
      }, { warn: log });
    },
  });
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
  const line = `demo:${await make(DEFAULT_SCHEME, octets)}\n`;
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
