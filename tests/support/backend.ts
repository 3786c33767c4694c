/**
 * The external back end wired to fakeauth, and a peer that collects the
 * lines the back end logs, for the child-runner tests.
 *
 * @module
 */

import type { Backend, Peer } from "../../lib/stores/backend.ts";
import { programBackend } from "../../lib/stores/programs/programs.ts";
import { shimStarter } from "../../lib/stores/programs/command.ts";
import type { Starter } from "../../lib/stores/programs/starter.ts";
import { FAKEAUTH, type Sandbox } from "./sandbox.ts";

/** Child deadline for tests that do not test the deadline. */
export const TIMEOUT = 5_000;

/** A peer whose children see the sandbox's variables (plus `extra`); `log` collects. */
export function testPeer(
  box: Sandbox,
  extra: Record<string, string> = {},
): { peer: Peer; log: string[] } {
  const log: string[] = [];
  const peer: Peer = {
    remoteIp: "127.0.0.1",
    env: box.env(extra),
    log: (m) => log.push(m),
  };
  return { peer, log };
}

/** `fakeauth check` as the chain, `fakeauth set` as PASSWORD_COMMAND. */
export function fakeBackend(
  childTimeoutMs = TIMEOUT,
  starter: Starter = shimStarter(),
): Backend {
  return programBackend({
    checkArgv: [FAKEAUTH, "check"],
    setArgv: [FAKEAUTH, "set"],
    childTimeoutMs,
    starter,
  });
}
