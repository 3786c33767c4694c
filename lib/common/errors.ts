/**
 * The one way to turn a caught value into text for a log line or a usage
 * error: its message when it is an `Error`, else its string form.
 *
 * @module
 */

/** `error.message` for an `Error`, `String(error)` for anything else thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
