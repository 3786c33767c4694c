/**
 * stdio mode at startup: configuration errors (one clear line on fd 2, one
 * `500` line to the client, exit 100), `--help`, `--version`, and a smoke
 * test with the shipped defaults.
 */

import assert from "node:assert/strict";
import { R } from "../support/pinned_replies.ts";
import { ROW_ACCOUNTS } from "../support/rows.ts";
import {
  baseEnv,
  FAKEAUTH,
  GREETING,
  HOST,
  Sandbox,
} from "../support/sandbox.ts";
import { runOnce, StdioServer } from "../support/stdio.ts";
import { converse } from "../support/talk.ts";

const SET = `${FAKEAUTH} set`;

Deno.test("stdio: startup errors give one log line, one 500 line and exit 100", async (t) => {
  await using box = await Sandbox.create();
  const plain = box.accountsPath; // exists, not executable
  const rows: [string, string[], string | undefined, RegExp][] = [
    ["no hostname", [], SET, /missing hostname/],
    ["only options", ["--fail-delay", "1"], SET, /missing hostname/],
    ["no checkprogram", [HOST], SET, /missing checkprogram/],
    [
      "PASSWORD_COMMAND unset",
      [HOST, FAKEAUTH, "check"],
      undefined,
      /PASSWORD_COMMAND is not set/,
    ],
    [
      "PASSWORD_COMMAND blank",
      [HOST, FAKEAUTH, "check"],
      "  ",
      /PASSWORD_COMMAND is not set/,
    ],
    [
      "PASSWORD_COMMAND not executable",
      [HOST, FAKEAUTH, "check"],
      `${plain} set`,
      /is not an executable file/,
    ],
    [
      "PASSWORD_COMMAND missing",
      [HOST, FAKEAUTH, "check"],
      `${box.dir}/nope set`,
      /does not exist/,
    ],
    [
      "PASSWORD_COMMAND with an unset $WORD",
      [HOST, FAKEAUTH, "check"],
      `${SET} $POPPASS_TEST_UNSET`,
      /\$POPPASS_TEST_UNSET names an unset variable/,
    ],
    [
      "PASSWORD_COMMAND with an open quote",
      [HOST, FAKEAUTH, "check"],
      `${SET} "open`,
      /unterminated " quote/,
    ],
    [
      "checkprogram not executable",
      [HOST, plain],
      SET,
      /checkprogram ".*" is not an executable file/,
    ],
    [
      "checkprogram not in PATH",
      [HOST, "no-such-checkpassword-program"],
      SET,
      /was not found in PATH/,
    ],
    [
      "a bad option value",
      ["--fail-delay", "soon", HOST, FAKEAUTH, "check"],
      SET,
      /--fail-delay: expected seconds/,
    ],
    [
      "an unknown option",
      ["--bogus", HOST, FAKEAUTH, "check"],
      SET,
      /unknown option "--bogus"/,
    ],
    [
      "a zero deadline",
      ["--idle-timeout", "0", HOST, FAKEAUTH, "check"],
      SET,
      /a deadline of 0 s/,
    ],
    [
      "a host name with CR",
      ["po\rppass", FAKEAUTH, "check"],
      SET,
      /hostname must not contain CR, LF or NUL/,
    ],
  ];
  for (const [name, args, command, message] of rows) {
    await t.step(name, async () => {
      const env: Record<string, string> = { ...baseEnv(), ...box.env() };
      if (command !== undefined) env.PASSWORD_COMMAND = command;
      const { stdout, log, ended, transcript } = await runOnce({ args, env });
      assert.equal(stdout, R.misconfigured);
      assert.equal(ended.code, 100);
      const lines = log.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, log);
      assert.match(lines[0]!, /^qmail-poppass\[\d+\]: fatal: /);
      assert.match(lines[0]!, message);
      await box.verify([transcript]);
      assert.deepEqual(await box.ledger(), []);
    });
  }
});

Deno.test("stdio: a chain argument spelled --listen does not hide the 500 line", async () => {
  // The chain passes through untouched (spec §1), so `--listen` after the
  // host name is the subprogram's argument, not ours: this is stdio mode and
  // the client must get its 500 line (main.ts scanned all of argv for
  // --listen and stayed silent until 722eb5f).
  await using box = await Sandbox.create();
  const env = { ...baseEnv(), ...box.env() }; // PASSWORD_COMMAND unset
  const args = [HOST, FAKEAUTH, "check", "--listen"];
  const { stdout, log, ended } = await runOnce({ args, env });
  assert.equal(ended.code, 100);
  assert.match(log, /fatal: PASSWORD_COMMAND is not set/);
  assert.equal(stdout, R.misconfigured);
});

Deno.test("stdio: --help and --version print to stdout and exit 0", async (t) => {
  const env = { ...baseEnv() };
  await t.step("--help lists every option with its variable", async () => {
    const { stdout, log, ended } = await runOnce({ args: ["--help"], env });
    assert.equal(ended.code, 0);
    assert.equal(log, "");
    assert.match(
      stdout,
      /^usage: qmail-poppass \[options\] hostname checkprogram/,
    );
    for (
      const [option, variable] of [["fail-delay", "POPPASS_FAIL_DELAY"], [
        "child-timeout",
        "POPPASS_CHILD_TIMEOUT",
      ], ["listen", "POPPASS_LISTEN"]]
    ) {
      assert.match(stdout, new RegExp(`--${option} .*\\[${variable}\\]`));
    }
  });
  await t.step("--version prints the version", async () => {
    const { stdout, log, ended } = await runOnce({ args: ["--version"], env });
    assert.equal(ended.code, 0);
    assert.equal(log, "");
    assert.match(stdout, /^qmail-poppass \d+\.\d+\.\d+\n$/);
  });
});

Deno.test("stdio: with the shipped defaults a client is greeted, asked for its password and let go", async () => {
  await using box = await Sandbox.create(ROW_ACCOUNTS);
  await using server = new StdioServer({
    args: [HOST, FAKEAUTH, "check"],
    env: { ...baseEnv(), ...box.env(), PASSWORD_COMMAND: SET },
  });
  const received = await converse(server.talk, ["user bob", "quit"]);
  assert.equal(received, GREETING + R.userOk + R.bye);
  assert.deepEqual(await server.exit(), { code: 0, signal: null });
  assert.match(server.log, /session end: quit/);
  await box.verify([server.talk.transcript()]);
});
