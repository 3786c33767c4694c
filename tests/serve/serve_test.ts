/**
 * `serve()` in process on 127.0.0.1 port 0, with an in-memory back end:
 * the listener's own behaviour (exact replies, the ucspi-tcp variables a
 * back end sees, the concurrency cap, shutdown) without a subprocess, so
 * these run in a fraction of a second. The whole program in listen mode is
 * `listen_test.ts`.
 */

import assert from "node:assert/strict";
import { DEFAULT_LIMITS, type Limits } from "../../lib/common/limits.ts";
import { greetingBytes } from "../../lib/protocol/replies.ts";
import { serve, type Server } from "../../lib/serve/listener.ts";
import type { Backend, Outcome, Peer } from "../../lib/stores/backend.ts";
import { Client } from "../support/client.ts";
import { greeting, R } from "../support/pinned_replies.ts";

const HOST = "pop.example";
const LIMITS: Limits = {
  ...DEFAULT_LIMITS,
  failDelayMs: 50,
  idleTimeoutMs: 3_000,
  sessionTimeoutMs: 5_000,
  childTimeoutMs: 1_000,
  maxSessions: 2,
  maxPerIp: 0,
};
const decoder = new TextDecoder();

/** bob's password is "old"; every call is recorded with the peer it saw. */
function memoryBackend() {
  const calls: { op: string; user: string; env: Record<string, string> }[] = [];
  const record = (op: string, user: Uint8Array, peer: Peer) =>
    calls.push({ op, user: decoder.decode(user), env: { ...peer.env } });
  const backend: Backend = {
    check(user, old, peer): Promise<Outcome> {
      record("check", user, peer);
      const ok = decoder.decode(user) === "bob" &&
        decoder.decode(old) === "old";
      return Promise.resolve(
        ok ? { kind: "ok" } : { kind: "rejected", reason: "wrong" },
      );
    },
    change(user, _old, _next, peer): Promise<Outcome> {
      record("change", user, peer);
      return Promise.resolve({ kind: "ok" });
    },
  };
  return { backend, calls };
}

async function start(backend: Backend): Promise<{
  server: Server;
  port: number;
  logs: string[];
}> {
  const logs: string[] = [];
  const server = await serve({
    addresses: [{ hostname: "127.0.0.1", port: 0 }],
    greeting: greetingBytes(HOST),
    backend,
    limits: LIMITS,
    sink: (line) => logs.push(line),
  });
  return { server, port: server.transports[0]!.address.port, logs };
}

Deno.test("serve() on port 0 speaks the dialogue byte for byte", async (t) => {
  const { backend, calls } = memoryBackend();
  const { server, port, logs } = await start(backend);
  try {
    assert.notEqual(port, 0);
    const rows: readonly [string, string, string][] = [
      [
        "a full change",
        "user bob\r\npass old\r\nnewpass new\r\nquit\r\n",
        R.userOk + R.passOk + R.changed + R.bye,
      ],
      [
        "a wrong password",
        "user bob\r\npass nope\r\nnewpass x\r\n",
        R.userOk + R.authFailed,
      ],
      ["pass before user", "pass old\r\n", R.usernameRequired],
      ["quit at once", "QUIT\n", R.bye],
    ];
    for (const [name, lines, expected] of rows) {
      await t.step(name, async () => {
        await using client = await Client.connect({
          hostname: "127.0.0.1",
          port,
        });
        assert.equal(await client.line(), greeting(HOST));
        await client.send(lines);
        const { data, ending } = await client.rest(5_000);
        assert.equal(data, expected);
        assert.equal(ending, "eof");
      });
    }
  } finally {
    await server.shutdown();
    await server.finished;
  }
  assert.equal(server.active(), 0);
  assert.deepEqual(calls.map((c) => `${c.op} ${c.user}`), [
    "check bob",
    "change bob",
    "check bob",
  ]);
  await t.step("the back end sees the ucspi-tcp variables", () => {
    const env = calls[0]!.env;
    assert.equal(env.PROTO, "TCP");
    assert.equal(env.TCPREMOTEIP, "127.0.0.1");
    assert.equal(env.TCPLOCALIP, "127.0.0.1");
    assert.equal(env.TCPLOCALPORT, String(port));
    assert.match(env.TCPREMOTEPORT ?? "", /^\d+$/);
  });
  assert.ok(
    logs.some((l) =>
      /ip=127\.0\.0\.1: Password change for bob succeeded$/.test(l)
    ),
    logs.join("\n"),
  );
});

Deno.test("serve() answers a connection over max-sessions with tooMany and frees the slot", async () => {
  const { backend } = memoryBackend();
  const { server, port } = await start(backend);
  const target = { hostname: "127.0.0.1", port };
  const held: Client[] = [];
  try {
    for (let i = 0; i < LIMITS.maxSessions; i++) {
      const c = await Client.connect(target);
      held.push(c);
      assert.equal(await c.line(), greeting(HOST));
    }
    {
      await using extra = await Client.connect(target);
      const { data } = await extra.rest(5_000);
      assert.equal(data, R.tooMany);
    }
    await held.pop()!.close();
    const deadline = performance.now() + 5_000;
    while (server.active() >= LIMITS.maxSessions) {
      assert.ok(performance.now() < deadline, "the slot never came back");
      await new Promise((r) => setTimeout(r, 10));
    }
    await using again = await Client.connect(target);
    assert.equal(await again.line(), greeting(HOST));
  } finally {
    for (const c of held) await c.close();
    await server.shutdown();
    await server.finished;
  }
});
