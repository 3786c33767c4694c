import assert from "node:assert/strict";
import type { Outcome } from "../../lib/stores/backend.ts";
import { DEFAULT_LIMITS, type Limits } from "../../lib/common/limits.ts";
import { greetingBytes } from "../../lib/protocol/replies.ts";
import { runSession, type SessionEnd } from "../../lib/protocol/session.ts";
import { FakeClock, settle } from "../support/fake_clock.ts";
import {
  type Call,
  MemoryConn,
  recordingBackend,
} from "../support/memory_conn.ts";

const GREETING = "200 mail.example hello, who are you?\r\n";
const USER_OK = "200 Your password please.\r\n";
const PASS_OK = "200 Your new password please.\r\n";
const CHANGED = "200 Password changed, thank-you.\r\n";

/** Accounts for the recording back end: user → password. */
const ACCOUNTS = new Map([["bob", "old pw"], ["eve", "x"]]);

function defaultAnswer(call: Call): Outcome {
  const [user = "", old = ""] = call.args;
  if (user === "temp") return { kind: "temporary", reason: "exit 111" };
  return ACCOUNTS.get(user) === old
    ? { kind: "ok" }
    : { kind: "rejected", reason: "exit 1" };
}

function start(
  limits: Partial<Limits> = {},
  answer: (call: Call) => Outcome | Promise<Outcome> = defaultAnswer,
) {
  const conn = new MemoryConn();
  const clock = new FakeClock();
  const backend = recordingBackend(answer);
  const logs: string[] = [];
  const abort = new AbortController();
  const done: Promise<SessionEnd> = runSession(conn, {
    greeting: greetingBytes("mail.example"),
    backend,
    limits: { ...DEFAULT_LIMITS, ...limits },
    clock,
    log: (m) => logs.push(m),
    peer: { remoteIp: "192.0.2.1", env: {} },
    shutdown: abort.signal,
  });
  return { conn, clock, backend, logs, done, abort };
}

Deno.test("runSession() serves a full change byte for byte", async () => {
  const s = start();
  s.conn.send("user bob\r\npass old pw\r\nnewpass new pw\r\nquit\r\n");
  assert.equal(await s.done, "quit");
  assert.equal(
    s.conn.written,
    GREETING + USER_OK + PASS_OK + CHANGED + "200 Bye.\r\n",
  );
  assert.deepEqual(s.backend.calls, [
    { kind: "check", args: ["bob", "old pw"] },
    { kind: "change", args: ["bob", "old pw", "new pw"] },
  ]);
  assert.ok(s.logs.includes("Password change for bob succeeded"));
});

Deno.test("runSession() waits for the failure delay, measured from the line's arrival", async (t) => {
  const rows: [string, string, string][] = [
    [
      "wrong password",
      "bob",
      "500 Old password is incorrect or user not found.\r\n",
    ],
    [
      "unknown user",
      "nobody",
      "500 Old password is incorrect or user not found.\r\n",
    ],
    [
      "temporary failure",
      "temp",
      "500 Temporary failure, please try again later.\r\n",
    ],
  ];
  for (const [name, user, reply] of rows) {
    await t.step(name, async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const s = start({ failDelayMs: 5000 }, async (call) => {
        await gate;
        return defaultAnswer(call);
      });
      s.conn.send(`user ${user}\r\npass wrong\r\n`);
      await s.clock.advance(1200); // the back end takes 1.2 s
      release();
      await settle();
      assert.equal(
        s.conn.written,
        GREETING + USER_OK,
        "no reply before the delay",
      );
      assert.equal(
        s.clock.requested.at(-1),
        3800,
        "5 s from arrival minus the 1.2 s already spent",
      );
      await s.clock.advance(3799);
      assert.equal(s.conn.written, GREETING + USER_OK);
      await s.clock.advance(1);
      assert.equal(await s.done, "failure");
      assert.equal(s.conn.written, GREETING + USER_OK + reply);
    });
  }
});

Deno.test("runSession() delays a failed change and reports it as failed", async () => {
  const s = start(
    { failDelayMs: 300 },
    (call) =>
      call.kind === "change"
        ? { kind: "rejected", reason: "exit 1" }
        : defaultAnswer(call),
  );
  s.conn.send("user bob\npass old pw\nnewpass n\n");
  await s.clock.advance(300);
  assert.equal(await s.done, "failure");
  assert.equal(
    s.conn.written,
    GREETING + USER_OK + PASS_OK + "500 Password change failed.\r\n",
  );
  assert.ok(s.logs.includes("Password change for bob failed"));
  // Store-neutral: the same words whatever the store (issue 17).
  assert.ok(s.logs.includes("change failed for bob: rejected, exit 1"));
  assert.ok(!s.logs.some((l) => l.includes("setpassword")));
});

