/**
 * Many instances behind a real HAProxy (Debian's /usr/sbin/haproxy) with
 * the PROXY protocol: two listen-mode instances started with
 * `--proxy-protocol 127.0.0.1/32` share one passwd-file; clients connect
 * from 127.0.0.2 and 127.0.0.3 so the tests can tell them apart. Also
 * stdio mode under `tcpserver -R -H -l localhost`, and the children's
 * TCPREMOTEIP in both modes (fakeauth's ledger records their environment).
 */

import assert from "node:assert/strict";
import { make, verify } from "../../lib/hash/mod.ts";
import { parseIpv6 } from "../../lib/serve/cidr.ts";
import { findEntry, readPasswdFile } from "../../lib/stores/passwdfile/file.ts";
import { BoundClient, Haproxy } from "../support/haproxy.ts";
import { Server } from "../support/listen_server.ts";
import { pool, until } from "../support/time.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { baseEnv, FAKEAUTH, MAIN, Sandbox } from "../support/sandbox.ts";
import { Tcpserver } from "../support/tcpserver.ts";
import { needs, testWith } from "../support/tools.ts";

const GREETING = greeting();
const TRUSTED = ["--proxy-protocol", "127.0.0.1/32"];
const QUICK = ["--fail-delay", "0.1", "--idle-timeout", "20"];
const enc = new TextEncoder();

/** A temp dir with a passwd-file of `users` (password `old-<user>`). */
async function passwdDir(users: readonly string[]) {
  const dir = await Deno.makeTempDir({ prefix: "poppass-haproxy-" });
  const lines = await Promise.all(
    users.map(async (u) =>
      `${u}:${await make("SHA512-CRYPT", enc.encode(`old-${u}`))}\n`
    ),
  );
  await Deno.writeTextFile(`${dir}/passwd`, lines.join(""));
  return dir;
}

/** Two instances on one passwd-file, HAProxy in front, both seen UP. */
async function cluster(
  dir: string,
  extra: readonly string[] = [],
  proxy: { version?: 1 | 2; check?: "connect" | "greeting" } = {},
) {
  const start = () =>
    Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        ...TRUSTED,
        ...QUICK,
        "--passwd-file",
        `${dir}/passwd`,
        "--passwd-scheme",
        "SHA512-CRYPT",
        ...extra,
      ],
      check: [],
      password: "",
    });
  const [a, b] = await Promise.all([start(), start()]);
  const servers = { a: a!, b: b! };
  try {
    const haproxy = await Haproxy.start({
      dir,
      backends: [
        { name: "a", port: servers.a.port() },
        { name: "b", port: servers.b.port() },
      ],
      ...proxy,
    });
    await haproxy.waitForStates({ a: "UP", b: "UP" });
    return { ...servers, haproxy };
  } catch (error) {
    await Promise.all([servers.a.stop(), servers.b.stop()]);
    throw error;
  }
}

type Cluster = Awaited<ReturnType<typeof cluster>>;

async function stopAll(c: Cluster, dir: string) {
  await c.haproxy.stop();
  await Promise.all([c.a.stop(), c.b.stop()]);
  await Deno.remove(dir, { recursive: true });
}

/** Lines about sessions (`ip=` lines) of both instances. */
const sessionLines = (c: Cluster) =>
  [...c.a.logs, ...c.b.logs].filter((l) => / ip=/.test(l));

/** One full change through the balancer; returns the transcript. */
async function change(port: number, source: string, user: string) {
  await using client = await BoundClient.connect(source, port);
  return [
    await client.line(),
    await client.ask(`user ${user}`),
    await client.ask(`pass old-${user}`),
    await client.ask(`newpass new-password-${user}`),
    await client.ask("quit"),
    await client.rest(),
  ];
}

/** Wait until `ms` have passed since `since`: health checks had time to run. */
const checksRan = (since: number, ms: number) =>
  until(
    () => performance.now() - since >= ms ? true : undefined,
    ms + 1_000,
    "health checks to run",
  );

const test = testWith(needs(import.meta.url, "haproxy"));

