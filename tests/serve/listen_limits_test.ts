/**
 * Listen mode's concurrency caps (case 21 of `doc/test-plan.md`):
 * the extra connection gets the refusal line, slots come back.
 */

import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { Client, closeAll } from "../support/client.ts";
import { makeCert } from "../support/certs.ts";
import { Sandbox } from "../support/sandbox.ts";
import { fdCount } from "../support/procs.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { Server } from "../support/listen_server.ts";
import { sleep, timed, until, within } from "../support/time.ts";
import { needs, testWith } from "../support/tools.ts";

const V4 = "127.0.0.1";
const V6 = "::1";

/** A server on both loopbacks, so two client IPs are available. */
function capped(scratch: Sandbox): Promise<Server> {
  return Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      "--listen",
      "[::1]:0",
      "--max-sessions",
      "3",
      "--max-per-ip",
      "2",
      "--fail-delay",
      "2",
    ], // deno-fmt-ignore
    check: [scratch.script("rule")],
    password: scratch.script("rule"),
  });
}

/** Connect and expect the greeting. */
async function admitted(server: Server, ip: string): Promise<Client> {
  const c = await Client.connect({
    hostname: ip,
    port: server.port(ip === V4 ? 0 : 1),
  });
  try {
    assert.equal(await c.line(), greeting());
    return c;
  } catch (error) {
    await c.close();
    throw error;
  }
}

/** Connect and expect exactly the refusal, then the close. */
async function refused(server: Server, ip: string): Promise<void> {
  await using c = await Client.connect({
    hostname: ip,
    port: server.port(ip === V4 ? 0 : 1),
  });
  assert.deepEqual(await c.rest(), { data: R.tooMany, ending: "eof" });
}

/** Close a client and wait until the server has ended its session. */
async function release(server: Server, c: Client): Promise<void> {
  const from = server.logs.length;
  await c.close();
  await server.waitForLog(/session end: eof/, 5_000, from);
}

const test = testWith(needs(import.meta.url, "openssl"));

Deno.test("the session caps refuse the extra connection and give the slot back", async (t) => {
  await using scratch = await Sandbox.create();
  await t.step(
    "a third connection from one IP gets the refusal line and is closed",
    async () => {
      await using server = await capped(scratch);
      const open = [await admitted(server, V4), await admitted(server, V4)];
      try {
        await refused(server, V4);
        await server.waitForLog(
          /ip=127\.0\.0\.1: limit reached: max-per-ip 2, connection refused$/,
        );
        open.push(await admitted(server, V6));
      } finally {
        await closeAll(open);
      }
    },
  );
  await t.step(
    "a fourth connection overall is refused, from any IP",
    async () => {
      await using server = await capped(scratch);
      const open = [
        await admitted(server, V4),
        await admitted(server, V6),
        await admitted(server, V6),
      ];
      try {
        await refused(server, V4);
        await server.waitForLog(
          /ip=127\.0\.0\.1: limit reached: max-sessions 3, connection refused$/,
        );
      } finally {
        await closeAll(open);
      }
    },
  );
  await t.step("slots come back when sessions end", async () => {
    await using server = await capped(scratch);
    const open = [
      await admitted(server, V4),
      await admitted(server, V4),
      await admitted(server, V6),
    ];
    try {
      await refused(server, V6);
      await release(server, open.shift()!);
      open.push(await admitted(server, V4));
      await refused(server, V4);
      await release(server, open.shift()!);
      await release(server, open.shift()!);
      open.push(await admitted(server, V4));
      open.push(await admitted(server, V6));
    } finally {
      await closeAll(open);
    }
  });
  await t.step(
    "a session keeps its slot during its failure delay",
    async () => {
      await using server = await capped(scratch);
      const failing = await admitted(server, V4);
      const idle = await admitted(server, V4);
      try {
        assert.equal(await failing.ask("user bad"), R.userOk);
        const sent = performance.now();
        await failing.send("pass wrong\r\n");
        await server.waitForLog(
          /authentication failed for bad: rejected, exit 1$/,
        );
        await refused(server, V4);
        assert.equal(await failing.line(4_000), R.authFailed);
        assert.ok(performance.now() - sent >= 2_000);
        assert.deepEqual(await failing.rest(), { data: "", ending: "eof" });
        await server.waitForLog(/session end: failure/);
        const next = await admitted(server, V4);
        await next.close();
      } finally {
        await closeAll([failing, idle]);
      }
    },
  );
});

