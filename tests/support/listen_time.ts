/**
 * Compatibility path: the waiting helpers live in `time.ts`.
 *
 * @module
 */

export { pool, sleep, timed, until, within } from "./time.ts";