test("behind HAProxy (send-proxy-v2): every change lands exactly once, logged with the real address", async () => {
  const users = ["u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7"];
  const dir = await passwdDir(users);
  const c = await cluster(dir);
  const started = performance.now();
  try {
    // Sources alternate in pairs, servers one by one: each instance sees both.
    const source = (i: number) => i % 4 < 2 ? "127.0.0.2" : "127.0.0.3";
    const transcripts = await pool(
      users,
      4,
      (u, i) => change(c.haproxy.port, source(i), u),
    );
    for (const t of transcripts) {
      assert.deepEqual(t, [
        GREETING,
        R.userOk,
        R.passOk,
        R.changed,
        R.bye,
        "",
      ], sessionLines(c).join("\n"));
    }
    await checksRan(started, 1_500);
    const file = await readPasswdFile(`${dir}/passwd`);
    for (const [i, u] of users.entries()) {
      const lines = sessionLines(c).filter((l) =>
        l.endsWith(`: Password change for ${u} succeeded`)
      );
      assert.equal(lines.length, 1, `${u}: ${lines.join("\n")}`);
      assert.match(
        lines[0]!,
        new RegExp(` ip=${source(i).replaceAll(".", "\\.")}: `),
      );
      const entry = findEntry(file, enc.encode(u));
      assert.ok(entry, u);
      const stored = entry.password;
      assert.equal(
        (await verify(stored, enc.encode(`new-password-${u}`))).kind,
        "match",
      );
    }
    for (const s of [c.a, c.b]) {
      assert.match(s.logs[0]!, /; proxy-protocol from 127\.0\.0\.1\/32$/);
    }
    // Round robin: both instances served, both wrote to the one file.
    for (const s of [c.a, c.b]) {
      assert.ok(s.grep(/Password change for u\d succeeded/).length > 0);
    }
    // Only the clients' own sessions were logged: no health check (1.5 s
    // of `check inter 200` on two instances), no balancer address.
    const all = sessionLines(c);
    assert.ok(
      all.every((l) => / ip=127\.0\.0\.[23]: /.test(l)),
      all.join("\n"),
    );
    assert.equal(all.length, 3 * users.length, all.join("\n"));
    assert.deepEqual(
      [...c.a.logs, ...c.b.logs].filter((l) => !/ ip=|listening on /.test(l)),
      [],
    );
  } finally {
    await stopAll(c, dir);
  }
});

test("behind HAProxy: --max-per-ip counts the real address, per instance", async () => {
  const dir = await passwdDir(["alice"]);
  const c = await cluster(dir, ["--max-per-ip", "2"]);
  const open: BoundClient[] = [];
  try {
    // Round robin puts two sessions from 127.0.0.2 on each instance…
    for (let i = 0; i < 4; i++) {
      const client = await BoundClient.connect("127.0.0.2", c.haproxy.port);
      open.push(client);
      assert.equal(await client.line(), GREETING, `session ${i + 1}`);
    }
    // …so the fifth finds its instance full…
    const fifth = await BoundClient.connect("127.0.0.2", c.haproxy.port);
    open.push(fifth);
    assert.equal(await fifth.rest(), R.tooMany);
    // …while 127.0.0.3 is still welcome on both.
    for (let i = 0; i < 2; i++) {
      const other = await BoundClient.connect("127.0.0.3", c.haproxy.port);
      open.push(other);
      assert.equal(await other.line(), GREETING);
    }
    const refused = sessionLines(c).filter((l) => /limit reached/.test(l));
    assert.equal(refused.length, 1, refused.join("\n"));
    assert.match(
      refused[0]!,
      / ip=127\.0\.0\.2: limit reached: max-per-ip 2, connection refused$/,
    );
  } finally {
    await Promise.all(open.map((o) => o.close()));
    await stopAll(c, dir);
  }
});

