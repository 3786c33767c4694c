/**
 * Compatibility path: the one socket client lives in `client.ts`
 * (`latin1` in `bytes.ts`).
 *
 * @module
 */

export { Client, closeAll, type Ending, type Target } from "./client.ts";
export { latin1 } from "./bytes.ts";