Deno.test("an idle session is closed at --idle-timeout and gives its slot back", async () => {
  await using scratch = await Sandbox.create();
  await using server = await Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      "--max-sessions",
      "1",
      "--idle-timeout",
      "1",
    ],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  await using idle = await Client.connect({ hostname: V4, port });
  assert.equal(await idle.line(), greeting());
  await refused(server, V4);
  const { value: end, ms } = await timed(() => idle.rest(5_000));
  assert.deepEqual(end, { data: "500 Timeout.\r\n", ending: "eof" });
  assert.ok(ms > 700 && ms < 4_000, `closed after ${ms} ms`);
  await server.waitForLog(/session end: idleTimeout/);
  await using next = await Client.connect({ hostname: V4, port });
  assert.equal(await next.line(), greeting());
});

test("over TLS the refusal line arrives encrypted and the slot comes back", async () => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "caps");
  await using server = await Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      "--tls-cert",
      cert.certFile,
      "--tls-key",
      cert.keyFile,
      "--max-per-ip",
      "1",
    ],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const target = { hostname: V4, port: server.port(), caCerts: [cert.pem] };
  const first = await Client.connect(target);
  try {
    assert.equal(await first.line(), greeting());
    {
      await using extra = await Client.connect(target);
      assert.deepEqual(
        await extra.rest(),
        { data: R.tooMany, ending: "eof" },
        String(extra.error),
      );
    }
    await release(server, first);
    await using again = await Client.connect(target);
    assert.equal(await again.line(), greeting());
  } finally {
    await first.close();
  }
});

// A TLS connection counts from accept: at most --max-sessions may be in
// their handshake at once, so silent clients cannot pile up descriptors
// for the 10 s handshake deadline (tcpserver -c counts from accept too).
Deno.test({
  ...needs(import.meta.url, "openssl"),
  name:
    "connections still in their TLS handshake count against the session cap",
  fn: async () => {
    await using scratch = await Sandbox.create();
    const cert = await makeCert(scratch, "cap");
    await using server = await Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.certFile,
        "--tls-key",
        cert.keyFile,
        "--max-sessions",
        "3",
      ],
      check: [scratch.script("ok")],
      password: scratch.script("ok"),
    });
    // The first TLS connection opens a few runtime descriptors for good:
    // take the baseline after one.
    await closeAll([
      await Client.connect({ hostname: V4, port: server.port() }),
    ]);
    await sleep(300);
    const base = fdCount(server.pid);
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        clients.push(
          await Client.connect({ hostname: V4, port: server.port() }),
        );
      }
      // The first drop is logged in full; the others are counted.
      await server.waitForLog(
        /ip=127\.0\.0\.1: limit reached: 3 TLS handshakes in progress, connection dropped$/,
      );
      // Dropped connections close asynchronously: wait for the count to settle.
      await until(
        () => fdCount(server.pid) - base <= 3 || undefined,
        3_000,
        `at most 3 descriptors held for 30 silent clients (held ${
          fdCount(server.pid) - base
        })`,
      );
    } finally {
      await closeAll(clients);
    }
    // All 30 arrived: 27 were dropped at accept; the summary says so
    // (at the latest when the server stops).
    await server.stop();
    assert.equal(droppedCount(server, "3 TLS handshakes in progress"), 27);
  },
});

/** Connections refused for `limit`: full lines plus the summaries' counts. */
function droppedCount(server: Server, limit: string): number {
  let count = 0;
  for (const line of server.grep(/limit reached: /)) {
    if (!line.includes(`limit reached: ${limit}`)) continue;
    const more = / (\d+) more connections? refused in the last /.exec(line);
    count += more ? Number(more[1]) : 1;
  }
  return count;
}

