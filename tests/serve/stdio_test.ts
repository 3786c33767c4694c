/**
 * `main.ts` in stdio mode as a subprocess, the test being the client on
 * its stdin/stdout: the reply table byte for byte, the happy path, client
 * dialects, order violations, bad octets, the 512-octet payload cap. The
 * ledger checker runs after every dialogue.
 */

import assert from "node:assert/strict";
import { type Account, passwordOf } from "../support/accounts.ts";
import {
  bytes,
  changePayload,
  checkPayload,
  hex,
  type Part,
} from "../support/bytes.ts";
import {
  assertNoSecrets,
  NEW,
  OLD,
  ROW_ACCOUNTS,
  ROWS,
  runs,
  WRONG,
} from "../support/rows.ts";
import { R } from "../support/pinned_replies.ts";
import { GREETING, Sandbox } from "../support/sandbox.ts";
import { runOnce, standard, StdioServer } from "../support/stdio.ts";
import { converse } from "../support/talk.ts";

/** Converse line by line with a fresh server; check bytes, runs, ledger, exit. */
async function dialogue(
  lines: readonly Part[],
  pairs: readonly Account[] = ROW_ACCOUNTS,
) {
  await using box = await Sandbox.create(pairs);
  await using server = new StdioServer(standard(box));
  const received = await converse(server.talk, lines);
  const ended = await server.exit();
  assert.deepEqual(ended, { code: 0, signal: null });
  assertNoSecrets(server.log);
  assert.doesNotMatch(server.log, /\n\s+at |Uncaught|panicked/);
  await box.verify([server.talk.transcript()]);
  return {
    received,
    ledger: await box.ledger(),
    after: await box.accounts(),
    log: server.log,
  };
}

/** Send everything at once, then EOF; check exit, ledger and secrets. */
async function pipelined(
  input: Uint8Array,
  pairs: readonly Account[] = ROW_ACCOUNTS,
) {
  await using box = await Sandbox.create(pairs);
  const result = await runOnce(standard(box), input);
  assert.deepEqual(result.ended, { code: 0, signal: null });
  assertNoSecrets(result.log);
  await box.verify([result.transcript]);
  return { ...result, ledger: await box.ledger(), after: await box.accounts() };
}

Deno.test("stdio: every row of the reply table gets its exact octets", async (t) => {
  for (const row of ROWS) {
    await t.step(row.name, async () => {
      const { received, ledger } = await dialogue(row.lines);
      assert.equal(received, GREETING + row.replies.join(""));
      assert.deepEqual(runs(ledger), row.runs);
    });
  }
});

Deno.test("stdio: the happy path changes the password with exact fd-3 octets", async () => {
  const { received, ledger, after, log } = await dialogue([
    "user bob",
    `pass ${OLD}`,
    `newpass ${NEW}`,
    "quit",
  ]);
  assert.equal(received, GREETING + R.userOk + R.passOk + R.changed + R.bye);
  assert.deepEqual(ledger.map((e) => [e.mode, hex(e.payload), e.exit]), [
    ["check", hex(checkPayload("bob", OLD)), "0"],
    ["set", hex(changePayload("bob", OLD, NEW)), "0"],
  ]);
  assert.equal(hex(passwordOf(after, "bob")!), hex(bytes(NEW)));
  assert.match(log, /ip=unknown: Password change for bob succeeded\n/);
});

