/**
 * Model-based testing (`doc/test-plan.md` case 19) against the real
 * program: fast-check generates 3-5 concurrent sessions per run (back-end
 * faults, any keyword case, CRLF or LF, pipelined or stepwise, ended by
 * EOF, a disconnect or the idle deadline), runs them against `main.ts`
 * under `tcpserver -R -H -l localhost`, in listen mode, and in listen mode
 * with fd3spawn, and checks every run against the model (`model.ts`), the
 * ledger checker, the failure delay and a secrets scan.
 *
 * Environment: MODEL_SEED (default fixed), MODEL_RUNS (runs per mode),
 * MODEL_PATH (replay a failure's path), MODEL_SHRINK=0 (stop at the first
 * failure without shrinking).
 */

import { buildStarter, missing } from "../../support/fd3exec.ts";
import { RUNS, SEED } from "./settings.ts";
import { summary } from "./round.ts";
import { check, withListener, withTcpserver } from "./targets.ts";
import { needs, testWith } from "../../support/tools.ts";

const test = testWith(needs(import.meta.url, "tcpserver"));

test(`model: stdio under tcpserver, ${RUNS} runs of 3-5 concurrent sessions (seed ${SEED})`, async () => {
  await withTcpserver((target) => check(target, SEED));
  summary("tcpserver");
});

Deno.test(`model: listen mode, ${RUNS} runs of 3-5 concurrent sessions (seed ${SEED + 1})`, async () => {
  await withListener((target) => check(target, SEED + 1));
  summary("listen");
});

Deno.test({
  name:
    `model: listen mode with fd3spawn, ${RUNS} runs of 3-5 concurrent sessions (seed ${
      SEED + 2
    })${missing("spawner") ? ` (ignored: ${missing("spawner")})` : ""}`,
  ignore: missing("spawner") !== undefined,
  fn: async () => {
    const { path } = await buildStarter("spawner");
    await withListener((target) => check(target, SEED + 2), path);
    summary("listen with fd3spawn");
  },
});
