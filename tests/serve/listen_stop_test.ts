/**
 * Graceful stop in listen mode (case 28 of `doc/test-plan.md`):
 * on SIGTERM or SIGINT the server stops accepting, lets a session whose
 * setpassword is running finish, closes idle sessions, exits 0 and leaves
 * no process behind.
 */

import assert from "node:assert/strict";
import { writeAccounts } from "../support/accounts.ts";
import { bytes, hex } from "../support/bytes.ts";
import { readLedger } from "../support/ledger.ts";
import { Client, closeAll } from "../support/client.ts";
import { Sandbox } from "../support/sandbox.ts";
import { childrenOf, inGroups } from "../support/procs.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { Server } from "../support/listen_server.ts";
import { timed, until, within } from "../support/time.ts";

/**
 * True when a new connection is not served: refused, or (in the few
 * milliseconds before the runtime really closes the listening socket) reset
 * or closed by the kernel without a single byte, never a greeting.
 */
async function servesNothing(hostname: string, port: number) {
  let client: Client;
  try {
    client = await Client.connect({ hostname, port }, 3_000);
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused ||
      error instanceof Deno.errors.ConnectionReset;
  }
  try {
    return (await client.rest(3_000)).data === "";
  } finally {
    await client.close();
  }
}

Deno.test("SIGTERM lets a running change finish, closes idle sessions and exits 0", async () => {
  await using scratch = await Sandbox.create();
  // setpassword sleeps 1 s before it changes the account.
  const fa = scratch.fakeauth({ FAKEAUTH_BEHAVE_SET: "slow" });
  await writeAccounts(fa.accounts, [["carol", "old"]]);
  await using server = await Server.start({
    options: ["--listen", "127.0.0.1:0", "--listen", "[::1]:0"],
    ...fa,
  });
  const open: Client[] = [];
  try {
    const busy = await Client.connect({
      hostname: "127.0.0.1",
      port: server.port(0),
    });
    const idle = await Client.connect({
      hostname: "::1",
      port: server.port(1),
    });
    open.push(busy, idle);
    assert.equal(await idle.line(), greeting());
    assert.equal(await busy.line(), greeting());
    assert.equal(await busy.ask("user carol"), R.userOk);
    assert.equal(await busy.ask("pass old"), R.passOk);
    await busy.send("newpass new\r\n");
    const children = await until(
      () => {
        // A child leads its own group once its setsid() is done; before
        // that it still sits in ours (and the test runner's).
        const now = childrenOf(server.pid).filter((c) => c.pgid === c.pid);
        return now.length > 0 ? now : undefined;
      },
      3_000,
      "setpassword running",
    );
    const groups = new Set(children.map((c) => c.pgid));

    const from = server.logs.length;
    const { value: status, ms } = await timed(async () => {
      server.signal("SIGTERM");
      await server.waitForLog(/stopping: 2 sessions still open$/, 3_000, from);
      assert.ok(await servesNothing("127.0.0.1", server.port(0)));
      assert.ok(await servesNothing("::1", server.port(1)));
      assert.deepEqual(await idle.rest(3_000), { data: "", ending: "eof" });
      assert.equal(await busy.line(3_000), R.changed);
      assert.deepEqual(await busy.rest(3_000), { data: "", ending: "eof" });
      return await within(server.status, 5_000, "exit after SIGTERM");
    });
    console.log(`SIGTERM to exit: ${ms.toFixed(0)} ms`);
    assert.equal(status.code, 0);
    assert.equal(status.signal, null);
    await server.waitForLog(/\]: stopped$/, 1_000, from);
    const runs = await readLedger(fa.ledger);
    // fakeauth is exec'd by the shim, so its pid names its process group.
    for (const run of runs) groups.add(run.pid);
    assert.deepEqual(inGroups(groups), [], "a back-end process survived");
    const sets = runs.filter((e) => e.mode === "set");
    assert.deepEqual(sets.map((e) => e.exit), ["0"]);
    const accounts = await Deno.readTextFile(fa.accounts);
    assert.equal(accounts, `${hex(bytes("carol"))}:${hex(bytes("new"))}\n`);
  } finally {
    await closeAll(open);
  }
});

Deno.test("SIGINT with only idle sessions closes them and exits 0 at once", async () => {
  await using scratch = await Sandbox.create();
  await using server = await Server.start({
    options: ["--listen", "127.0.0.1:0"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const open: Client[] = [];
  try {
    for (let i = 0; i < 5; i++) {
      const c = await Client.connect({
        hostname: "127.0.0.1",
        port: server.port(),
      });
      open.push(c);
      assert.equal(await c.line(), greeting());
    }
    assert.equal(await open[0]!.ask("user dave"), R.userOk);
    const { value: status, ms } = await timed(async () => {
      server.signal("SIGINT");
      for (const c of open) {
        assert.deepEqual(await c.rest(3_000), { data: "", ending: "eof" });
      }
      return await within(server.status, 3_000, "exit after SIGINT");
    });
    assert.equal(status.code, 0);
    assert.ok(ms < 3_000, `SIGINT to exit took ${ms} ms`);
    assert.equal(server.grep(/session end: shutdown/).length, 5);
  } finally {
    await closeAll(open);
  }
});