Deno.test("runSession() closes at the idle deadline, not reset by partial input", async () => {
  const s = start({ idleTimeoutMs: 1000 });
  for (let i = 0; i < 4; i++) {
    s.conn.send("u");
    await s.clock.advance(200);
  }
  assert.equal(s.conn.written, GREETING);
  await s.clock.advance(200);
  assert.equal(await s.done, "idleTimeout");
  assert.equal(s.conn.written, GREETING + "500 Timeout.\r\n");
});

Deno.test("runSession() closes a slow but steady client at the session deadline", async () => {
  const s = start({ idleTimeoutMs: 1000, sessionTimeoutMs: 2500 });
  await s.clock.advance(900);
  s.conn.send("user bob\r\n");
  await s.clock.advance(900);
  s.conn.send("pass old pw\r\n");
  await s.clock.advance(699);
  assert.equal(s.conn.written, GREETING + USER_OK + PASS_OK);
  await s.clock.advance(1);
  assert.equal(await s.done, "sessionTimeout");
  assert.equal(
    s.conn.written,
    GREETING + USER_OK + PASS_OK + "500 Timeout.\r\n",
  );
});

Deno.test("runSession() ends quietly at EOF in every state", async (t) => {
  for (
    const input of [
      "",
      "user bob\n",
      "user bob\npass old pw\n",
      "user bob\npass old pw\nnewpass n\n",
    ]
  ) {
    await t.step(JSON.stringify(input), async () => {
      const s = start();
      s.conn.send(input + "quit"); // an unterminated quit is never run
      s.conn.end();
      assert.equal(await s.done, "eof");
      assert.ok(!s.conn.written.includes("Bye"));
    });
  }
});

Deno.test("runSession() answers an overlong line and closes", async () => {
  const s = start({ maxLine: 512 });
  s.conn.send("user " + "x".repeat(5000));
  assert.equal(await s.done, "tooLong");
  assert.equal(s.conn.written, GREETING + "500 Line too long.\r\n");
  assert.deepEqual(s.backend.calls, []);
});

Deno.test("runSession() finishes a change when the client has gone, and runs it once", async () => {
  const s = start({}, (call) => {
    if (call.kind === "change") s.conn.gone = true;
    return defaultAnswer(call);
  });
  s.conn.send("user bob\npass old pw\nnewpass n\nnewpass m\n");
  assert.equal(await s.done, "clientGone");
  assert.equal(s.backend.calls.filter((c) => c.kind === "change").length, 1);
  assert.ok(s.logs.includes("Password change for bob succeeded"));
});

Deno.test("runSession() keeps pipelined lines for the dialogue", async () => {
  const s = start();
  s.conn.send("user bob\r\npass old pw\r\nnewpass n\r\nquit\r\n");
  assert.equal(await s.done, "quit");
  assert.equal(
    s.conn.written,
    GREETING + USER_OK + PASS_OK + CHANGED + "200 Bye.\r\n",
  );
});

Deno.test("runSession() ends a waiting session on shutdown", async () => {
  const s = start();
  s.conn.send("user bob\n");
  await settle();
  s.abort.abort();
  assert.equal(await s.done, "shutdown");
  assert.equal(s.conn.written, GREETING + USER_OK);
});

Deno.test("runSession() wipes every password buffer it handed out", async () => {
  const s = start();
  s.conn.send("user bob\npass old pw\nnewpass n3w\nquit\n");
  await s.done;
  assert.ok(s.backend.seen.length === 5);
  for (const buffer of s.backend.seen) {
    assert.ok(buffer.every((b) => b === 0), "buffer wiped");
  }
});

Deno.test("runSession() never logs a password", async () => {
  const marker = "Pw-7f3a9c";
  const s = start(
    {},
    (call) =>
      call.kind === "check"
        ? { kind: "ok" }
        : { kind: "rejected", reason: "exit 1" },
  );
  s.conn.send(`user bob\npass ${marker}-old\nnewpass ${marker}-new\n`);
  await s.clock.advance(DEFAULT_LIMITS.failDelayMs);
  await s.done;
  assert.ok(s.logs.length > 0);
  for (const line of s.logs) assert.ok(!line.includes(marker), line);
});

Deno.test("runSession() sanitises the user name in log lines", async () => {
  const s = start({ failDelayMs: 0 });
  s.conn.send("user x\xffip=1.2.3.4\npass y\n");
  await s.clock.advance(0);
  await s.done;
  assert.ok(
    s.logs.includes(
      "authentication failed for x??ip=1.2.3.4: rejected, exit 1",
    ),
    s.logs.join("\n"),
  );
});
