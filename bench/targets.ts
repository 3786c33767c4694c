/**
 * The servers `deno task bench` measures, in one import: the kit of built
 * pieces (`kit.ts`), starting each server on a loopback port
 * (`servers.ts`), and the spawn floor (`floor.ts`).
 *
 * @module
 */

export { HOSTNAME, type Kit, prepareKit, type Target } from "./kit.ts";
export {
  type Starter,
  starterArgs,
  startListen,
  startTcpserver,
  stdioCommand,
} from "./servers.ts";
export { type FloorOptions, runFloor, spawnFloor } from "./floor.ts";
export { which } from "./system.ts";
