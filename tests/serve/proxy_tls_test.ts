/**
 * `--proxy-protocol` with `--tls-cert` in listen mode: HAProxy in TCP mode
 * (`send-proxy-v2`) sends the PROXY header in clear before the client's
 * TLS ClientHello, so a trusted peer's header is read from the raw socket,
 * then the handshake runs over the rest of the stream. The header's
 * source is then the client for the log, the TLS handshake caps,
 * `--max-per-ip` and the children; others get TLS directly.
 */

import assert from "node:assert/strict";
import { make, verify } from "../../lib/hash/mod.ts";
import { findEntry, readPasswdFile } from "../../lib/stores/passwdfile/file.ts";
import { writeAccounts } from "../support/accounts.ts";
import { Haproxy } from "../support/haproxy.ts";
import { readLedger } from "../support/ledger.ts";
import { type Cert, makeCert } from "../support/certs.ts";
import { Sandbox } from "../support/sandbox.ts";
import { Server } from "../support/listen_server.ts";
import { pool, until, within } from "../support/time.ts";
import { fdCount } from "../support/procs.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import {
  ProxyTlsClient,
  rawSocket,
  V2_LOCAL,
  v2Header,
} from "../support/proxy_tls_client.ts";
import { needs, testWith } from "../support/tools.ts";

const GREETING = greeting();
const TRUSTED = ["--proxy-protocol", "127.0.0.1/32"];
const QUICK = ["--fail-delay", "0.1", "--idle-timeout", "20"];
const enc = new TextEncoder();

function tlsOptions(cert: Cert): string[] {
  return [
    "--listen",
    "127.0.0.1:0",
    "--tls-cert",
    cert.certFile,
    "--tls-key",
    cert.keyFile,
  ];
}

/** Log lines from `from` on, without the pid/session prefix and duration. */
const tail = (server: Server, from: number) =>
  server.logs.slice(from).map((l) =>
    l.replace(/^.*? ip=/, "ip=").replace(/, [\d.]+ s$/, "")
  );

/** Wait until `socket` is closed by the server (bounded). */
function closedBy(socket: { once(e: "close", f: () => void): unknown }) {
  return within(
    new Promise<void>((resolve) => socket.once("close", () => resolve())),
    15_000,
    "the server to close the connection",
  );
}

const test = testWith(needs(import.meta.url, "openssl"));