Deno.test("stdio: client dialects each change the password once", async (t) => {
  const script = (end: string, quit: boolean) =>
    bytes(
      ...[
        "USER bob",
        `PASS ${OLD}`,
        `NEWPASS ${NEW}`,
        ...(quit ? ["QUIT"] : []),
      ]
        .map((l) => l + end),
    );
  await t.step(
    "UPPER case with bare LF (poppass-cgi), line by line",
    async () => {
      const { received, ledger } = await dialogue([
        "USER bob\n",
        `PASS ${OLD}\n`,
        `NEWPASS ${NEW}\n`,
        "QUIT\n",
      ]);
      assert.equal(
        received,
        GREETING + R.userOk + R.passOk + R.changed + R.bye,
      );
      assert.deepEqual(runs(ledger), ["check:0", "set:0"]);
    },
  );
  await t.step("no quit, just EOF (Roundcube)", async () => {
    const { stdout, ledger } = await pipelined(script("\r\n", false));
    assert.equal(stdout, GREETING + R.userOk + R.passOk + R.changed);
    assert.deepEqual(runs(ledger), ["check:0", "set:0"]);
  });
  await t.step(
    "everything at once, quit, EOF without reading (SquirrelMail)",
    async () => {
      const { stdout, ledger, after } = await pipelined(script("\n", true));
      assert.equal(stdout, GREETING + R.userOk + R.passOk + R.changed + R.bye);
      assert.deepEqual(runs(ledger), ["check:0", "set:0"]);
      assert.equal(hex(passwordOf(after, "bob")!), hex(bytes(NEW)));
    },
  );
});

Deno.test("stdio: order violations close the session and run no setpassword", async (t) => {
  const rows: [string, string, string, string[]][] = [
    ["pass first", `pass ${OLD}\r\nnewpass ${NEW}\r\n`, R.usernameRequired, []],
    ["newpass first", `newpass ${NEW}\r\n`, R.usernameRequired, []],
    [
      "newpass after a failed pass",
      `user bob\r\npass ${WRONG}\r\nnewpass ${NEW}\r\n`,
      R.userOk + R.authFailed,
      ["check:1"],
    ],
    [
      "user again after auth",
      `user bob\r\npass ${OLD}\r\nuser bob\r\nnewpass ${NEW}\r\n`,
      R.userOk + R.passOk + R.newPasswordRequired,
      ["check:0"],
    ],
    [
      "lines after quit",
      `user bob\r\nquit\r\npass ${OLD}\r\nnewpass ${NEW}\r\n`,
      R.userOk + R.bye,
      [],
    ],
  ];
  for (const [name, input, replies, expected] of rows) {
    await t.step(
      `${name}: ${replies.trim().split("\r\n").at(-1)}`,
      async () => {
        const { stdout, ledger } = await pipelined(bytes(input));
        assert.equal(stdout, GREETING + replies);
        assert.deepEqual(runs(ledger), expected);
      },
    );
  }
});

Deno.test("stdio: NUL, lone CR and control octets never reach a back end", async (t) => {
  const rows: [string, Part[], string, string[]][] = [
    ["NUL in the user name", ["user bo", 0, "b"], R.usernameRequired, []],
    ["a lone CR in the user name", ["user bo\rb"], R.usernameRequired, []],
    [
      "a CR before CRLF after the user name",
      ["user bob\r"],
      R.usernameRequired,
      [],
    ],
    [
      "a control octet in the user name",
      ["user bo", 1, "b"],
      R.usernameRequired,
      [],
    ],
    ["DEL in the user name", ["user bo", 0x7f, "b"], R.usernameRequired, []],
    [
      "NUL in the old password",
      ["user bob\r\npass Old-", 0, "mk1"],
      R.userOk + R.passwordRequired,
      [],
    ],
    [
      "a lone CR in the old password",
      ["user bob\r\npass Old-\rmk1"],
      R.userOk + R.passwordRequired,
      [],
    ],
    [
      "NUL in the new password",
      [`user bob\r\npass ${OLD}\r\nnewpass N`, 0, "ew"],
      R.userOk + R.passOk + R.newPasswordRequired,
      ["check:0"],
    ],
    [
      "a lone CR in the new password",
      [`user bob\r\npass ${OLD}\r\nnewpass N\rew`],
      R.userOk + R.passOk + R.newPasswordRequired,
      ["check:0"],
    ],
  ];
  for (const [name, parts, replies, expected] of rows) {
    await t.step(
      `${name} gets ${replies.trim().split("\r\n").at(-1)}`,
      async () => {
        const { stdout, ledger } = await pipelined(bytes(...parts, "\r\n"));
        assert.equal(stdout, GREETING + replies);
        assert.deepEqual(runs(ledger), expected);
      },
    );
  }
  await t.step(
    "other control octets in passwords are passwords (spec §3) and pass verbatim",
    async () => {
      const old = bytes("Ctl-mk1", 1, 0x1b, 0x7f, "\t");
      const next = bytes("Ctl-mk2", 2, 0x1f);
      const { stdout, ledger } = await pipelined(
        bytes("user bob\r\npass ", old, "\r\nnewpass ", next, "\r\n"),
        [["bob", old]],
      );
      assert.equal(stdout, GREETING + R.userOk + R.passOk + R.changed);
      assert.deepEqual(ledger.map((e) => hex(e.payload)), [
        hex(checkPayload("bob", old)),
        hex(changePayload("bob", old, next)),
      ]);
    },
  );
});

