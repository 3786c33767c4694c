/**
 * Octet/string conversions for the passwd-file back end, with web APIs
 * only: `node:buffer` would be loaded at every start of the single-file
 * bundle, because a bundler hoists a library's static imports.
 *
 * @module
 */

/** Octets to a string of code points 0..255 (lossless, unlike TextDecoder's "latin1"). */
export function latin1Decode(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** A string of code points 0..255 back to octets (higher code points keep their low byte). */
export function latin1Encode(text: string): Uint8Array {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0xff;
  return out;
}

/** Standard base64, padding optional (Dovecot and argon2 omit it); undefined when malformed. */
export function base64Decode(text: string): Uint8Array | undefined {
  try {
    return latin1Encode(atob(text));
  } catch {
    return undefined;
  }
}
