/**
 * Compatibility path: `Scratch` is now `Sandbox` (`sandbox.ts`), the
 * certificates are in `certs.ts`, `run` is in `tools.ts`.
 *
 * @module
 */

import { type FakeauthFiles, Sandbox } from "./sandbox.ts";

export { type Cert, makeCert, servedFingerprint } from "./certs.ts";
export { FAKEAUTH, type FakeauthFiles } from "./sandbox.ts";
export { run } from "./tools.ts";

/** Compatibility name for `Sandbox`. */
export const Scratch = Sandbox;
/** Compatibility name for `Sandbox`. */
export type Scratch = Sandbox;

/** Compatibility form of `box.fakeauth(extra)`. */
export function fakeauth(
  box: Sandbox,
  extra: Record<string, string> = {},
): FakeauthFiles {
  return box.fakeauth(extra);
}