Deno.test("stdio: spaces and UTF-8 in passwords and user names reach the programs verbatim", async (t) => {
  for (
    const [name, old, next] of [
      ["leading spaces", "  lead-mk1", " lead-mk2"],
      ["trailing spaces", "trail-mk1  ", "trail-mk2 "],
      ["inner spaces", "in ner-mk1", "in  ner-mk2"],
      ["UTF-8", "pässwörd-mk1-Ω", "密码-mk2-ü"],
    ]
  ) {
    await t.step(name!, async () => {
      const { received, ledger, after } = await dialogue(
        ["user bob", `pass ${old}`, `newpass ${next}`, "quit"],
        [["bob", old!]],
      );
      assert.equal(
        received,
        GREETING + R.userOk + R.passOk + R.changed + R.bye,
      );
      assert.deepEqual(ledger.map((e) => hex(e.payload)), [
        hex(checkPayload("bob", old!)),
        hex(changePayload("bob", old!, next!)),
      ]);
      assert.equal(hex(passwordOf(after, "bob")!), hex(bytes(next!)));
    });
  }
  await t.step("a UTF-8 user name", async () => {
    const user = "bøb-ü";
    const { received, ledger } = await dialogue(
      [`user ${user}`, `pass ${OLD}`, `newpass ${NEW}`, "quit"],
      [[user, OLD]],
    );
    assert.equal(received, GREETING + R.userOk + R.passOk + R.changed + R.bye);
    assert.deepEqual(ledger.map((e) => hex(e.payload)), [
      hex(checkPayload(user, OLD)),
      hex(changePayload(user, OLD, NEW)),
    ]);
  });
});

Deno.test("stdio: a payload of 512 octets runs, 513 is refused without running", async (t) => {
  const user = "u".repeat(255);
  const rows: [string, string, string, string, string[]][] = [
    ["check at 512", "p".repeat(253), "", R.passOk + R.bye, ["check:0"]],
    ["check at 513", "p".repeat(254), "", R.authFailed, []],
    [
      "change at 512",
      "p".repeat(100),
      "n".repeat(153),
      R.passOk + R.changed + R.bye,
      ["check:0", "set:0"],
    ],
    [
      "change at 513",
      "p".repeat(100),
      "n".repeat(154),
      R.passOk + R.changeFailed,
      ["check:0"],
    ],
  ];
  for (const [name, old, next, replies, expected] of rows) {
    await t.step(name, async () => {
      const lines = [
        `user ${user}`,
        `pass ${old}`,
        ...(next ? [`newpass ${next}`] : []),
        "quit",
      ];
      const { received, ledger } = await dialogue(lines, [[user, old]]);
      assert.equal(received, GREETING + R.userOk + replies);
      assert.deepEqual(runs(ledger), expected);
      if (name.endsWith("512")) {
        assert.equal(ledger.at(-1)!.payload.length, 512);
      }
    });
  }
});
