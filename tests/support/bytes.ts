/**
 * Octet helpers for tests: hex both ways, building payloads and lines from
 * text and numbers, and a printable rendering for assertion messages.
 *
 * @module
 */

const encoder = new TextEncoder();

/** Lower-case hex of some octets, no separators. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Octets from hex text; throws on odd length or a non-hex digit. */
export function unhex(text: string): Uint8Array {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new SyntaxError(`not hex: ${JSON.stringify(text.slice(0, 40))}`);
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  }
  return out;
}

/** A part of an octet string: text (UTF-8), one octet, or octets. */
export type Part = string | number | Uint8Array;

/**
 * Concatenate parts into octets.
 *
 * @example
 * ```ts
 * bytes("bob", 0, "old", 0, 0, 0); // the check payload for bob/old
 * ```
 */
export function bytes(...parts: Part[]): Uint8Array {
  const chunks = parts.map((p) =>
    typeof p === "string"
      ? encoder.encode(p)
      : typeof p === "number"
      ? Uint8Array.of(p)
      : p
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** The check payload of `doc/protocol.md` §4: `user 0 old 0 0 0`. */
export function checkPayload(user: Part, old: Part): Uint8Array {
  return bytes(user, 0, old, 0, 0, 0);
}

/** The change payload: `user 0 old 0 0 new 0`. */
export function changePayload(user: Part, old: Part, next: Part): Uint8Array {
  return bytes(user, 0, old, 0, 0, next, 0);
}

/** True when both octet strings are equal. */
export function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((octet, i) => octet === b[i]);
}

/** True when `needle` occurs in `haystack`. */
export function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  if (needle.length === 0) return true;
  for (
    let i = haystack.indexOf(needle[0]!);
    i >= 0 && i + needle.length <= haystack.length;
    i = haystack.indexOf(needle[0]!, i + 1)
  ) {
    if (same(haystack.subarray(i, i + needle.length), needle)) return true;
  }
  return false;
}

/** Printable ASCII stays, everything else becomes `\xNN`; for messages. */
export function show(data: Uint8Array): string {
  let out = "";
  for (const b of data) {
    out += b >= 0x20 && b < 0x7f && b !== 0x5c
      ? String.fromCharCode(b)
      : b === 0x0d
      ? "\\r"
      : b === 0x0a
      ? "\\n"
      : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** Decode as Latin-1 so every octet maps to one character (exact, lossless). */
export function latin1(data: Uint8Array): string {
  let out = "";
  for (const b of data) out += String.fromCharCode(b);
  return out;
}