test("a v2 header in clear, then TLS: the header's client in the log and for the children", async (t) => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  const fa = scratch.fakeauth();
  await writeAccounts(fa.accounts, [["tess", "old pw"]]);
  await using server = await Server.start({
    options: [...tlsOptions(cert), ...TRUSTED, ...QUICK],
    ...fa,
  });
  assert.match(
    server.logs[0]!,
    /; proxy-protocol from 127\.0\.0\.1\/32 \(header before TLS\)$/,
  );
  const port = server.port();

  await t.step(
    "a full change; TCPREMOTEIP/PORT, TCPLOCALIP/PORT from the header",
    async () => {
      const from = server.logs.length;
      await using c = await ProxyTlsClient.connect({
        port,
        ca: cert.pem,
        header: v2Header("192.0.2.7", 4242, "192.0.2.1", 106),
      });
      assert.equal(await c.line(), GREETING);
      assert.equal(await c.ask("user tess"), R.userOk);
      assert.equal(await c.ask("pass old pw"), R.passOk);
      assert.equal(await c.ask("newpass new pw"), R.changed);
      assert.equal(await c.ask("quit"), R.bye);
      assert.equal(await c.rest(), "");
      await server.waitForLog(/session end: quit/, 5_000, from);
      assert.deepEqual(tail(server, from), [
        "ip=192.0.2.7: authentication succeeded for tess",
        "ip=192.0.2.7: Password change for tess succeeded",
        "ip=192.0.2.7: session end: quit",
      ]);
      const runs = await readLedger(fa.ledger);
      assert.deepEqual(runs.map((r) => r.mode), ["check", "set"]);
      for (const run of runs) {
        assert.deepEqual(
          ["TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT"].map((
            k,
          ) => run.env[k]),
          ["192.0.2.7", "4242", "192.0.2.1", "106"],
        );
      }
    },
  );

  await t.step("the header and the ClientHello in one write", async () => {
    const from = server.logs.length;
    {
      await using c = await ProxyTlsClient.connect({
        port,
        ca: cert.pem,
        header: v2Header("192.0.2.10", 4343, "192.0.2.1", 106),
        coalesce: true,
      });
      assert.equal(await c.line(), GREETING);
      assert.equal(await c.ask("quit"), R.bye);
      assert.equal(await c.rest(), "");
    }
    await server.waitForLog(/session end: quit/, 5_000, from);
    assert.deepEqual(tail(server, from), ["ip=192.0.2.10: session end: quit"]);
  });

  await t.step(
    "v2 LOCAL keeps the socket's own address; silent checks are not logged",
    async () => {
      const from = server.logs.length;
      {
        await using c = await ProxyTlsClient.connect({
          port,
          ca: cert.pem,
          header: V2_LOCAL,
        });
        assert.equal(await c.line(), GREETING);
        assert.equal(await c.ask("quit"), R.bye);
      }
      await server.waitForLog(/session end: quit/, 5_000, from);
      // A check that closes after its header, and one that completes the
      // handshake and leaves without a word.
      const check = await rawSocket("127.0.0.1", port);
      check.write(V2_LOCAL);
      await new Promise((resolve) => setTimeout(resolve, 200));
      check.end();
      await closedBy(check);
      {
        await using c = await ProxyTlsClient.connect({
          port,
          ca: cert.pem,
          header: V2_LOCAL,
        });
        assert.equal(await c.line(), GREETING);
      }
      // A last session, so that anything the checks logged would be in by now.
      {
        await using c = await ProxyTlsClient.connect({
          port,
          ca: cert.pem,
          header: v2Header("192.0.2.8", 1, "192.0.2.1", 106),
        });
        assert.equal(await c.line(), GREETING);
        assert.equal(await c.ask("quit"), R.bye);
      }
      await server.waitForLog(
        /ip=192\.0\.2\.8: session end: quit/,
        5_000,
        from,
      );
      assert.deepEqual(tail(server, from), [
        "ip=127.0.0.1: session end: quit",
        "ip=192.0.2.8: session end: quit",
      ]);
    },
  );

  await t.step(
    "a peer outside the trusted networks gets TLS directly",
    async () => {
      const from = server.logs.length;
      {
        await using c = await ProxyTlsClient.connect({
          port,
          ca: cert.pem,
          source: "127.0.0.2",
        });
        assert.equal(await c.line(), GREETING);
        assert.equal(await c.ask("quit"), R.bye);
      }
      await server.waitForLog(/session end: quit/, 5_000, from);
      assert.deepEqual(tail(server, from), ["ip=127.0.0.2: session end: quit"]);
    },
  );
});

