/**
 * `main.ts` under Debian's real `tcpserver -R -H -l localhost` on
 * 127.0.0.1, driven by raw sockets: the happy path and every row of the
 * reply table byte for byte, the ucspi-tcp environment reaching the back
 * end, clients that leave without reading, and connect-to-greeting time.
 */

import assert from "node:assert/strict";
import { passwordOf } from "../support/accounts.ts";
import { bytes, changePayload, checkPayload, hex } from "../support/bytes.ts";
import type { LedgerEntry } from "../support/ledger.ts";
import {
  assertNoSecrets,
  NEW,
  OLD,
  ROW_ACCOUNTS,
  ROWS,
  runs,
} from "../support/rows.ts";
import { R } from "../support/pinned_replies.ts";
import {
  baseEnv,
  FAKEAUTH,
  GREETING,
  HOST,
  MAIN,
  Sandbox,
  SHORT,
} from "../support/sandbox.ts";
import { converse, type Transcript } from "../support/talk.ts";
import type { Client } from "../support/client.ts";
import { Tcpserver } from "../support/tcpserver.ts";
import {
  forEachLauncher,
  type Launcher,
  STDIO_LAUNCHERS,
} from "../support/fd3exec.ts";
import { needs, testWith } from "../support/tools.ts";

/** Every test here runs tcpserver. */
const NEEDS = needs(import.meta.url, "tcpserver");
const test = testWith(NEEDS);

/** Under tcpserver a run belongs to the client port tcpserver reported to it. */
const byClientPort = (e: LedgerEntry) => e.env.TCPREMOTEPORT ?? "?";

function serve(
  box: Sandbox,
  launch: { readonly flags: readonly string[] } = { flags: [] },
): Promise<Tcpserver> {
  return Tcpserver.start({
    program: [MAIN, ...SHORT, ...launch.flags, HOST, FAKEAUTH, "check"],
    env: { ...baseEnv(), ...box.env(), PASSWORD_COMMAND: `${FAKEAUTH} set` },
  });
}

/** Wait for every session, then: no secret or stack trace logged, checker holds. */
async function settle(
  server: Tcpserver,
  box: Sandbox,
  transcripts: Transcript[],
) {
  const statuses = await server.idle();
  assert.ok(statuses.every((code) => code === 0), `session exits: ${statuses}`);
  assertNoSecrets(server.log);
  assert.doesNotMatch(server.log, /\n\s+at |Uncaught|panicked/);
  await box.verify(transcripts, byClientPort);
}

forEachLauncher(
  "tcpserver: the happy path, byte for byte, with the ucspi-tcp environment",
  happyPath,
  STDIO_LAUNCHERS,
  NEEDS,
);

async function happyPath(launch: Launcher) {
  await using box = await Sandbox.create(ROW_ACCOUNTS);
  await using server = await serve(box, launch);
  await using client = await server.connect();
  const received = await converse(client.talk, [
    "user bob",
    `pass ${OLD}`,
    `newpass ${NEW}`,
    "quit",
  ]);
  assert.equal(received, GREETING + R.userOk + R.passOk + R.changed + R.bye);
  await settle(server, box, [client.talk.transcript()]);
  const ledger = await box.ledger();
  assert.deepEqual(ledger.map((e) => [e.mode, hex(e.payload), e.exit]), [
    ["check", hex(checkPayload("bob", OLD)), "0"],
    ["set", hex(changePayload("bob", OLD, NEW)), "0"],
  ]);
  for (const entry of ledger) {
    assert.equal(entry.env.PROTO, "TCP");
    assert.equal(entry.env.TCPREMOTEIP, "127.0.0.1");
    assert.equal(entry.env.TCPREMOTEPORT, String(client.localPort));
    assert.equal(entry.env.TCPLOCALIP, "127.0.0.1");
    assert.equal(entry.env.TCPLOCALPORT, String(server.port));
    assert.equal(entry.env.FD0, "/dev/null");
    assert.match(
      entry.env.FD1!,
      /^pipe:/,
      "a back end's stdout must not be the socket",
    );
    assert.equal(entry.env.SOCKETS, "0", "a back end must hold no socket");
  }
  assert.equal(hex(passwordOf(await box.accounts(), "bob")!), hex(bytes(NEW)));
  assert.match(
    server.log,
    /qmail-poppass\[\d+\] ip=127\.0\.0\.1: Password change for bob succeeded\n/,
  );
}