/** A TLS server on 127.0.0.1 with small caps, for the per-address tests. */
async function tlsCapped(scratch: Sandbox, extra: string[] = []) {
  const cert = await makeCert(scratch, "peer");
  const server = await Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      "--tls-cert",
      cert.certFile,
      "--tls-key",
      cert.keyFile,
      "--max-sessions",
      "6",
      "--max-per-ip",
      "2",
      ...extra,
    ],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  return { server, cert };
}

/** Plain TCP connections from `from` that never start a TLS handshake. */
async function silent(
  port: number,
  from: string,
  count: number,
): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = connect({ host: V4, port, localAddress: from });
    socket.on("error", () => {});
    sockets.push(socket);
    await within(
      new Promise<void>((resolve) => {
        socket.once("connect", resolve);
        socket.once("close", resolve);
      }),
      5_000,
      `silent connection ${i} from ${from}`,
    );
  }
  return sockets;
}

async function destroyAll(sockets: Socket[]): Promise<void> {
  await Promise.all(sockets.map((s) =>
    within(
      new Promise<void>((resolve) => {
        if (s.destroyed && s.closed) return resolve();
        s.once("close", () => resolve());
        s.destroy();
      }),
      5_000,
      "socket close",
    ).catch(() => {})
  ));
}

// Issue 18 item 1: silent connections from one address used to fill every
// handshake slot (--max-sessions in all) and lock every TLS client out.
test("one address holding silent TLS connections cannot stop another address's TLS session", async () => {
  await using scratch = await Sandbox.create();
  const { server, cert } = await tlsCapped(scratch);
  await using _ = server;
  const attacker = await silent(server.port(), "127.0.0.2", 12);
  try {
    // 2 are in their handshake, the other 10 were dropped at accept.
    await server.waitForLog(
      /ip=127\.0\.0\.2: limit reached: max-per-ip 2 TLS handshakes in progress, connection dropped$/,
    );
    await using c = await Client.connect({
      hostname: V4,
      port: server.port(),
      caCerts: [cert.pem],
    });
    assert.equal(await c.line(), greeting());
    assert.equal(await c.ask("quit"), R.bye);
  } finally {
    await destroyAll(attacker);
  }
  await server.stop();
  assert.equal(
    droppedCount(server, "max-per-ip 2 TLS handshakes in progress"),
    10,
  );
  assert.equal(droppedCount(server, "6 TLS handshakes in progress"), 0);
});

test("--per-ip-prefix4 groups clients: two addresses of one /24 share --max-per-ip", async () => {
  await using scratch = await Sandbox.create();
  const { server } = await tlsCapped(scratch, ["--per-ip-prefix4", "24"]);
  await using _ = server;
  const held = await silent(server.port(), "127.0.0.2", 2);
  try {
    const more = await silent(server.port(), "127.0.0.3", 1);
    held.push(...more);
    const line = await server.waitForLog(/limit reached: /);
    assert.match(
      line,
      /ip=127\.0\.0\.3: limit reached: max-per-ip 2 TLS handshakes in progress \(127\.0\.0\.0\/24\), connection dropped$/,
    );
  } finally {
    await destroyAll(held);
  }
});

Deno.test("refused connections are logged once per interval plus a count, not once each", async () => {
  await using scratch = await Sandbox.create();
  await using server = await capped(scratch);
  const held = [await admitted(server, V4), await admitted(server, V4)];
  try {
    for (let i = 0; i < 20; i++) await refused(server, V4);
  } finally {
    await closeAll(held);
  }
  await server.stop();
  const lines = server.grep(/limit reached: max-per-ip 2/);
  assert.equal(lines.length, 2, lines.join("\n"));
  assert.match(
    lines[0]!,
    /^qmail-poppass\[\d+\.0\] ip=127\.0\.0\.1: limit reached: max-per-ip 2, connection refused$/,
  );
  assert.match(
    lines[1]!,
    /^qmail-poppass\[\d+\]: limit reached: max-per-ip 2, 19 more connections refused in the last 10 s$/,
  );
});
