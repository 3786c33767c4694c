/**
 * `discardPending` (lib/serve/linger.ts): after a session's last reply, input the
 * client already sent is read away so the close is a FIN, within bounds.
 */

import assert from "node:assert/strict";
import { realClock } from "../../lib/common/clock.ts";
import { discardPending } from "../../lib/serve/linger.ts";
import {
  LINGER_IDLE_MS,
  LINGER_MAX_MS,
  LINGER_MAX_OCTETS,
} from "../../lib/common/limits.ts";
import { R } from "../support/pinned_replies.ts";
import { baseEnv, HOST, MAIN } from "../support/sandbox.ts";
import { Tcpserver } from "../support/tcpserver.ts";
import { Server } from "../support/listen_server.ts";
import { needs, testWith } from "../support/tools.ts";

/** A source that hands out `chunks`, then whatever `after` says. */
function source(
  chunks: Uint8Array[],
  after: () => Promise<Uint8Array | null>,
) {
  let reads = 0;
  return {
    read: () => {
      reads++;
      const next = chunks.shift();
      return next === undefined ? after() : Promise.resolve(next);
    },
    reads: () => reads,
  };
}

const test = testWith(needs(import.meta.url, "tcpserver"));

Deno.test("discardPending reads to end of input and zeroes what it read", async () => {
  const chunks = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5])];
  const seen = [...chunks];
  const s = source(chunks, () => Promise.resolve(null));
  await discardPending(s.read, realClock);
  assert.equal(s.reads(), 3);
  assert.deepEqual(seen.map((c) => [...c]), [[0, 0, 0], [0, 0]]);
});

Deno.test("discardPending stops when nothing arrives for LINGER_IDLE_MS", async () => {
  let pending: ((v: Uint8Array | null) => void) | undefined;
  const s = source(
    [new Uint8Array(10)],
    () => new Promise((resolve) => (pending = resolve)),
  );
  const started = performance.now();
  await discardPending(s.read, realClock);
  const ms = performance.now() - started;
  assert.equal(s.reads(), 2);
  assert.ok(ms >= LINGER_IDLE_MS - 5 && ms < LINGER_IDLE_MS + 500, `${ms} ms`);
  pending?.(null); // the caller's close would end it
});

Deno.test("discardPending stops after LINGER_MAX_OCTETS from a client that keeps sending", async () => {
  const s = source([], () => Promise.resolve(new Uint8Array(8 * 1024)));
  const started = performance.now();
  await discardPending(s.read, realClock);
  assert.equal(s.reads(), LINGER_MAX_OCTETS / (8 * 1024));
  assert.ok(performance.now() - started < LINGER_MAX_MS);
});

Deno.test("discardPending stops at LINGER_MAX_MS for a slow trickle", async () => {
  const trickle = () =>
    new Promise<Uint8Array>((resolve) =>
      setTimeout(() => resolve(new Uint8Array(1)), LINGER_IDLE_MS / 2)
    );
  const s = source([], trickle);
  const started = performance.now();
  await discardPending(s.read, realClock);
  const ms = performance.now() - started;
  assert.ok(ms >= LINGER_MAX_MS - 5 && ms < LINGER_MAX_MS + 500, `${ms} ms`);
  await new Promise((r) => setTimeout(r, LINGER_IDLE_MS)); // the last trickle
});

Deno.test("discardPending returns when a read fails", async () => {
  const s = source(
    [],
    () => Promise.reject(new Deno.errors.ConnectionReset("reset")),
  );
  await discardPending(s.read, realClock);
  assert.equal(s.reads(), 1);
});

/**
 * A client that sends more lines at once than the session reads (here:
 * after the `500` for a wrong password) gets that reply and then a clean
 * end of stream, FIN, in stdio mode under tcpserver and in listen mode.
 * Without the draining, the stdio case fails every time here: the close
 * with unread input is an RST, and the client's read after the reply fails
 * with ConnectionReset (under load it can lose the reply itself, which the
 * model test once caught). In listen mode the close was a FIN here even
 * without it; the test keeps it so.
 */
async function pipelinedFailure(port: number): Promise<[string, string]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines = "user lingerer\r\npass wrong-pw\r\nuser more\r\n" +
    "x".repeat(700);
  await conn.write(new TextEncoder().encode(lines));
  let text = "";
  let end = "eof";
  const buffer = new Uint8Array(4096);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } catch (error) {
    end = (error as Error).name;
  } finally {
    conn.close();
  }
  return [text.split("\r\n").slice(1, -1).join(" | "), end];
}

const EXPECTED: [string, string] = [
  `${R.userOk.trim()} | ${R.authFailed.trim()}`,
  "eof",
];

test("stdio under tcpserver: after a final reply, unread input is drained and the close is a FIN", async () => {
  await using server = await Tcpserver.start({
    program: [MAIN, "--fail-delay", "0", HOST, "/bin/false"],
    env: { ...baseEnv(), PASSWORD_COMMAND: "/bin/false" },
  });
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await pipelinedFailure(server.port), EXPECTED);
  }
});

Deno.test("listen mode: after a final reply, unread input is drained and the close is a FIN", async () => {
  await using server = await Server.start({
    options: ["--listen", "127.0.0.1:0", "--fail-delay", "0"],
    check: ["/bin/false"],
    password: "/bin/false",
  });
  for (let i = 0; i < 5; i++) {
    assert.deepEqual(await pipelinedFailure(server.port()), EXPECTED);
  }
});
