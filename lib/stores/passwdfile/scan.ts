/**
 * Find one user's line in a passwd-file by reading it in chunks, without
 * holding the whole file: a check holds at most `PASSWD_READ_SIZE` plus one
 * line. The whole file is always scanned, so that a user listed twice is
 * refused (as {@link findEntry} does) and a check costs the same wherever
 * the user's line is, or whether there is one. Same syntax rules as
 * ./file.ts `parsePasswdFile`: LF ends a line, a CR before it belongs to
 * the ending, blank lines, `#` comments and lines starting with `:` are
 * skipped, a line without `:` is an error.
 *
 * @module
 */

import { PASSWD_LINE_MAX, PASSWD_READ_SIZE } from "../../common/limits.ts";
import { latin1Decode } from "../../hash/octets.ts";
import type { PasswdEntry } from "./file.ts";

/** What a scan found, and the file's cost profile when asked for. */
export interface ScanResult {
  /** The user's entry, or undefined for an unknown user. */
  readonly entry: PasswdEntry | undefined;
  /** The file version scanned: inode, size and mtime. */
  readonly identity: string;
}

/** Octets 32 (space) and 9 (tab) only: a blank line. */
function blank(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    if (bytes[i] !== 0x20 && bytes[i] !== 0x09) return false;
  }
  return true;
}

/**
 * Scan `path` for `user`'s line. `field`, when given, sees every user's
 * password field in file order (a view valid during the call only): the
 * store builds its cost profile with it. Throws on I/O errors, a line without `:`, an over-long line, a
 * user listed twice, or a path that is not a regular file. `identity`
 * names the file version scanned (inode, size, mtime).
 */
export async function scanForUser(
  path: string,
  user: Uint8Array,
  field?: (password: Uint8Array) => void,
): Promise<ScanResult> {
  const file = await Deno.open(path, { read: true });
  try {
    const info = await file.stat();
    if (!info.isFile) throw new TypeError("not a regular file");
    const identity = `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
    let entry: PasswdEntry | undefined;
    let carry = new Uint8Array(0);
    let base = 0; // file offset of carry[0]
    let line = 1;
    const chunk = new Uint8Array(PASSWD_READ_SIZE);
    for (let eof = false; !eof;) {
      const n = await file.read(chunk);
      eof = n === null;
      let buf: Uint8Array;
      if (eof) buf = carry;
      else {
        buf = new Uint8Array(carry.length + n!);
        buf.set(carry);
        buf.set(chunk.subarray(0, n!), carry.length);
      }
      let from = 0;
      for (;;) {
        let stop = buf.indexOf(0x0a, from);
        if (stop < 0) {
          if (!eof || from >= buf.length) break;
          stop = buf.length; // the last line has no LF
        }
        const to = stop > from && buf[stop - 1] === 0x0d ? stop - 1 : stop;
        const first = buf[from];
        if (
          to > from && first !== 0x23 && first !== 0x3a && !blank(buf, from, to)
        ) {
          const colon = buf.indexOf(0x3a, from);
          if (colon < 0 || colon >= to) {
            throw new SyntaxError(`line ${line}: no ':' after the user name`);
          }
          let fieldEnd = buf.indexOf(0x3a, colon + 1);
          if (fieldEnd < 0 || fieldEnd > to) fieldEnd = to;
          const same = colon - from === user.length &&
            user.every((octet, i) => buf[from + i] === octet);
          if (same && entry) {
            throw new SyntaxError("the user is listed more than once");
          }
          field?.(buf.subarray(colon + 1, fieldEnd));
          if (same) {
            entry = {
              user: user.slice(),
              password: latin1Decode(buf.subarray(colon + 1, fieldEnd)),
              line,
              start: base + colon + 1,
              end: base + fieldEnd,
            };
          }
        }
        line++;
        from = stop + 1;
        if (stop >= buf.length) break;
      }
      carry = buf.slice(Math.min(from, buf.length));
      base += Math.min(from, buf.length);
      if (carry.length > PASSWD_LINE_MAX) {
        throw new RangeError(`line ${line}: longer than ${PASSWD_LINE_MAX}`);
      }
    }
    return { entry, identity };
  } finally {
    file.close();
  }
}
