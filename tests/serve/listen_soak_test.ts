/**
 * Listen mode under load (case 22 of `doc/test-plan.md`):
 * 2,000 mixed sessions, 50 at a time, then descriptors, children and
 * memory back at their baseline; and 1,000 idle connections: bounded memory,
 * every descriptor given back. Throughput (full changes per second at 1, 8
 * and 32 clients) is a benchmark, not a test: `deno task bench`, rows
 * `listen`, and BENCHMARKS.md.
 */

import assert from "node:assert/strict";
import { Client, closeAll } from "../support/client.ts";
import { Sandbox } from "../support/sandbox.ts";
import { childrenOf, fdCount, rssKiB } from "../support/procs.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { Server } from "../support/listen_server.ts";
import { pool, sleep, timed, until, within } from "../support/time.ts";

const V4 = "127.0.0.1";
const WARM_UP = 1_200;
const FULL = [greeting(), R.userOk, R.passOk, R.changed, R.bye].join("");

/** One kind of client; resolves to what it saw, or to an explanation of what went wrong. */
type Kind = (c: Client, n: number) => Promise<string | undefined>;

/** Send everything at once, then expect exactly `expected` and a clean close. */
function scripted(lines: (n: number) => string, expected: string): Kind {
  return async (c, n) => {
    await c.send(lines(n));
    const { data, ending } = await c.rest(10_000);
    const got = greeting() + data;
    return got === expected && ending === "eof"
      ? undefined
      : `${JSON.stringify(got)} ${ending}`;
  };
}

/** Read the greeting, then vanish at some point of the dialogue. */
const vanish: Kind = async (c, n) => {
  const cut = [
    "",
    "user gone\r\n",
    "user gone\r\npass x\r\n",
    "user gone\r\npass x\r\nnewpass y\r\n",
  ][n % 4]!;
  if (cut !== "") await c.sendQuietly(cut);
  await c.close();
  return undefined;
};

const KINDS: Record<string, Kind> = {
  success: scripted(
    (n) => `user ok${n}\r\npass old ${n}\r\nnewpass new ${n}\r\nquit\r\n`,
    FULL,
  ),
  wrongPassword: scripted(
    (n) => `user bad${n}\r\npass wrong\r\nnewpass never\r\n`,
    greeting() + R.userOk + R.authFailed,
  ),
  protocolError: scripted(
    () => "pass first\r\nuser late\r\n",
    greeting() + R.usernameRequired,
  ),
  quitEarly: scripted(
    (n) => `USER early${n}\nQUIT\n`,
    greeting() + R.userOk + R.bye,
  ),
  disconnect: vanish,
  overlongLine: scripted(
    (n) => "user " + "x".repeat(n % 2 ? 600 : 5_000) + "\r\n",
    greeting() + R.lineTooLong,
  ),
};

/** One session of the given kind; a string says what went wrong. */
async function session(port: number, kind: string, n: number) {
  const c = await Client.connect({ hostname: V4, port });
  try {
    const hello = await c.line(5_000);
    if (hello !== greeting()) {
      return `${kind}: greeting ${JSON.stringify(hello)}`;
    }
    const problem = await KINDS[kind]!(c, n);
    return problem && `${kind} #${n}: ${problem}`;
  } finally {
    await c.close();
  }
}

/** A server whose back ends are tiny scripts (`rule` rejects users named bad…). */
async function trivialServer(
  scratch: Sandbox,
  extra: string[] = [],
  script: "rule" | "ok" = "rule",
  denoFlags: string[] = [],
) {
  return await Server.start({
    denoFlags,
    options: ["--listen", "127.0.0.1:0", "--fail-delay", "0.05", ...extra],
    check: [scratch.script(script)],
    password: scratch.script(script),
  });
}

/** How many of `count` mixed sessions are successful changes. */
const successes = (count: number) =>
  Math.ceil(count / Object.keys(KINDS).length);

/** Run `count` sessions cycling through the kinds, `width` at a time. */
async function mixed(port: number, count: number, width: number) {
  const names = Object.keys(KINDS);
  const plan = Array.from(
    { length: count },
    (_, n) => names[n % names.length]!,
  );
  const problems = await pool(plan, width, (kind, n) => session(port, kind, n));
  return problems.filter((p) => p !== undefined);
}

