/**
 * Parser fuzzing (test plan case 20): random octets in random chunk splits
 * through the real line reader, state machine and session runner.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Outcome } from "../../lib/stores/backend.ts";
import { DEFAULT_LIMITS } from "../../lib/common/limits.ts";
import { greetingBytes } from "../../lib/protocol/replies.ts";
import { runSession } from "../../lib/protocol/session.ts";
import { FakeClock } from "../support/fake_clock.ts";
import { MemoryConn, recordingBackend } from "../support/memory_conn.ts";

/** Fixed in CI so a failure can be replayed; printed with every failure. */
const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20261128);
const RUNS = Number(Deno.env.get("FUZZ_RUNS") ?? 300);
const REPLY = /^(200|500) [\x20-\x7e]*\r\n$/;

/** Inputs biased towards the protocol's own words, so the fuzz reaches every state. */
const token = fc.oneof(
  fc.constantFrom(
    "user ",
    "USER ",
    "pass ",
    "newpass ",
    "NewPass ",
    "quit",
    "bob",
    "ok",
    "old",
    "\r\n",
    "\n",
    "\r",
    "\0",
    " ",
  ),
  fc.uint8Array({ maxLength: 12 }).map((b) => String.fromCharCode(...b)),
);
const input = fc.array(token, { maxLength: 40 }).map((parts) => parts.join(""));

/** Serve `text` split at `cuts`; returns the reply octets as latin1 text. */
async function serve(text: string, cuts: number[]): Promise<string> {
  const conn = new MemoryConn();
  const clock = new FakeClock();
  const answer = (call: { args: string[] }): Outcome =>
    call.args[1] === "ok" || call.args[1] === "old"
      ? { kind: "ok" }
      : { kind: "rejected", reason: "exit 1" };
  const done = runSession(conn, {
    greeting: greetingBytes("fuzz.example"),
    backend: recordingBackend(answer),
    limits: { ...DEFAULT_LIMITS, maxLine: 64 },
    clock,
    log: () => {},
    peer: { remoteIp: "192.0.2.9", env: {} },
  });
  const octets = Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
  let from = 0;
  for (
    const cut of [...cuts.filter((c) => c < octets.length)].sort((a, b) =>
      a - b
    ).concat(octets.length)
  ) {
    if (cut > from) conn.send(octets.slice(from, cut));
    from = Math.max(from, cut);
  }
  conn.end();
  // Failure delays and deadlines are virtual: run the clock until the session ends.
  let ended = false;
  done.finally(() => (ended = true));
  for (let i = 0; i < 50 && !ended; i++) {
    await clock.advance(DEFAULT_LIMITS.failDelayMs);
  }
  assert.ok(ended, "the session ended");
  await done;
  return conn.written;
}

Deno.test(`random input never throws, and every reply is one well-formed line (seed ${SEED})`, async () => {
  await fc.assert(
    fc.asyncProperty(
      input,
      fc.array(fc.nat(400), { maxLength: 12 }),
      async (text, cuts) => {
        const written = await serve(text, cuts);
        const lines = written.split(/(?<=\r\n)/);
        for (const line of lines) assert.match(line, REPLY);
        assert.ok(
          lines[0]!.startsWith("200 fuzz.example hello"),
          "greeting first",
        );
        const failures = lines.filter((l) => l.startsWith("500"));
        assert.ok(failures.length <= 1, "nothing after a 500");
        if (failures.length === 1) {
          assert.ok(
            lines.at(-1)!.startsWith("500"),
            "the 500 is the last line",
          );
        }
      },
    ),
    { seed: SEED, numRuns: RUNS, verbose: true },
  );
});

Deno.test(`chunk splits never change the replies (seed ${SEED})`, async () => {
  await fc.assert(
    fc.asyncProperty(
      input,
      fc.array(fc.nat(400), { minLength: 1, maxLength: 12 }),
      async (text, cuts) => {
        assert.equal(await serve(text, cuts), await serve(text, []));
      },
    ),
    { seed: SEED + 1, numRuns: RUNS, verbose: true },
  );
});
