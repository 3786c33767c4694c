/**
 * Fault injection and leak checks (`doc/test-plan.md` promises 4 and 6,
 * cases 13-16): every back-end fault, in the check step and in the set
 * step, through `main.ts` under `tcpserver -R -H -l localhost`, in listen
 * mode, and in listen mode with fd3spawn. After each fault: nothing alive
 * in the child's process group, every process seen in the server's tree
 * during the session gone (no zombie), no child left to tcpserver or to the
 * listen server, the listen server's descriptors back at their baseline,
 * the log bounded.
 */

import { buildStarter, missing } from "../../support/fd3exec.ts";
import { type Target, withListener, withTcpserver } from "./targets.ts";
import { FAULTS, inject } from "./faults.ts";
import { assertNoMarkers, warmUp } from "./checks.ts";
import { needs, testWith } from "../../support/tools.ts";

/** Every fault in both steps through one target. */
async function allFaults(target: Target, t: Deno.TestContext): Promise<void> {
  const { session, baseline } = await warmUp(target);
  const sessions = [session];
  const times: string[] = [];
  for (const fault of FAULTS) {
    for (const step of ["check", "set"] as const) {
      const started = performance.now();
      await t.step(
        `${fault.name} in the ${step} step leaves nothing behind`,
        async () => {
          sessions.push(await inject(target, fault, step, baseline));
        },
      );
      times.push(
        `${fault.name}/${step} ${(performance.now() - started).toFixed(0)} ms`,
      );
    }
  }
  assertNoMarkers(
    sessions.map((s) => s.marker),
    target.log(),
    sessions.map((s) => s.transcript),
    [],
  );
  console.log(
    `${target.mode}: ${FAULTS.length * 2} faults injected: ${times.join(", ")}`,
  );
}

const test = testWith(needs(import.meta.url, "tcpserver"));

test("leaks: every back-end fault through main.ts under tcpserver", async (t) => {
  await withTcpserver((target) => allFaults(target, t));
});

Deno.test("leaks: every back-end fault through main.ts in listen mode", async (t) => {
  await withListener((target) => allFaults(target, t));
});

Deno.test({
  name:
    `leaks: every back-end fault through main.ts in listen mode with fd3spawn${
      missing("spawner") ? ` (ignored: ${missing("spawner")})` : ""
    }`,
  ignore: missing("spawner") !== undefined,
  fn: async (t) => {
    const { path } = await buildStarter("spawner");
    await withListener((target) => allFaults(target, t), path);
  },
});
