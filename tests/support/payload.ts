/**
 * What well-formed octets look like: fd-3 payloads by shape, user names
 * and passwords by the validity rules of `doc/protocol.md` §3.
 *
 * @module
 */

/** Split octets at every NUL (a trailing NUL gives a last empty field). */
export function splitNul(payload: Uint8Array): Uint8Array[] {
  const fields: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i <= payload.length; i++) {
    if (i === payload.length || payload[i] === 0) {
      fields.push(payload.subarray(start, i));
      start = i + 1;
    }
  }
  return fields;
}

/** check: `u 0 o 0 0 0`; set: `u 0 o 0 0 n 0`, with u, o, n non-empty. */
export function hasShape(payload: Uint8Array, mode: "check" | "set"): boolean {
  const f = splitNul(payload).map((x) => x.length);
  return mode === "check"
    ? f.length === 5 && f[0]! > 0 && f[1]! > 0 && f[2] === 0 && f[3] === 0 &&
      f[4] === 0
    : f.length === 5 && f[0]! > 0 && f[1]! > 0 && f[2] === 0 && f[3]! > 0 &&
      f[4] === 0;
}

/** 1..255 octets, none below 0x21, no 0x7F. */
export function validUser(user: Uint8Array): boolean {
  return user.length >= 1 && user.length <= 255 &&
    user.every((b) => b > 0x20 && b !== 0x7f);
}

/** At least one octet, no NUL, CR or LF. */
export function validPassword(password: Uint8Array): boolean {
  return password.length >= 1 &&
    password.every((b) => b !== 0 && b !== 0x0d && b !== 0x0a);
}

/** Complete lines a client sent (LF-terminated, one CR before the LF dropped). */
export function clientLines(sent: Uint8Array): Uint8Array[] {
  const lines: Uint8Array[] = [];
  let start = 0;
  for (let lf = sent.indexOf(0x0a); lf >= 0; lf = sent.indexOf(0x0a, start)) {
    const end = lf > start && sent[lf - 1] === 0x0d ? lf - 1 : lf;
    lines.push(sent.subarray(start, end));
    start = lf + 1;
  }
  return lines;
}