test("a trusted peer that starts TLS without a header is closed without a greeting, one log line", async (t) => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  await using server = await Server.start({
    options: [...tlsOptions(cert), ...TRUSTED, ...QUICK],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  await t.step("a ClientHello instead of a header", async () => {
    const from = server.logs.length;
    await assert.rejects(
      ProxyTlsClient.connect({ port: server.port(), ca: cert.pem }),
    );
    await server.waitForLog(/PROXY header refused/, 5_000, from);
    // A session that follows: anything more about the refused one is in by now.
    await using c = await ProxyTlsClient.connect({
      port: server.port(),
      ca: cert.pem,
      header: v2Header("192.0.2.9", 9, "192.0.2.1", 106),
    });
    assert.equal(await c.line(), GREETING);
    assert.equal(await c.ask("quit"), R.bye);
    await server.waitForLog(/session end: quit/, 5_000, from);
    assert.deepEqual(tail(server, from), [
      "ip=127.0.0.1: PROXY header refused: not a PROXY protocol header; connection closed",
      "ip=192.0.2.9: session end: quit",
    ]);
  });
  await t.step("nothing at all for 5 s", async () => {
    const from = server.logs.length;
    const silent = await rawSocket("127.0.0.1", server.port());
    const started = performance.now();
    await closedBy(silent);
    assert.ok(performance.now() - started >= 4_500);
    await server.waitForLog(/no PROXY header/, 5_000, from);
    assert.deepEqual(tail(server, from), [
      "ip=127.0.0.1: no PROXY header within 5 s (0 octets); connection closed",
    ]);
  });
});

test("the per-IP TLS handshake cap counts the header's source, not the balancer", async () => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  await using server = await Server.start({
    options: [...tlsOptions(cert), ...TRUSTED, "--max-per-ip", "2"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  // Three connections from the balancer's address whose headers name
  // 127.0.0.2 and that never start TLS: two take 127.0.0.2's handshake
  // slots, the third is dropped.
  const silent = [];
  try {
    for (let i = 0; i < 3; i++) {
      const socket = await rawSocket("127.0.0.1", port);
      socket.write(v2Header("127.0.0.2", 5000 + i, "127.0.0.1", port));
      silent.push(socket);
    }
    const refused = await server.waitForLog(/limit reached/, 10_000);
    assert.match(
      refused,
      / ip=127\.0\.0\.2: limit reached: max-per-ip 2 TLS handshakes in progress, connection dropped$/,
    );
    await within(
      Promise.race(silent.map((s) => closedBy(s))),
      15_000,
      "the dropped connection's close",
    );
    // Another client from the same balancer, header 127.0.0.3: served.
    await using c = await ProxyTlsClient.connect({
      port,
      ca: cert.pem,
      header: v2Header("127.0.0.3", 6000, "127.0.0.1", port),
    });
    assert.equal(await c.line(), GREETING);
    assert.equal(await c.ask("quit"), R.bye);
    await server.waitForLog(/ ip=127\.0\.0\.3: session end: quit/);
    // 127.0.0.2 itself still waits for its slots.
    await assert.rejects(
      ProxyTlsClient.connect({
        port,
        ca: cert.pem,
        header: v2Header("127.0.0.2", 7000, "127.0.0.1", port),
      }),
    );
    assert.deepEqual(
      server.logs.slice(1).map((l) => l.replace(/^.*? ip=/, "ip=")).filter(
        (l) => !/session end: quit/.test(l),
      ),
      [
        "ip=127.0.0.2: limit reached: max-per-ip 2 TLS handshakes in progress, connection dropped",
      ],
    );
  } finally {
    for (const socket of silent) socket.destroy();
  }
});

Deno.test(
  "behind HAProxy (send-proxy-v2, TLS passed through): full changes on a shared passwd-file, real addresses",
  needs(import.meta.url, "haproxy", "openssl"),
  async () => {
    await using scratch = await Sandbox.create();
    const cert = await makeCert(scratch, "server");
    const users = ["u0", "u1", "u2", "u3", "u4", "u5"];
    const passwd = scratch.path("passwd");
    await Deno.writeTextFile(
      passwd,
      (await Promise.all(
        users.map(async (u) =>
          `${u}:${await make("SHA512-CRYPT", enc.encode(`old-${u}`))}\n`
        ),
      )).join(""),
    );
    const start = () =>
      Server.start({
        options: [
          ...tlsOptions(cert),
          ...TRUSTED,
          ...QUICK,
          "--passwd-file",
          passwd,
          "--passwd-scheme",
          "SHA512-CRYPT",
        ],
        check: [],
        password: "",
      });
    await using a = await start();
    await using b = await start();
    // `check` + `check-send-proxy`: a TCP connect that sends a v2 LOCAL
    // header and closes; no TLS needed for the check.
    await using haproxy = await Haproxy.start({
      dir: scratch.dir,
      backends: [{ name: "a", port: a.port() }, { name: "b", port: b.port() }],
    });
    await haproxy.waitForStates({ a: "UP", b: "UP" });
    const started = performance.now();
    const source = (i: number) => i % 4 < 2 ? "127.0.0.2" : "127.0.0.3";
    const transcripts = await pool(users, 3, async (u, i) => {
      await using c = await ProxyTlsClient.connect({
        port: haproxy.port,
        ca: cert.pem,
        source: source(i),
      });
      return [
        await c.line(),
        await c.ask(`user ${u}`),
        await c.ask(`pass old-${u}`),
        await c.ask(`newpass new-password-${u}`),
        await c.ask("quit"),
        await c.rest(),
      ];
    });
    const sessionLines = () =>
      [...a.logs, ...b.logs].filter((l) => / ip=/.test(l));
    for (const t of transcripts) {
      assert.deepEqual(
        t,
        [GREETING, R.userOk, R.passOk, R.changed, R.bye, ""],
        sessionLines().join("\n"),
      );
    }
    // Let the health checks run (`inter 200` on both instances).
    await until(
      () => performance.now() - started >= 1_500 ? true : undefined,
      3_000,
      "health checks to run",
    );
    const file = await readPasswdFile(passwd);
    for (const [i, u] of users.entries()) {
      const lines = sessionLines().filter((l) =>
        l.endsWith(`: Password change for ${u} succeeded`)
      );
      assert.equal(lines.length, 1, `${u}: ${lines.join("\n")}`);
      assert.match(
        lines[0]!,
        new RegExp(` ip=${source(i).replaceAll(".", "\\.")}: `),
      );
      const entry = findEntry(file, enc.encode(u));
      assert.ok(entry, u);
      assert.equal(
        (await verify(entry.password, enc.encode(`new-password-${u}`))).kind,
        "match",
      );
    }
    for (const s of [a, b]) {
      assert.ok(s.grep(/Password change for u\d succeeded/).length > 0);
    }
    // Only the clients' sessions were logged: no health check, no TLS
    // failure, no balancer address.
    const all = sessionLines();
    assert.ok(
      all.every((l) => / ip=127\.0\.0\.[23]: /.test(l)),
      all.join("\n"),
    );
    assert.equal(all.length, 3 * users.length, all.join("\n"));
    assert.deepEqual(
      [...a.logs, ...b.logs].filter((l) => !/ ip=|listening on /.test(l)),
      [],
    );
  },
);

Deno.test(
  "behind HAProxy with a greeting check over TLS (check-ssl): UP, checks not logged",
  needs(import.meta.url, "haproxy", "openssl"),
  async () => {
    await using scratch = await Sandbox.create();
    const cert = await makeCert(scratch, "server");
    await using server = await Server.start({
      options: [...tlsOptions(cert), ...TRUSTED, ...QUICK],
      check: [scratch.script("ok")],
      password: scratch.script("ok"),
    });
    // The check sends a v2 LOCAL header, does TLS, reads the greeting, leaves.
    await using haproxy = await Haproxy.start({
      dir: scratch.dir,
      backends: [{ name: "a", port: server.port() }],
      check: "tlsGreeting",
    });
    await haproxy.waitForStates({ a: "UP" });
    const started = performance.now();
    {
      await using c = await ProxyTlsClient.connect({
        port: haproxy.port,
        ca: cert.pem,
        source: "127.0.0.3",
      });
      assert.equal(await c.line(), GREETING);
      assert.equal(await c.ask("quit"), R.bye);
    }
    await server.waitForLog(/session end: quit/);
    await until(
      () => performance.now() - started >= 1_500 ? true : undefined,
      3_000,
      "health checks to run",
    );
    assert.deepEqual(tail(server, 1), ["ip=127.0.0.3: session end: quit"]);
  },
);

test("silent after the header: dropped at the TLS handshake deadline, descriptors released", async () => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  await using server = await Server.start({
    options: [...tlsOptions(cert), ...TRUSTED, "--max-per-ip", "0"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  {
    // Warm up the TLS code, so the baseline holds what it keeps open.
    await using c = await ProxyTlsClient.connect({
      port,
      ca: cert.pem,
      header: v2Header("192.0.2.20", 1, "127.0.0.1", port),
    });
    assert.equal(await c.line(), GREETING);
  }
  await server.waitForLog(/session end/);
  const baseline = fdCount(server.pid);
  const silent = [];
  try {
    for (let i = 0; i < 20; i++) {
      const socket = await rawSocket("127.0.0.1", port);
      socket.write(v2Header(`192.0.2.${30 + i}`, 1000 + i, "127.0.0.1", port));
      silent.push(socket);
    }
    const during = await until(
      () =>
        fdCount(server.pid) >= baseline + 20 ? fdCount(server.pid) : undefined,
      5_000,
      "20 more descriptors",
    );
    const started = performance.now();
    await within(
      Promise.all(silent.map((s) => closedBy(s))),
      20_000,
      "every silent connection closed by the server",
    );
    const ms = performance.now() - started;
    // 10 s from the header (TLS_HANDSHAKE_MS), not 5 s (PROXY_HEADER_MS).
    assert.ok(ms >= 8_000 && ms < 14_000, `closed after ${ms} ms`);
    const after = await until(
      () => fdCount(server.pid) <= baseline ? fdCount(server.pid) : undefined,
      5_000,
      `descriptors back to ${baseline}`,
    );
    console.log(
      `silent after the PROXY header: fds ${baseline} before, ${during} while connected, ${after} after the drop at ${
        (ms / 1000).toFixed(1)
      } s`,
    );
  } finally {
    for (const socket of silent) socket.destroy();
  }
  // The handshake failures are logged under the headers' addresses.
  assert.equal(
    server.grep(/TLS handshake failed from 192\.0\.2\.\d+: /).length,
    20,
  );
});

test("at most --max-sessions PROXY headers are awaited at once before TLS", async () => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  await using server = await Server.start({
    options: [...tlsOptions(cert), ...TRUSTED, "--max-sessions", "1"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  const slow = await rawSocket("127.0.0.1", port);
  try {
    slow.write("PROXY ");
    await until(
      async () => {
        const next = await rawSocket("127.0.0.1", port);
        try {
          await closedBy(next);
        } finally {
          next.destroy();
        }
        return server.grep(/PROXY headers awaited/).length > 0
          ? true
          : undefined;
      },
      15_000,
      "a refused second header",
    );
    assert.match(
      server.grep(/PROXY headers awaited/)[0]!,
      / ip=127\.0\.0\.1: limit reached: 1 PROXY headers awaited, connection closed$/,
    );
  } finally {
    slow.destroy();
  }
});

test("--max-per-ip counts sessions by the header's source over TLS", async () => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  await using server = await Server.start({
    options: [...tlsOptions(cert), ...TRUSTED, ...QUICK, "--max-per-ip", "1"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  const from = (ip: string, sport: number) =>
    ProxyTlsClient.connect({
      port,
      ca: cert.pem,
      header: v2Header(ip, sport, "127.0.0.1", port),
    });
  await using first = await from("127.0.0.2", 1);
  assert.equal(await first.line(), GREETING);
  {
    await using second = await from("127.0.0.2", 2);
    assert.equal(await second.rest(), R.tooMany);
  }
  {
    await using other = await from("127.0.0.3", 3);
    assert.equal(await other.line(), GREETING);
    assert.equal(await other.ask("quit"), R.bye);
  }
  await server.waitForLog(/ ip=127\.0\.0\.3: session end: quit/);
  assert.deepEqual(tail(server, 1), [
    "ip=127.0.0.2: limit reached: max-per-ip 1, connection refused",
    "ip=127.0.0.3: session end: quit",
  ]);
});
