/**
 * The PAM store end to end with real Unix accounts (root only): listen
 * mode and stdio mode under tcpserver change a password through pam_unix,
 * byte for byte on the wire, and /etc/shadow holds a hash crypt(3)
 * accepts; wrong old passwords, root and system accounts get the fixed
 * reply; a failing PAM check (pam_unix sleeps about 2 s) does not slow
 * another session in the same listen process; the bundle run with the
 * launcher's flags (--allow-ffi) changes a password too.
 */

import assert from "node:assert/strict";
import { Server } from "../../support/listen_server.ts";
import { Client } from "../../support/client.ts";
import { baseEnv, GREETING, HOST, MAIN, ROOT } from "../../support/sandbox.ts";
import { converse } from "../../support/talk.ts";
import { Tcpserver } from "../../support/tcpserver.ts";
import { needs } from "../../support/tools.ts";
import {
  cryptMatches,
  shadowHash,
  SKIP_REASON,
  UnixFixture,
} from "../../support/unix_accounts.ts";

if (SKIP_REASON) console.error(SKIP_REASON);

const ignore = SKIP_REASON !== undefined;
const SHIPPED_SERVICE = await Deno.readTextFile(
  `${ROOT}packaging/deb/pam`,
);

const CHANGED = GREETING + "200 Your password please.\r\n" +
  "200 Your new password please.\r\n200 Password changed, thank-you.\r\n" +
  "200 Bye.\r\n";
const AUTH_FAILED = GREETING + "200 Your password please.\r\n" +
  "500 Old password is incorrect or user not found.\r\n";
const CHANGE_FAILED = GREETING + "200 Your password please.\r\n" +
  "200 Your new password please.\r\n500 Password change failed.\r\n";

function listen(service: string, extra: string[] = []): Promise<Server> {
  return Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      "--pam",
      service,
      "--fail-delay",
      "0",
      "--child-timeout",
      "20",
      ...extra,
    ],
    check: [],
    password: "",
    hostname: HOST,
  });
}

async function dialogue(port: number, lines: string[]): Promise<string> {
  await using client = await Client.connect(port);
  return await converse(client.talk, lines, 20_000);
}

async function assertPassword(user: string, password: string) {
  const hash = await shadowHash(user);
  assert.match(hash, /^\$y\$/, "a yescrypt hash");
  assert.ok(cryptMatches(password, hash), `crypt(3) accepts it: ${hash}`);
}

Deno.test({
  name: "listen mode changes a Unix password through PAM, byte for byte",
  ignore,
  async fn(t) {
    await using unix = await UnixFixture.create();
    const bob = await unix.add("Bob-old-pw1");
    await using server = await listen(unix.service);
    const port = server.port();
    assert.match(
      server.logs.join("\n"),
      new RegExp(`PAM service ${unix.service}, uid >= 1000`),
    );

    await t.step("a wrong old password", async () => {
      assert.equal(
        await dialogue(port, [`user ${bob.name}`, "pass Bob-wrong-1"]),
        AUTH_FAILED,
      );
      await server.waitForLog(
        /authentication failed for ppt[0-9a-f]+: rejected, pam_authenticate: Authentication failure \(7\)$/,
      );
      await assertPassword(bob.name, "Bob-old-pw1");
    });
    await t.step("root and a system account", async () => {
      for (const user of ["root", "daemon"]) {
        assert.equal(
          await dialogue(port, [`user ${user}`, "pass whatever"]),
          AUTH_FAILED,
        );
      }
      await server.waitForLog(
        /authentication failed for root: rejected, root is refused$/,
      );
      await server.waitForLog(
        /authentication failed for daemon: rejected, uid 1 is below --pam-min-uid 1000$/,
      );
    });
    await t.step("a new password the policy refuses", async () => {
      assert.equal(
        await dialogue(port, [
          `user ${bob.name}`,
          "pass Bob-old-pw1",
          "newpass Bob-old-pw1",
        ]),
        CHANGE_FAILED,
      );
      await server.waitForLog(/PAM says: The password has not been changed\.$/);
      await server.waitForLog(
        /change failed for ppt[0-9a-f]+: rejected, pam_chauthtok: Authentication token manipulation error \(20\)$/,
      );
      await assertPassword(bob.name, "Bob-old-pw1");
    });
    await t.step("the change", async () => {
      assert.equal(
        await dialogue(port, [
          `user ${bob.name}`,
          "pass Bob-old-pw1",
          "newpass Bob new pw 2",
          "quit",
        ]),
        CHANGED,
      );
      await assertPassword(bob.name, "Bob new pw 2");
    });
    const log = server.logs.join("\n");
    assert.doesNotMatch(log, /Bob-old-pw1|Bob new pw 2|Bob-wrong-1/);
    assert.doesNotMatch(log, /\n\s+at |Uncaught|panicked/);
  },
});

