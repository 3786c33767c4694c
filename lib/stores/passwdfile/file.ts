/**
 * Read, parse and rewrite a Dovecot passwd-file
 * (`user:{SCHEME}hash[:uid:gid:gecos:home:shell:extra]`).
 *
 * The file is handled as octets: a line is split at LF only, a CR before the
 * LF belongs to the line ending, and a rewrite replaces the octets of one
 * password field and nothing else, so every other octet (comments, other
 * users, extra fields, CRLF, a missing final newline) survives unchanged.
 * Strings here are latin1, one char per octet, so string offsets are file
 * offsets and no decoding can alter anything.
 *
 * @module
 */

import { latin1Decode, latin1Encode } from "../../hash/octets.ts";
import type { Outcome } from "../backend.ts";
import { errorMessage } from "../../common/errors.ts";

/** One user's line, as found in the file. */
export interface PasswdEntry {
  /** The user field, raw octets. */
  readonly user: Uint8Array;
  /** The password field (`{SCHEME}hash`), one char per octet. */
  readonly password: string;
  /** 1-based line number, for messages. */
  readonly line: number;
  /** Octet offset of the password field's first octet in the file. */
  readonly start: number;
  /** Octet offset just past the password field. */
  readonly end: number;
}

/** A parsed file: its exact octets and its users, keyed by latin1 name. */
export interface PasswdFile {
  readonly bytes: Uint8Array;
  readonly entries: ReadonlyMap<string, PasswdEntry>;
  /** Users listed more than once: we refuse to guess which line counts. */
  readonly ambiguous: ReadonlySet<string>;
}

/** A bigger file is refused: it is read whole into memory on every check. */
export const MAX_FILE_SIZE = 64 * 1024 * 1024;

/** How long a change waits for another writer's lock before giving up. */
export const LOCK_TIMEOUT_MS = 10_000;
const LOCK_POLL_MS = 20;

const latin1 = latin1Decode;

/**
 * Parse passwd-file octets. Blank lines (spaces and tabs only), `#`
 * comments and lines starting with `:` (no user; Dovecot skips them too)
 * are kept but not read. Throws SyntaxError for a line without `:`, since
 * we could not tell where its password field ends.
 */
export function parsePasswdFile(bytes: Uint8Array): PasswdFile {
  const text = latin1(bytes);
  const entries = new Map<string, PasswdEntry>();
  const ambiguous = new Set<string>();
  for (let from = 0, line = 1; from < text.length; line++) {
    const newline = text.indexOf("\n", from);
    const stop = newline < 0 ? text.length : newline;
    // A CR before the LF is part of the line ending: a CRLF file must not
    // put CR into the last field of a line.
    const to = stop > from && text[stop - 1] === "\r" ? stop - 1 : stop;
    const start = from;
    from = stop + 1;
    const body = text.slice(start, to);
    if (/^[ \t]*$/.test(body) || body[0] === "#" || body[0] === ":") continue;
    const colon = body.indexOf(":");
    if (colon < 0) {
      throw new SyntaxError(`line ${line}: no ':' after the user name`);
    }
    const fieldEnd = body.indexOf(":", colon + 1);
    const name = body.slice(0, colon);
    const entry: PasswdEntry = {
      user: latin1Encode(name),
      password: body.slice(colon + 1, fieldEnd < 0 ? undefined : fieldEnd),
      line,
      start: start + colon + 1,
      end: start + (fieldEnd < 0 ? body.length : fieldEnd),
    };
    if (entries.has(name)) ambiguous.add(name);
    else entries.set(name, entry);
  }
  return { bytes, entries, ambiguous };
}

/**
 * The entry for `user` (compared octet for octet), or undefined. Throws
 * SyntaxError when the user is listed more than once.
 */
export function findEntry(
  file: PasswdFile,
  user: Uint8Array,
): PasswdEntry | undefined {
  const name = latin1(user);
  if (file.ambiguous.has(name)) {
    throw new SyntaxError("the user is listed more than once");
  }
  return file.entries.get(name);
}

/** Read and parse the file at `path`; throws on I/O and syntax errors. */
export async function readPasswdFile(path: string): Promise<PasswdFile> {
  const info = await Deno.stat(path);
  if (!info.isFile) throw new TypeError("not a regular file");
  if (info.size > MAX_FILE_SIZE) {
    throw new RangeError(`larger than ${MAX_FILE_SIZE} octets`);
  }
  return parsePasswdFile(await Deno.readFile(path));
}

/**
 * The file's octets with `entry`'s password field replaced by `password`,
 * which must be a hash: printable ASCII without `:`.
 */
export function replacePassword(
  file: PasswdFile,
  entry: PasswdEntry,
  password: string,
): Uint8Array {
  if (!/^[\x21-\x39\x3b-\x7e]+$/.test(password)) {
    throw new RangeError(
      "A password field must be printable ASCII without ':'",
    );
  }
  const out = new Uint8Array(
    file.bytes.length - (entry.end - entry.start) + password.length,
  );
  out.set(file.bytes.subarray(0, entry.start));
  out.set(latin1Encode(password), entry.start);
  out.set(file.bytes.subarray(entry.end), entry.start + password.length);
  return out;
}

/** What the caller of {@link updatePasswdFile} wants done with the entry. */
export type Decision =
  | { readonly kind: "write"; readonly password: string }
  | { readonly kind: "keep"; readonly outcome: Outcome };

