/**
 * A bounded soak of stdio mode under tcpserver (`doc/test-plan.md` case
 * 22 for stdio; SOAK_SESSIONS, default 300, 10 at a time, wall-clock cap):
 * every session ends as expected, tcpserver has no children and no
 * zombies, no stray fakeauth process is left, the ledger checker holds.
 * The listen-mode soak is `tests/serve/listen_soak_test.ts`.
 */

import assert from "node:assert/strict";
import { waitUntil } from "../../support/time.ts";
import { childrenOf } from "../../support/procs.ts";
import { SOAK_CAP_MS, SOAK_CONCURRENCY, SOAK_SESSIONS } from "./settings.ts";
import { marker } from "./backends.ts";
import { withTcpserver } from "./targets.ts";
import type { Injected } from "./faults.ts";
import { verifyAll } from "./checks.ts";
import { SOAK_KINDS, soakOne, strays } from "./soak.ts";
import { needs, testWith } from "../../support/tools.ts";

const test = testWith(needs(import.meta.url, "tcpserver"));

test(`leaks: soak of ${SOAK_SESSIONS} mixed stdio sessions under tcpserver, ${SOAK_CONCURRENCY} at a time`, async () => {
  await withTcpserver(async (target) => {
    const mark = marker();
    const sessions: Injected[] = [];
    const problems: string[] = [];
    let next = 0;
    const started = performance.now();
    const worker = async () => {
      while (
        next < SOAK_SESSIONS && performance.now() - started < SOAK_CAP_MS
      ) {
        const n = next++;
        const kind = SOAK_KINDS[n % SOAK_KINDS.length]!;
        const { session, problem } = await soakOne(target, kind, n, mark);
        sessions.push(session);
        if (problem) problems.push(problem);
      }
    };
    await Promise.all(Array.from({ length: SOAK_CONCURRENCY }, worker));
    const elapsed = performance.now() - started;
    await target.settle();
    const settled = performance.now() - started;
    console.log(
      `soak: ${sessions.length} sessions in ${(elapsed / 1000).toFixed(1)} s ` +
        `(${
          (sessions.length / elapsed * 1000).toFixed(1)
        }/s), all ended after ` +
        `${(settled / 1000).toFixed(1)} s, cap ${SOAK_CAP_MS / 1000} s`,
    );
    assert.equal(
      sessions.length,
      SOAK_SESSIONS,
      `stopped at the ${SOAK_CAP_MS} ms cap`,
    );
    assert.ok(settled < SOAK_CAP_MS, `took ${settled.toFixed(0)} ms`);
    assert.deepEqual(
      problems.slice(0, 5),
      [],
      `${problems.length} sessions went wrong`,
    );
    const keys = new Set(sessions.map((s) => s.key.session));
    assert.equal(keys.size, sessions.length, "a (pid, port) pair was reused");
    const childless = await waitUntil(
      () => childrenOf(target.root).length === 0,
      3_000,
    );
    assert.ok(
      childless,
      `tcpserver's children: ${JSON.stringify(childrenOf(target.root))}`,
    );
    const clean = await waitUntil(
      () => strays(target.box, target.root).length === 0,
      3_000,
    );
    assert.ok(
      clean,
      `stray processes: ${JSON.stringify(strays(target.box, target.root))}`,
    );
    await verifyAll(target, sessions);
  });
});
