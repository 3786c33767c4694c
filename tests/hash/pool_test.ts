/**
 * The hash workers: bounded (at most HASH_WORKERS running, HASH_QUEUE
 * waiting, the rest refused at once as busy), off the event loop, and
 * writing what Dovecot reads.
 */

import assert from "node:assert/strict";
import { HASH_QUEUE, HASH_WORKERS } from "../../lib/common/limits.ts";
import {
  closeHashPool,
  dummyVerify,
  HashBusyError,
  make,
  verify,
  WRITE_SCHEMES,
} from "../../lib/hash/mod.ts";
import { poolState } from "../../lib/hash/pool.ts";
import { needs } from "../support/tools.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
// doveadm pw -s ARGON2ID -p x, with m raised to 256 MiB by hand: a check
// that takes ~0.35 s natively (the verdict is a mismatch, the cost is real).
const HEAVY = "{ARGON2ID}$argon2id$v=19$m=262144,t=3,p=1$" +
  "SfJ3v+TSvL1fM/h2Y76aOQ$o0nB27QCCnra2zCZxjr8p1DvMRyZLBuIHJHsGETPQXA";
const ARGON2 = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$" +
  "SfJ3v+TSvL1fM/h2Y76aOQ$o0nB27QCCnra2zCZxjr8p1DvMRyZLBuIHJHsGETPQXA";

Deno.test("over the bound a job is refused at once, the others all finish", async () => {
  try {
    const total = HASH_WORKERS + HASH_QUEUE + 6;
    const jobs = Array.from({ length: total }, () => verify(ARGON2, utf8("x")));
    assert.deepEqual(poolState(), {
      workers: HASH_WORKERS,
      running: HASH_WORKERS,
      queued: HASH_QUEUE,
    });
    // make() and dummyVerify() throw the typed error instead.
    await assert.rejects(make("ARGON2ID", utf8("x")), HashBusyError);
    await assert.rejects(dummyVerify("ARGON2ID", utf8("x")), HashBusyError);
    const verdicts = await Promise.all(jobs);
    const busy = verdicts.filter((v) => v.kind === "unsupported");
    assert.equal(busy.length, 6);
    assert.deepEqual(busy[0], {
      kind: "unsupported",
      reason: `hashing busy: ${HASH_WORKERS} running, ` +
        `${HASH_QUEUE} queued`,
      busy: true,
    });
    assert.equal(
      verdicts.filter((v) => v.kind === "mismatch").length,
      total - 6,
    );
    assert.deepEqual(poolState().running + poolState().queued, 0);
  } finally {
    closeHashPool();
  }
});

Deno.test("hashing never stalls the event loop", async () => {
  try {
    await verify(ARGON2, utf8("warm up")); // workers started
    let last = performance.now();
    let worst = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last);
      last = now;
    }, 5);
    const durations: number[] = [];
    const timed = async (
      job: Promise<unknown>,
      started = performance.now(),
    ) => {
      await job;
      durations.push(performance.now() - started);
    };
    try {
      // One job at a time: a hashing worker then competes with the event
      // loop for one core only (the machine has two).
      await timed(verify(HEAVY, utf8("a")));
      await timed(make("ARGON2ID", utf8("b")));
      await timed(verify(HEAVY, utf8("c")));
    } finally {
      clearInterval(timer);
    }
    // On the event loop, the loop would stall for a whole job at least.
    // Relative, not absolute: on a loaded 2-core machine the OS alone can
    // hold the main thread for a few hundred ms while both workers run.
    const shortest = Math.min(...durations);
    assert.ok(
      worst < shortest / 2,
      `the loop stalled ${worst.toFixed(0)} ms; shortest job ${
        shortest.toFixed(0)
      } ms`,
    );
  } finally {
    closeHashPool();
  }
});

Deno.test({
  name: "every write scheme's hash is accepted by doveadm pw -t",
  ignore: needs(import.meta.url, "doveadm").ignore,
  async fn() {
    try {
      for (const scheme of WRITE_SCHEMES) {
        const hash = await make(scheme, utf8("pässwörd"));
        assert.ok(hash.startsWith(`{${scheme}}`), hash);
        const out = await new Deno.Command("doveadm", {
          args: ["pw", "-t", hash, "-p", "pässwörd"],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.ok(
          out.success,
          `${scheme}: ${new TextDecoder().decode(out.stderr)}`,
        );
        assert.deepEqual(await verify(hash, utf8("pässwörd")), {
          kind: "match",
        });
      }
    } finally {
      closeHashPool();
    }
  },
});

Deno.test("a worker that dies fails its job, and the pool recovers", async () => {
  try {
    await verify(ARGON2, utf8("x"));
    // Closing the pool while a job runs is the same path as a crashed worker.
    const pending = verify(HEAVY, utf8("x"));
    closeHashPool();
    const verdict = await pending;
    assert.equal(verdict.kind, "unsupported");
    assert.deepEqual(await verify("{PLAIN}x", utf8("x")), { kind: "match" });
  } finally {
    closeHashPool();
  }
});