/** Knobs for {@link updatePasswdFile}; all optional. */
export interface UpdateOptions {
  /** Give up waiting for the lock after this long (default 10 s). */
  readonly lockTimeoutMs?: number;
  /** Told about trouble after the new file is in place (folder fsync). */
  readonly warn?: (message: string) => void;
  /** Test seam: runs once the temporary file is complete, before rename. */
  readonly afterTempWritten?: (tempPath: string) => Promise<void>;
}

/**
 * Change one user's password field under an exclusive lock on `PATH.lock`
 * (the data file itself is replaced by rename, so it cannot carry the
 * lock). `decide` sees the entry as re-read under the lock and returns the
 * new field or an outcome. The new file is written to a temporary file in
 * the same folder, synced, given the old file's mode and owner, and renamed
 * over the old one; the folder is synced last. Any failure leaves the file
 * untouched and is a `temporary` outcome naming the cause.
 */
export async function updatePasswdFile(
  path: string,
  user: Uint8Array,
  decide: (entry: PasswdEntry | undefined) => Promise<Decision>,
  options: UpdateOptions = {},
): Promise<Outcome> {
  let lock: Deno.FsFile | undefined;
  try {
    // A symlinked file is rewritten where it really lives; the lock follows.
    const real = await Deno.realPath(path);
    lock = await acquireLock(`${real}.lock`, options.lockTimeoutMs);
    await removeStaleTemps(real, options.warn);
    const file = await readPasswdFile(real);
    const entry = findEntry(file, user);
    const decision = await decide(entry);
    if (decision.kind === "keep") return decision.outcome;
    if (!entry) throw new TypeError("cannot write an absent entry");
    const bytes = replacePassword(file, entry, decision.password);
    await replaceFile(real, bytes, options);
    return { kind: "ok" };
  } catch (error) {
    return {
      kind: "temporary",
      reason: `passwd file ${path}: ${message(error)}`,
    };
  } finally {
    lock?.close();
  }
}

const message = errorMessage;

/** Open (creating) the lock file and poll for the flock within a deadline. */
async function acquireLock(
  path: string,
  timeoutMs = LOCK_TIMEOUT_MS,
): Promise<Deno.FsFile> {
  const lock = await Deno.open(path, {
    read: true,
    write: true,
    create: true,
    mode: 0o600,
  });
  const deadline = Date.now() + timeoutMs;
  // tryLock rather than lock(): a blocking flock cannot be abandoned, and a
  // stuck writer must not hold every session forever.
  while (!(await lock.tryLock(true))) {
    if (Date.now() >= deadline) {
      lock.close();
      throw new Error(`lock ${path} still held after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
  return lock;
}

/** Write `bytes` next to `path` and rename over it; see updatePasswdFile. */
async function replaceFile(
  path: string,
  bytes: Uint8Array,
  options: UpdateOptions,
): Promise<void> {
  const old = await Deno.stat(path);
  const { dir } = splitPath(path);
  const temp = tempPath(path);
  // 0600 until the real mode is set: hashes must never be world-readable.
  const file = await Deno.open(temp, {
    write: true,
    createNew: true,
    mode: 0o600,
  });
  try {
    for (let done = 0; done < bytes.length;) {
      done += await file.write(bytes.subarray(done));
    }
    // Owner first: chown may clear mode bits, chmod then sets them exactly.
    // Only when they differ, so that a non-root writer of its own file works.
    const now = await file.stat();
    if (now.uid !== old.uid || now.gid !== old.gid) {
      await Deno.chown(temp, old.uid, old.gid);
    }
    await Deno.chmod(temp, old.mode! & 0o7777);
    await file.sync();
    file.close();
    await options.afterTempWritten?.(temp);
    await Deno.rename(temp, path);
  } catch (error) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
  await syncFolder(dir).catch((error) =>
    options.warn?.(
      `${path} replaced, but syncing ${dir} failed: ${message(error)}`,
    )
  );
}

/**
 * Remove the temporary files of earlier changes that never got renamed
 * (the writer was killed). Only the lock holder writes them, so under the
 * lock every one matching {@link tempPath}'s pattern is stale.
 */
async function removeStaleTemps(
  path: string,
  warn: ((message: string) => void) | undefined,
): Promise<void> {
  const { dir, base } = splitPath(path);
  const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const stale = new RegExp(`^\\.${escaped}\\.\\d+\\.[0-9a-z]+\\.tmp$`);
  for await (const item of Deno.readDir(dir)) {
    if (!item.isFile || !stale.test(item.name)) continue;
    await Deno.remove(`${dir}/${item.name}`).catch(() => {});
    warn?.(`removed ${dir}/${item.name}, left by an interrupted change`);
  }
}

/** The folder and the name of `path`. */
function splitPath(path: string): { dir: string; base: string } {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  return { dir, base: path.slice(slash + 1) };
}

/** A new temporary file name next to `path`: `.NAME.PID.RANDOM.tmp`. */
function tempPath(path: string): string {
  const { dir, base } = splitPath(path);
  const random = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  return `${dir}/.${base}.${Deno.pid}.${random}.tmp`;
}

/** fsync a folder so that the rename itself survives a crash. */
async function syncFolder(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}