/** Wait until the server has no sessions: descriptors and children back to their baseline. */
async function settled(server: Server, fds: number, ms = 10_000) {
  return await until(
    () => {
      const now = {
        fds: fdCount(server.pid),
        children: childrenOf(server.pid).length,
      };
      return now.fds <= fds && now.children === 0 ? now : undefined;
    },
    ms,
    `server back to ${fds} descriptors and no children (now ${
      fdCount(server.pid)
    }, ${childrenOf(server.pid).length})`,
  );
}

Deno.test("2,000 mixed sessions, 50 at a time, end as expected and leave nothing behind", async () => {
  await using scratch = await Sandbox.create();
  // With V8's default sizing the heap (and the allocator behind the
  // buffers it owns) keeps growing for ~6,000 sessions before RSS levels
  // off at ~165 MiB, although the live heap stays ~8 MiB: RSS growth then
  // says nothing about leaks. A 32 MiB old space makes V8 collect instead
  // of grow, so after a warm-up RSS is flat and growth means a leak (a JS
  // leak would also end in an out-of-memory crash).
  await using server = await trivialServer(
    scratch,
    ["--max-sessions", "200", "--max-per-ip", "0"],
    "rule",
    ["--v8-flags=--max-old-space-size=32"],
  );
  const port = server.port();
  const start = rssKiB(server.pid);
  assert.deepEqual(
    await within(mixed(port, WARM_UP, 50), 60_000, "warm-up"),
    [],
  );
  await sleep(500);
  const base = { fds: fdCount(server.pid), rss: rssKiB(server.pid) };
  console.log(
    `RSS ${start} KiB at start, ${base.rss} KiB after ${WARM_UP} warm-up sessions`,
  );
  const { value: problems, ms } = await timed(() =>
    within(mixed(port, 2_000, 50), 120_000, "soak")
  );
  assert.deepEqual(
    problems.slice(0, 10),
    [],
    `${problems.length} sessions went wrong`,
  );
  const after = await settled(server, base.fds);
  const rss = rssKiB(server.pid);
  console.log(
    `soak: 2000 sessions in ${(ms / 1000).toFixed(1)} s = ${
      (2_000_000 / ms).toFixed(0)
    } sessions/s; ` +
      `fds ${base.fds} -> ${after.fds}, children 0 -> ${after.children}, RSS ${base.rss} -> ${rss} KiB`,
  );
  assert.ok(rss - base.rss < 30 * 1024, `RSS grew by ${rss - base.rss} KiB`);
  assert.equal(server.grep(/session end: /).length, WARM_UP + 2_000);
  assert.deepEqual(
    server.logs.filter((l) =>
      !/^qmail-poppass\[\d+(\.\d+)?\]( ip=\S+)?: /.test(l)
    ),
    [],
  );
  assert.deepEqual(server.grep(/ip=\S+: limit reached/), []);
  assert.equal(
    server.grep(/Password change for ok\d+ succeeded$/).length,
    successes(WARM_UP) + successes(2_000),
  );
});

Deno.test("1,000 idle plain connections cost little memory and give every descriptor back", async () => {
  await using scratch = await Sandbox.create();
  await using server = await trivialServer(scratch, [
    "--max-sessions",
    "2000",
    "--max-per-ip",
    "0",
  ]);
  const port = server.port();
  assert.deepEqual(await mixed(port, 60, 20), [], "warm-up");
  await sleep(500);
  const base = { fds: fdCount(server.pid), rss: rssKiB(server.pid) };
  const clients: Client[] = [];
  try {
    await within(
      (async () => {
        for (let i = 0; i < 1_000; i++) {
          const c = await Client.connect({ hostname: V4, port });
          clients.push(c);
          assert.equal(await c.line(), greeting());
        }
      })(),
      60_000,
      "1,000 connections",
    );
    await sleep(500);
    const rss = rssKiB(server.pid);
    const fds = fdCount(server.pid);
    const per = (rss - base.rss) / 1_000;
    console.log(
      `idle connections: RSS ${base.rss} -> ${rss} KiB = ${
        per.toFixed(1)
      } KiB per connection; fds ${base.fds} -> ${fds}`,
    );
    assert.ok(fds >= base.fds + 1_000);
    assert.ok(per < 200, `${per} KiB per idle connection`);
  } finally {
    await closeAll(clients);
  }
  const after = await settled(server, base.fds);
  assert.equal(after.fds, base.fds);
});
