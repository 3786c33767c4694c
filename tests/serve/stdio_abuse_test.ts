/**
 * stdio mode under abuse: the failure delay as no oracle, overlong lines,
 * a noisy back end with a pipelining client, a client that vanishes
 * mid-change, EOF in every state. Timings: failure delay 0.3 s, idle 1 s,
 * session 3 s, child 2 s.
 */

import assert from "node:assert/strict";
import { passwordOf } from "../support/accounts.ts";
import { bytes, hex } from "../support/bytes.ts";
import { alive } from "../support/procs.ts";
import { NEW, OLD, runs, WRONG } from "../support/rows.ts";
import { R } from "../support/pinned_replies.ts";
import { GREETING, Sandbox } from "../support/sandbox.ts";
import { ACCOUNTS, finish, standard, StdioServer } from "../support/stdio.ts";
import { sleep } from "../support/time.ts";

Deno.test("stdio: unknown user and wrong password look the same and both wait the failure delay", async () => {
  const times: Record<string, number[]> = { unknown: [], wrong: [] };
  const replies = new Set<string>();
  for (let i = 0; i < 3; i++) {
    for (
      const [kind, user, password] of [["unknown", "nobody", OLD], [
        "wrong",
        "bob",
        WRONG,
      ]]
    ) {
      await using box = await Sandbox.create(ACCOUNTS);
      await using server = new StdioServer(standard(box));
      await server.talk.reply();
      await server.talk.line(`user ${user}`);
      await server.talk.reply();
      await server.talk.line(`pass ${password}`);
      const sent = performance.now();
      assert.equal(await server.talk.reply(), R.authFailed);
      times[kind!]!.push(performance.now() - sent);
      await server.talk.closed();
      replies.add(server.talk.received);
      await finish(server, box);
    }
  }
  const median = (xs: number[]) => xs.toSorted((a, b) => a - b)[1]!;
  console.log(
    `failure delay: unknown ${times.unknown!.map(Math.round)} ms, wrong ${
      times.wrong!.map(Math.round)
    } ms`,
  );
  assert.deepEqual([...replies], [GREETING + R.userOk + R.authFailed]);
  assert.ok([...times.unknown!, ...times.wrong!].every((ms) => ms >= 300));
  assert.ok(Math.abs(median(times.unknown!) - median(times.wrong!)) < 50);
});

Deno.test("stdio: an overlong line gets Line too long as soon as the limit passes", async (t) => {
  for (
    const [name, size] of [["5 KiB", 5 << 10], ["100 KiB", 100 << 10], [
      "1 MiB",
      1 << 20,
    ]] as const
  ) {
    for (const prefix of ["user ", "user bob\r\npass "]) {
      await t.step(
        `${name} without LF ${
          prefix === "user " ? "as the user" : "as the password"
        }`,
        async () => {
          await using box = await Sandbox.create(ACCOUNTS);
          await using server = new StdioServer(standard(box));
          await server.talk.reply();
          const started = performance.now();
          const sending = server.talk.send(prefix, "p".repeat(size));
          if (prefix !== "user ") {
            assert.equal(await server.talk.reply(), R.userOk);
          }
          assert.equal(await server.talk.reply(), R.lineTooLong);
          await server.talk.closed();
          const ms = performance.now() - started;
          assert.ok(ms < 800, `took ${ms} ms (idle deadline is 1 s)`);
          await sending;
          await finish(server, box);
          assert.deepEqual(await box.ledger(), []);
        },
      );
    }
  }
});

Deno.test("stdio: a back end that talks on stdout never reaches a pipelining client", async () => {
  await using box = await Sandbox.create(ACCOUNTS);
  await using server = new StdioServer(standard(box));
  await server.talk.reply();
  await server.talk.line("user noisebob");
  assert.equal(await server.talk.reply(), R.userOk);
  await server.talk.send(`pass ${OLD}\r\nnewpass ${NEW}\r\nquit\r\n`);
  await server.talk.closed();
  assert.equal(
    server.talk.received,
    GREETING + R.userOk + R.passOk + R.changed + R.bye,
  );
  await finish(server, box);
  const ledger = await box.ledger();
  assert.deepEqual(runs(ledger), ["check:0", "set:0"]);
  assert.deepEqual(ledger.map((e) => e.env.FD0), ["/dev/null", "/dev/null"]);
  assert.equal(server.log.match(/stdout: 553 Sorry \(#5\.7\.1\)/g)?.length, 2);
});

Deno.test("stdio: a client that leaves while setpassword runs gets its change applied exactly once", async () => {
  await using box = await Sandbox.create(ACCOUNTS);
  await using server = new StdioServer(standard(box));
  await server.talk.reply();
  await server.talk.line("user slowbob");
  await server.talk.reply();
  await server.talk.line(`pass ${OLD}`);
  assert.equal(await server.talk.reply(), R.passOk);
  await server.talk.line(`newpass ${NEW}`);
  await sleep(300); // setpassword sleeps 1 s
  await server.vanish();
  await finish(server, box);
  assert.deepEqual(runs(await box.ledger()), ["check:0", "set:0"]);
  assert.equal(
    hex(passwordOf(await box.accounts(), "slowbob")!),
    hex(bytes(NEW)),
  );
  assert.match(server.log, /Password change for slowbob succeeded\n/);
});

Deno.test("stdio: EOF in every state ends the session cleanly", async (t) => {
  const rows: [string, string[], string, string[]][] = [
    ["right after the greeting", [], GREETING, []],
    ["after user", ["user bob\r\n"], GREETING + R.userOk, []],
    [
      "after a successful pass",
      ["user bob\r\n", `pass ${OLD}\r\n`],
      GREETING + R.userOk + R.passOk,
      ["check:0"],
    ],
    [
      "after the change",
      ["user bob\r\n", `pass ${OLD}\r\n`, `newpass ${NEW}\r\n`],
      GREETING + R.userOk + R.passOk + R.changed,
      ["check:0", "set:0"],
    ],
    [
      "in the middle of a line (discarded, never run)",
      ["user bob\r\n", `pass ${OLD}`],
      GREETING + R.userOk,
      [],
    ],
  ];
  for (const [name, lines, expected, expectedRuns] of rows) {
    await t.step(name, async () => {
      await using box = await Sandbox.create(ACCOUNTS);
      await using server = new StdioServer(standard(box));
      await server.talk.reply();
      for (const line of lines) {
        await server.talk.send(line);
        if (line.endsWith("\n")) await server.talk.reply();
      }
      await server.closeStdin();
      await server.talk.closed();
      assert.equal(server.talk.received, expected);
      await finish(server, box);
      assert.deepEqual(runs(await box.ledger()), expectedRuns);
    });
  }
  await t.step("the client vanishes before the reply to pass", async () => {
    await using box = await Sandbox.create(ACCOUNTS);
    await using server = new StdioServer(standard(box));
    await server.talk.reply();
    await server.talk.send(`user slowbob\r\npass ${OLD}\r\n`);
    await sleep(200);
    await server.vanish();
    await finish(server, box);
    const ledger = await box.ledger();
    assert.deepEqual(runs(ledger), ["check:0"]);
    assert.ok(ledger.every((e) => !alive(e.pid)));
  });
});