test("tcpserver: every row of the reply table gets its exact octets", async (t) => {
  for (const row of ROWS) {
    await t.step(row.name, async () => {
      await using box = await Sandbox.create(ROW_ACCOUNTS);
      await using server = await serve(box);
      await using client = await server.connect();
      const received = await converse(client.talk, row.lines);
      assert.equal(received, GREETING + row.replies.join(""));
      await settle(server, box, [client.talk.transcript()]);
      assert.deepEqual(runs(await box.ledger()), row.runs);
    });
  }
});

test("tcpserver: failures are logged with the client's address", async () => {
  await using box = await Sandbox.create(ROW_ACCOUNTS);
  await using server = await serve(box);
  await using client = await server.connect();
  await converse(client.talk, ["user bob", "pass Wrong-mk3 pw"]);
  await settle(server, box, [client.talk.transcript()]);
  assert.match(
    server.log,
    /ip=127\.0\.0\.1: authentication failed for bob: rejected, exit 1\n/,
  );
});

test("tcpserver: clients that leave without reading change the password once", async (t) => {
  const rows: [string, (c: Client) => Promise<void>][] = [
    ["sends everything, half-closes, reads nothing", async (c) => {
      await c.talk.send(
        `user bob\r\npass ${OLD}\r\nnewpass ${NEW}\r\nquit\r\n`,
      );
      await c.closeWrite();
    }],
    [
      "reads up to the change, sends quit and closes (SquirrelMail)",
      async (c) => {
        await c.talk.reply();
        for (const line of ["user bob", `pass ${OLD}`, `newpass ${NEW}`]) {
          await c.talk.line(line);
          await c.talk.reply();
        }
        await c.talk.line("quit");
        await c.close();
      },
    ],
    ["closes right after sending newpass", async (c) => {
      await c.talk.reply();
      for (const line of ["user bob", `pass ${OLD}`]) {
        await c.talk.line(line);
        await c.talk.reply();
      }
      await c.talk.line(`newpass ${NEW}`);
      await c.close();
    }],
  ];
  for (const [name, act] of rows) {
    await t.step(`a client that ${name}`, async () => {
      await using box = await Sandbox.create(ROW_ACCOUNTS);
      await using server = await serve(box);
      await using client = await server.connect();
      await act(client);
      await server.idle();
      await client.close();
      await settle(server, box, [client.talk.transcript()]);
      assert.deepEqual(runs(await box.ledger()), ["check:0", "set:0"]);
      const after = await box.accounts();
      assert.equal(hex(passwordOf(after, "bob")!), hex(bytes(NEW)));
      assert.match(server.log, /Password change for bob succeeded\n/);
    });
  }
});

test("tcpserver: connect-to-greeting time over 20 connections", async () => {
  await using box = await Sandbox.create(ROW_ACCOUNTS);
  await using server = await serve(box);
  const times: number[] = [];
  const transcripts: Transcript[] = [];
  for (let i = 0; i < 20; i++) {
    const started = performance.now();
    await using client = await server.connect();
    assert.equal(await client.talk.reply(), GREETING);
    times.push(performance.now() - started);
    await client.talk.line("quit");
    assert.equal(await client.talk.reply(), R.bye);
    await client.talk.closed();
    transcripts.push(client.talk.transcript());
  }
  await settle(server, box, transcripts);
  const sorted = times.toSorted((a, b) => a - b);
  const median = (sorted[9]! + sorted[10]!) / 2;
  console.log(
    `connect-to-greeting under tcpserver: median ${median.toFixed(1)} ms, ` +
      `min ${sorted[0]!.toFixed(1)} ms, max ${
        sorted[19]!.toFixed(1)
      } ms (n=20)`,
  );
  assert.ok(median < 2_000);
});
