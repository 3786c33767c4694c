/**
 * One-line log records on fd 2. Client-supplied text goes through
 * `sanitize` so it can neither forge lines nor fields; passwords never
 * reach this module.
 *
 * @module
 */

import { LOG_TEXT_MAX } from "./limits.ts";

/** Where finished log lines go (fd 2 in production, an array in tests). */
export type LogSink = (line: string) => void;

/**
 * Make client or child text safe for one log line: every octet outside
 * 0x21..0x7E (0x20..0x7E with `allowSpace`) becomes `?`, and the result is
 * cut at `max` characters.
 */
export function sanitize(
  text: Uint8Array | string,
  options: { readonly allowSpace?: boolean; readonly max?: number } = {},
): string {
  const low = options.allowSpace ? 0x20 : 0x21;
  const max = options.max ?? LOG_TEXT_MAX;
  const bytes = typeof text === "string"
    ? new TextEncoder().encode(text)
    : text;
  let out = "";
  for (let i = 0; i < bytes.length && out.length < max; i++) {
    const octet = bytes[i]!;
    out += octet >= low && octet <= 0x7e ? String.fromCharCode(octet) : "?";
  }
  return out;
}

/** A logger bound to one session: every line carries its id and client IP. */
export interface SessionLog {
  /** Write one event line; `message` must already be sanitised where needed. */
  (message: string): void;
}

/**
 * Lines about a session look like
 * `qmail-poppass[4711] ip=192.0.2.7: Password change for bob succeeded`.
 * The IP comes right after the id so that fail2ban's filter can anchor on it.
 */
export function sessionLog(sink: LogSink, id: string, ip: string): SessionLog {
  const prefix = `qmail-poppass[${sanitize(id)}] ip=${sanitize(ip)}: `;
  return (message) => sink(prefix + message);
}

/** Lines not about one session: `qmail-poppass[4711]: listening on …`. */
export function processLog(
  sink: LogSink,
  id: string,
): (message: string) => void {
  const prefix = `qmail-poppass[${sanitize(id)}]: `;
  return (message) => sink(prefix + message);
}

/** A sink that writes each line to fd 2, synchronously, so no line is lost on exit. */
export function stderrSink(): LogSink {
  const encoder = new TextEncoder();
  return (line) => {
    const bytes = encoder.encode(line + "\n");
    let written = 0;
    try {
      while (written < bytes.length) {
        written += Deno.stderr.writeSync(bytes.subarray(written));
      }
    } catch {
      // A closed log descriptor must not take sessions down with it.
    }
  };
}
