/**
 * Named regressions for the model (`random_test.ts`): fixed scripts run
 * through the same round under tcpserver and in listen mode.
 */

import type { Script } from "./scripts.ts";
import { round } from "./round.ts";
import { TARGETS } from "./targets.ts";
import { needs, testWith } from "../../support/tools.ts";

/** The property's run function for one fixed set of scripts, for named regressions. */
async function replay(
  mode: keyof typeof TARGETS,
  scripts: readonly Script[],
): Promise<void> {
  await TARGETS[mode]((target) => round(target, scripts));
}

/** A script with defaults, for named tests. */
function scriptOf(part: Partial<Script>): Script {
  return {
    kind: "plain",
    happy: 0,
    tail: [],
    send: "step",
    end: "eof",
    eol: "\r\n",
    partial: null,
    cuts: [],
    ...part,
  };
}

const test = testWith(needs(import.meta.url, "tcpserver"));

test("model: fixed scripts — a full change, a set that hangs while the client leaves, a check that never reads fd 3, an unterminated quit", async (t) => {
  const scripts = [
    scriptOf({ happy: 3 }),
    scriptOf({ kind: "set-hang", happy: 3, end: "drop", eol: "\n" }),
    scriptOf({ kind: "noread", happy: 2, send: "pipeline", cuts: [3, 9] }),
    scriptOf({ happy: 1, partial: { op: "quit", verb: "lower", arg: false } }),
  ];
  for (const mode of ["tcpserver", "listen"] as const) {
    await t.step(mode, () => replay(mode, scripts));
  }
});