Deno.test({
  name: "listen mode: a failing PAM check does not slow another session",
  ignore,
  async fn() {
    await using unix = await UnixFixture.create();
    const slow = await unix.add("Slow-pw-1");
    const fast = await unix.add("Fast-pw-1");
    await using server = await listen(unix.service);
    const port = server.port();
    // Warm up: the first worker type-checks or compiles its module.
    assert.equal(
      await dialogue(port, [`user ${fast.name}`, "pass Fast-pw-1", "quit"]),
      GREETING + "200 Your password please.\r\n" +
        "200 Your new password please.\r\n200 Bye.\r\n",
    );

    // A and B both wait at the password; then A sends a wrong one.
    const ready = async (user: string) => {
      const client = await Client.connect(port);
      await client.talk.reply(20_000);
      await client.talk.line(`user ${user}`);
      await client.talk.reply(20_000);
      return client;
    };
    await using a = await ready(slow.name);
    await using b = await ready(fast.name);
    const aStart = performance.now();
    await a.talk.line("pass Slow-wrong-1"); // pam_unix now sleeps 1-3 s
    const aReply = a.talk.reply(20_000).then((line) => ({
      line,
      at: performance.now(),
    }));

    // While A's check is inside PAM: a new client's greeting, B's check.
    const cStart = performance.now();
    await using c = await Client.connect(port);
    assert.equal(await c.talk.reply(20_000), GREETING);
    const greeted = performance.now() - cStart;
    const bStart = performance.now();
    await b.talk.line("pass Fast-pw-1");
    assert.equal(
      await b.talk.reply(20_000),
      "200 Your new password please.\r\n",
    );
    const bDone = performance.now();

    const { line, at } = await aReply;
    assert.equal(line, "500 Old password is incorrect or user not found.\r\n");
    const aMs = at - aStart;
    const bMs = bDone - bStart;
    console.log(
      `failing check: ${aMs.toFixed(0)} ms; meanwhile a greeting took ` +
        `${greeted.toFixed(0)} ms and another check ${bMs.toFixed(0)} ms`,
    );
    // --fail-delay is 0: the failing session's time is PAM's own delay
    // (libpam dithers pam_unix's 2 s to between 1 and 3 s).
    assert.ok(aMs >= 900, `pam_unix delayed the failure: ${aMs} ms`);
    assert.ok(
      bDone < at,
      "the other check was answered before the failure returned",
    );
    assert.ok(greeted < 1_000, `the greeting took ${greeted} ms`);
    assert.ok(bMs < 1_000, `the other check took ${bMs} ms`);
  },
});

Deno.test({
  name:
    "stdio mode under tcpserver changes a Unix password through the shipped PAM file",
  ignore: ignore || needs(import.meta.url, "tcpserver").ignore,
  async fn(t) {
    await using unix = await UnixFixture.create(SHIPPED_SERVICE);
    const carol = await unix.add("Carol-old-1");
    await using server = await Tcpserver.start({
      program: [
        MAIN,
        "--pam",
        unix.service,
        "--fail-delay",
        "0.2",
        "--child-timeout",
        "20",
        HOST,
      ],
      env: baseEnv(),
    });
    const talk = async (lines: string[]) => {
      await using client = await server.connect();
      return await converse(client.talk, lines, 20_000);
    };
    await t.step("a wrong old password", async () => {
      assert.equal(
        await talk([`user ${carol.name}`, "pass Carol-bad-1"]),
        AUTH_FAILED,
      );
    });
    await t.step("the change", async () => {
      assert.equal(
        await talk([
          `user ${carol.name}`,
          "pass Carol-old-1",
          "newpass Carol new 2",
          "quit",
        ]),
        CHANGED,
      );
      await assertPassword(carol.name, "Carol new 2");
    });
    await t.step("the new password checks", async () => {
      assert.equal(
        await talk([`user ${carol.name}`, "pass Carol new 2", "quit"]),
        GREETING + "200 Your password please.\r\n" +
          "200 Your new password please.\r\n200 Bye.\r\n",
      );
    });
    const statuses = await server.idle(3, 20_000);
    assert.deepEqual(statuses, [0, 0, 0]);
    assert.match(
      server.log,
      /ip=127\.0\.0\.1: Password change for ppt[0-9a-f]+ succeeded/,
    );
    assert.doesNotMatch(server.log, /Carol-old-1|Carol new 2|Carol-bad-1/);
  },
});

Deno.test({
  name: "--pam startup errors exit 100: no service file, no --allow-ffi",
  ignore,
  async fn(t) {
    const run = async (flags: string[], service: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...flags, MAIN, "--pam", service, HOST],
        env: baseEnv(),
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      return {
        code: out.code,
        stdout: new TextDecoder().decode(out.stdout),
        stderr: new TextDecoder().decode(out.stderr),
      };
    };
    await t.step("a service without a file in /etc/pam.d", async () => {
      const out = await run(["-A"], `qmail-poppass-none-${Deno.pid}`);
      assert.equal(out.code, 100);
      assert.equal(
        out.stdout,
        "500 Server configuration error, see the server log.\r\n",
      );
      assert.match(
        out.stderr,
        /fatal: --pam "qmail-poppass-none-\d+": no \/etc\/pam\.d\//,
      );
    });
    await t.step("without --allow-ffi", async () => {
      await using unix = await UnixFixture.create();
      const out = await run(
        ["--allow-env", "--allow-read", "--allow-run"],
        unix.service,
      );
      assert.equal(out.code, 100);
      assert.match(
        out.stderr,
        /fatal: --pam loads libpam through Deno's FFI: run Deno with --allow-ffi/,
      );
    });
  },
});
