/**
 * stdio mode under abuse: the failure delay as no oracle, overlong lines,
 * slowloris and silent clients, session deadlines, a noisy back end with a
 * pipelining client, a client that vanishes mid-change, EOF in every state.
 * Timings: failure delay 0.3 s, idle 1 s, session 3 s, child 2 s.
 */

import assert from "node:assert/strict";
import { passwordOf } from "./helpers/accounts.ts";
import { bytes, hex } from "./helpers/bytes.ts";
import { alive, groupMembers, waitUntil } from "./helpers/procs.ts";
import {
  assertNoSecrets,
  NEW,
  OLD,
  R,
  ROW_ACCOUNTS,
  runs,
  WRONG,
} from "./helpers/rows.ts";
import { GREETING, Sandbox } from "./helpers/sandbox.ts";
import { standard, StdioServer } from "./helpers/stdio.ts";
import { converse, sleep } from "./helpers/talk.ts";

const ACCOUNTS = [...ROW_ACCOUNTS, ["noisebob", OLD], [
  "slowbob",
  OLD,
]] as const;

/** Exit 0, no stack trace, no secret in the log, the ledger checker holds. */
async function finish(server: StdioServer, box: Sandbox): Promise<void> {
  assert.deepEqual(await server.exit(), { code: 0, signal: null });
  assertNoSecrets(server.log);
  assert.doesNotMatch(server.log, /\n\s+at |Uncaught|panicked|error:/i);
  await box.verify([server.talk.transcript()]);
}

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