test("a peer outside the trusted networks cannot forge its address", async (t) => {
  const dir = await passwdDir(["alice"]);
  const c = await cluster(dir);
  try {
    await t.step("directly, its PROXY line is a bad command", async () => {
      await using client = await BoundClient.connect("127.0.0.2", c.a.port());
      await client.send("PROXY TCP4 6.6.6.6 127.0.0.1 1111 106\r\n");
      assert.equal(await client.rest(), GREETING + R.usernameRequired);
    });
    await t.step(
      "through HAProxy, its PROXY line comes after the real header",
      async () => {
        await using client = await BoundClient.connect(
          "127.0.0.3",
          c.haproxy.port,
        );
        await client.send("PROXY TCP4 6.6.6.6 127.0.0.1 1111 106\r\n");
        assert.equal(await client.rest(), GREETING + R.usernameRequired);
      },
    );
    const lines = sessionLines(c);
    assert.ok(!lines.some((l) => l.includes("6.6.6.6")), lines.join("\n"));
    assert.deepEqual(
      lines.filter((l) => /protocol error/.test(l)).map((l) =>
        l.replace(/^.*? ip=/, "ip=")
      ),
      [
        "ip=127.0.0.2: protocol error: Username required.",
        "ip=127.0.0.3: protocol error: Username required.",
      ],
    );
  } finally {
    await stopAll(c, dir);
  }
});

