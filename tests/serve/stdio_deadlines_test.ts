/**
 * stdio mode and its deadlines: slowloris, silent and chatty clients (idle
 * and session deadlines), and back ends that hang or fork (child deadline,
 * process group). Timings: idle 1 s, session 3 s (2 s where noted), child 2 s.
 */

import assert from "node:assert/strict";
import { alive, groupMembers } from "../support/procs.ts";
import { sleep, waitUntil } from "../support/time.ts";
import { NEW, OLD } from "../support/rows.ts";
import { R } from "../support/pinned_replies.ts";
import { GREETING, Sandbox } from "../support/sandbox.ts";
import { ACCOUNTS, finish, standard, StdioServer } from "../support/stdio.ts";
import { converse } from "../support/talk.ts";

Deno.test("stdio: deadlines close slow, silent and chatty clients", async (t) => {
  /** Greet, then send `drip` one octet every 200 ms until the server closes. */
  async function timed(
    prefixLines: string[],
    drip: string,
    extra: string[] = [],
  ) {
    await using box = await Sandbox.create(ACCOUNTS);
    await using server = new StdioServer(standard(box, { args: extra }));
    await server.talk.reply();
    for (const line of prefixLines) {
      await server.talk.line(line);
      await server.talk.reply();
    }
    const started = performance.now();
    for (let i = 0; drip !== "" && !server.talk.incoming.ended && i < 40; i++) {
      await server.talk.send(drip[i % drip.length]!);
      await sleep(200);
    }
    await server.talk.closed();
    const seconds = (performance.now() - started) / 1000;
    await finish(server, box);
    return { seconds, received: server.talk.received, log: server.log };
  }
  await t.step(
    "one octet every 200 ms, never LF: closed at the idle deadline",
    async () => {
      const { seconds, received, log } = await timed([], "user bob");
      assert.ok(Math.abs(seconds - 1) <= 0.5, `closed after ${seconds} s`);
      assert.equal(received, GREETING + R.timeout);
      assert.match(log, /idle deadline passed/);
    },
  );
  await t.step("the same after a valid user line", async () => {
    const { seconds, received } = await timed(["user bob"], "pass x");
    assert.ok(Math.abs(seconds - 1) <= 0.5, `closed after ${seconds} s`);
    assert.equal(received, GREETING + R.userOk + R.timeout);
  });
  await t.step("a silent client is closed at the idle deadline", async () => {
    const { seconds, received } = await timed([], "");
    assert.ok(Math.abs(seconds - 1) <= 0.5, `closed after ${seconds} s`);
    assert.equal(received, GREETING + R.timeout);
  });
  await t.step(
    "a client that keeps answering is closed at the session deadline",
    async () => {
      await using box = await Sandbox.create(ACCOUNTS);
      await using server = new StdioServer(
        standard(box, { args: ["--session-timeout", "2"] }),
      );
      const started = performance.now();
      await server.talk.reply();
      for (const line of ["user bob", `pass ${OLD}`, `newpass ${NEW}`]) {
        await sleep(600);
        await server.talk.line(line);
        await server.talk.reply();
      }
      await server.talk.closed();
      const seconds = (performance.now() - started) / 1000;
      assert.ok(seconds >= 1.9 && seconds <= 2.4, `closed after ${seconds} s`);
      assert.equal(
        server.talk.received,
        GREETING + R.userOk + R.passOk + R.changed + R.timeout,
      );
      await finish(server, box);
      assert.match(server.log, /session deadline passed/);
    },
  );
});

Deno.test("stdio: a hanging or forking back end is answered in time and leaves no process", async (t) => {
  await t.step(
    "a check that hangs gets the temporary failure at the child deadline",
    async () => {
      await using box = await Sandbox.create([["hangbob", OLD]]);
      await using server = new StdioServer(standard(box));
      await server.talk.reply();
      await server.talk.line("user hangbob");
      await server.talk.reply();
      await server.talk.line(`pass ${OLD}`);
      const sent = performance.now();
      assert.equal(await server.talk.reply(), R.authTemporary);
      const seconds = (performance.now() - sent) / 1000;
      assert.ok(seconds >= 2 && seconds < 3, `answered after ${seconds} s`);
      await finish(server, box);
      const [entry] = await box.ledger();
      assert.equal(entry!.exit, "hang");
      assert.ok(
        await waitUntil(() => groupMembers(entry!.pid).length === 0, 1_000),
      );
      assert.match(
        server.log,
        /authentication failed for hangbob: temporary, timeout after 2 s/,
      );
    },
  );
  await t.step(
    "a check that leaves a grandchild succeeds and the grandchild is gone",
    async () => {
      await using box = await Sandbox.create([["grandbob", OLD]]);
      await using server = new StdioServer(standard(box));
      const started = performance.now();
      const received = await converse(server.talk, [
        "user grandbob",
        `pass ${OLD}`,
        "quit",
      ]);
      assert.ok(performance.now() - started < 2_000);
      assert.equal(received, GREETING + R.userOk + R.passOk + R.bye);
      await finish(server, box);
      const grandchild = Number((await box.ledger())[0]!.env.GRANDCHILD);
      assert.ok(
        await waitUntil(() => !alive(grandchild), 1_000),
        `sleep ${grandchild} survived`,
      );
    },
  );
});