Deno.test("a trusted peer must send a header: missing, malformed or late is closed without a greeting, one log line", async (t) => {
  const dir = await passwdDir(["alice"]);
  await using server = await Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      ...TRUSTED,
      ...QUICK,
      "--passwd-file",
      `${dir}/passwd`,
    ],
    check: [],
    password: "",
  });
  const rows: [string, string | Uint8Array, RegExp][] = [
    [
      "a command instead of a header",
      "user alice\r\n",
      /ip=127\.0\.0\.1: PROXY header refused: not a PROXY protocol header; connection closed$/,
    ],
    [
      "a v1 line over 107 octets",
      "PROXY TCP4 " + "1".repeat(120) + "\r\n",
      /ip=127\.0\.0\.1: PROXY header refused: v1 line longer than 107 octets; connection closed$/,
    ],
    [
      "a v2 header with a bad version",
      new Uint8Array([
        13,
        10,
        13,
        10,
        0,
        13,
        10,
        81,
        85,
        73,
        84,
        10,
        0x31,
        0x11,
        0,
        12,
      ]),
      /ip=127\.0\.0\.1: PROXY header refused: v2 with a version other than 2; connection closed$/,
    ],
    [
      "half a header, then nothing for 5 s",
      "PROXY TCP4 1.2.3.4",
      /ip=127\.0\.0\.1: no PROXY header within 5 s \(18 octets\); connection closed$/,
    ],
  ];
  for (const [name, data, logged] of rows) {
    await t.step(name, async () => {
      const from = server.logs.length;
      await using client = await BoundClient.connect(
        "127.0.0.1",
        server.port(),
      );
      await client.send(data);
      const started = performance.now();
      assert.equal(await client.rest(15_000), "");
      const line = await server.waitForLog(logged, 5_000, from);
      assert.ok(line);
      if (name.startsWith("half")) {
        assert.ok(performance.now() - started >= 4_500);
      }
      assert.equal(
        server.logs.length,
        from + 1,
        server.logs.slice(from).join("\n"),
      );
    });
  }
  await t.step("a header in 1-octet chunks, then the dialogue", async () => {
    const from = server.logs.length;
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port(),
    });
    try {
      conn.setNoDelay(true);
      const header = enc.encode("PROXY TCP6 2001:db8::7 ::1 4242 106\r\n");
      for (const octet of header) await conn.write(new Uint8Array([octet]));
      await conn.write(enc.encode("quit\r\n"));
      let text = "";
      const buffer = new Uint8Array(1024);
      for (
        let n = await conn.read(buffer);
        n !== null;
        n = await conn.read(buffer)
      ) {
        text += new TextDecoder().decode(buffer.subarray(0, n));
      }
      assert.equal(text, GREETING + R.bye);
    } finally {
      conn.close();
    }
    const end = await server.waitForLog(/session end: quit/, 5_000, from);
    assert.match(end, / ip=2001:db8::7: session end: quit, /);
  });
  await t.step(
    "v2 LOCAL and v1 UNKNOWN: the peer's own address; silent health checks",
    async () => {
      const local = new Uint8Array([
        13,
        10,
        13,
        10,
        0,
        13,
        10,
        81,
        85,
        73,
        84,
        10,
        0x20,
        0,
        0,
        0,
      ]);
      const rows: [string | Uint8Array, string][] = [
        [local, ""],
        [local, "quit\r\n"],
        ["PROXY UNKNOWN\r\n", ""],
        ["PROXY UNKNOWN\r\n", "quit\r\n"],
      ];
      const from = server.logs.length;
      for (const [header, then] of rows) {
        await using client = await BoundClient.connect(
          "127.0.0.1",
          server.port(),
        );
        await client.send(header);
        assert.equal(await client.line(), GREETING);
        if (then) {
          await client.send(then);
          assert.equal(await client.rest(), R.bye);
        }
      }
      // The two sessions that quit are logged under the peer's own address;
      // the two that sent nothing (health checks) are not logged at all.
      await until(
        () => server.grep(/session end: quit/).length >= 2 ? true : undefined,
        5_000,
        "two quit lines",
      );
      // The silent ones ended before the last quit was read: nothing more comes.
      const lines = server.logs.slice(from).map((l) =>
        l.replace(/^.*? ip=/, "ip=").replace(/, [\d.]+ s$/, "")
      );
      assert.deepEqual(lines, [
        "ip=127.0.0.1: session end: quit",
        "ip=127.0.0.1: session end: quit",
      ]);
    },
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("IPv6: a trusted ::1 peer's v2 header names an IPv6 client; without a header it is closed", async () => {
  const dir = await passwdDir(["alice"]);
  try {
    await using server = await Server.start({
      options: [
        "--listen",
        "[::1]:0",
        "--proxy-protocol",
        "::1/128",
        ...QUICK,
        "--passwd-file",
        `${dir}/passwd`,
      ],
      check: [],
      password: "",
    });
    const talk = async (data: Uint8Array) => {
      const conn = await Deno.connect({ hostname: "::1", port: server.port() });
      try {
        await conn.write(data);
        let text = "";
        const buffer = new Uint8Array(1024);
        for (
          let n = await conn.read(buffer);
          n !== null;
          n = await conn.read(buffer)
        ) {
          text += new TextDecoder().decode(buffer.subarray(0, n));
        }
        return text;
      } finally {
        conn.close();
      }
    };
    const v6 = (text: string) => [...parseIpv6(text)!];
    const header = new Uint8Array([
      ...[13, 10, 13, 10, 0, 13, 10, 81, 85, 73, 84, 10, 0x21, 0x21, 0, 36],
      ...v6("2001:db8::9"),
      ...v6("2001:db8::1"),
      ...[0x12, 0x34, 0, 106],
    ]);
    assert.equal(
      await talk(new Uint8Array([...header, ...enc.encode("quit\r\n")])),
      GREETING + R.bye,
    );
    await server.waitForLog(/ ip=2001:db8::9: session end: quit/);
    assert.equal(await talk(enc.encode("quit\r\n")), "");
    await server.waitForLog(
      / ip=::1: PROXY header refused: not a PROXY protocol header; connection closed$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("at most --max-sessions PROXY headers are awaited at once", async () => {
  const dir = await passwdDir(["alice"]);
  try {
    await using server = await Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        ...TRUSTED,
        "--max-sessions",
        "1",
        "--passwd-file",
        `${dir}/passwd`,
      ],
      check: [],
      password: "",
    });
    await using slow = await BoundClient.connect("127.0.0.1", server.port());
    await slow.send("PROXY ");
    // The slow header holds the only slot; the next trusted connection is closed.
    await until(
      async () => {
        await using next = await BoundClient.connect(
          "127.0.0.1",
          server.port(),
        );
        return (await next.rest()) === "" &&
            server.grep(/PROXY headers awaited/).length > 0
          ? true
          : undefined;
      },
      10_000,
      "a refused second header",
    );
    assert.match(
      server.grep(/PROXY headers awaited/)[0]!,
      / ip=127\.0\.0\.1: limit reached: 1 PROXY headers awaited, connection closed$/,
    );
    // The slow one still gets its session once its header is complete.
    await slow.send("TCP4 192.0.2.5 192.0.2.6 7 106\r\nquit\r\n");
    assert.equal(await slow.rest(), GREETING + R.bye);
    await server.waitForLog(/ ip=192\.0\.2\.5: session end: quit/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

test("after one instance is killed, HAProxy's checks move every new session to the other", async () => {
  const dir = await passwdDir(["alice"]);
  const c = await cluster(dir);
  try {
    c.a.signal("SIGKILL");
    await c.haproxy.waitForStates({ a: "DOWN", b: "UP" });
    const before = c.b.grep(/session end: quit/).length;
    for (let i = 0; i < 6; i++) {
      await using client = await BoundClient.connect(
        i % 2 ? "127.0.0.3" : "127.0.0.2",
        c.haproxy.port,
      );
      assert.equal(await client.line(), GREETING, `session ${i + 1}`);
      assert.equal(await client.ask("quit"), R.bye);
    }
    await until(
      () =>
        c.b.grep(/session end: quit/).length - before === 6 ? true : undefined,
      10_000,
      "six sessions on b",
    );
    assert.equal(c.b.grep(/ ip=127\.0\.0\.2: session end: quit/).length, 3);
    assert.equal(c.b.grep(/ ip=127\.0\.0\.3: session end: quit/).length, 3);
  } finally {
    await stopAll(c, dir);
  }
});

test("HAProxy with send-proxy (v1) and a greeting check: real address, health checks not logged", async () => {
  const dir = await passwdDir(["alice"]);
  const c = await cluster(dir, [], { version: 1, check: "greeting" });
  const started = performance.now();
  try {
    await using client = await BoundClient.connect("127.0.0.3", c.haproxy.port);
    assert.equal(await client.line(), GREETING);
    assert.equal(await client.ask("user alice"), R.userOk);
    assert.equal(await client.ask("pass wrong"), R.authFailed);
    assert.equal(await client.rest(), "");
    await checksRan(started, 1_500);
    const lines = sessionLines(c).map((l) => l.replace(/^.*? ip=/, "ip="));
    assert.deepEqual(lines.map((l) => l.replace(/, [\d.]+ s$/, "")), [
      "ip=127.0.0.3: authentication failed for alice: rejected, wrong password",
      "ip=127.0.0.3: session end: failure",
    ]);
  } finally {
    await stopAll(c, dir);
  }
});

/** fakeauth's ledger: the environment each check/set child saw. */
async function childEnvs(box: Sandbox) {
  return (await box.ledger()).map((e) => ({
    mode: e.mode,
    ip: e.env.TCPREMOTEIP,
    port: e.env.TCPREMOTEPORT,
    localIp: e.env.TCPLOCALIP,
    localPort: e.env.TCPLOCALPORT,
  }));
}

Deno.test(
  "children see the header's addresses as TCPREMOTEIP/PORT and TCPLOCALIP/PORT",
  needs(import.meta.url, "haproxy", "tcpserver"),
  async (t) => {
    await t.step("listen mode behind HAProxy", async () => {
      await using box = await Sandbox.create([["bob", "old-bob"]]);
      await using server = await Server.start({
        options: ["--listen", "127.0.0.1:0", ...TRUSTED, ...QUICK],
        check: [FAKEAUTH, "check"],
        password: `${FAKEAUTH} set`,
        env: box.env(),
      });
      await using haproxy = await Haproxy.start({
        dir: box.dir,
        backends: [{ name: "a", port: server.port() }],
      });
      await haproxy.waitForStates({ a: "UP" });
      await using client = await BoundClient.connect("127.0.0.2", haproxy.port);
      assert.equal(await client.line(), GREETING);
      assert.equal(await client.ask("user bob"), R.userOk);
      assert.equal(await client.ask("pass old-bob"), R.passOk);
      assert.equal(await client.ask("newpass new-bob"), R.changed);
      const want = {
        ip: "127.0.0.2",
        port: String(client.localPort),
        localIp: "127.0.0.1",
        localPort: String(haproxy.port),
      };
      const envs = await childEnvs(box);
      assert.deepEqual([...new Set(envs.map((e) => e.mode))], ["check", "set"]);
      for (const { mode: _, ...seen } of envs) assert.deepEqual(seen, want);
    });
    await t.step(
      "stdio mode under tcpserver -R -H -l localhost, TCPREMOTEIP trusted",
      async () => {
        await using box = await Sandbox.create([["carol", "old-carol"]]);
        await using tcpserver = await Tcpserver.start({
          program: [
            MAIN,
            ...TRUSTED,
            ...QUICK,
            "pop.example",
            FAKEAUTH,
            "check",
          ],
          env: {
            ...baseEnv(),
            ...box.env(),
            PASSWORD_COMMAND: `${FAKEAUTH} set`,
          },
        });
        // A raw v1 header, exact octets, from 127.0.0.1 (trusted).
        await using client = await BoundClient.connect(
          "127.0.0.1",
          tcpserver.port,
        );
        await client.send(
          "PROXY TCP4 203.0.113.9 192.0.2.1 51000 106\r\nuser carol\r\n",
        );
        assert.equal(await client.line(), GREETING);
        assert.equal(await client.line(), R.userOk);
        assert.equal(await client.ask("pass old-carol"), R.passOk);
        assert.equal(await client.ask("newpass new-carol"), R.changed);
        assert.equal(await client.ask("quit"), R.bye);
        await tcpserver.idle(1, 15_000);
        const envs = await childEnvs(box);
        assert.ok(envs.length >= 2, JSON.stringify(envs));
        for (const e of envs) {
          assert.deepEqual(
            {
              ip: e.ip,
              port: e.port,
              localIp: e.localIp,
              localPort: e.localPort,
            },
            {
              ip: "203.0.113.9",
              port: "51000",
              localIp: "192.0.2.1",
              localPort: "106",
            },
          );
        }
        assert.match(
          tcpserver.log,
          /ip=203\.0\.113\.9: Password change for carol succeeded/,
        );
        assert.doesNotMatch(tcpserver.log, /ip=127\.0\.0\.1:/);
      },
    );
    await t.step(
      "stdio mode under tcpserver behind HAProxy (send-proxy-v2)",
      async () => {
        await using box = await Sandbox.create([["dave", "old-dave"]]);
        await using tcpserver = await Tcpserver.start({
          program: [
            MAIN,
            ...TRUSTED,
            ...QUICK,
            "pop.example",
            FAKEAUTH,
            "check",
          ],
          env: {
            ...baseEnv(),
            ...box.env(),
            PASSWORD_COMMAND: `${FAKEAUTH} set`,
          },
        });
        // Every check starts a process under tcpserver: check once a second.
        await using haproxy = await Haproxy.start({
          dir: box.dir,
          backends: [{ name: "a", port: tcpserver.port }],
          inter: 1_000,
        });
        await haproxy.waitForStates({ a: "UP" });
        await using client = await BoundClient.connect(
          "127.0.0.3",
          haproxy.port,
        );
        assert.equal(await client.line(), GREETING);
        assert.equal(await client.ask("user dave"), R.userOk);
        assert.equal(await client.ask("pass old-dave"), R.passOk);
        assert.equal(await client.ask("newpass new-dave"), R.changed);
        assert.equal(await client.ask("quit"), R.bye);
        const envs = await childEnvs(box);
        assert.ok(envs.length >= 2, JSON.stringify(envs));
        for (const { mode: _, ...seen } of envs) {
          assert.deepEqual(seen, {
            ip: "127.0.0.3",
            port: String(client.localPort),
            localIp: "127.0.0.1",
            localPort: String(haproxy.port),
          });
        }
        await until(
          () =>
            /ip=127\.0\.0\.3: session end: quit/.test(tcpserver.log)
              ? true
              : undefined,
          10_000,
          "the session's end in the log",
        );
        const ours = tcpserver.log.split("\n").filter((l) => / ip=/.test(l));
        assert.ok(
          ours.every((l) => / ip=127\.0\.0\.3: /.test(l)),
          ours.join("\n"),
        );
      },
    );
  },
);
