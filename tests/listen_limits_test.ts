/**
 * Listen mode's guards: the concurrency caps (case 21 of
 * `../shared/spec/test-plan.md`) and the refusal of plaintext listeners
 * off loopback (case 27), and of TLS files it cannot use.
 */

import assert from "node:assert/strict";
import { Client, closeAll } from "./listen_support/client.ts";
import { makeCert, Scratch } from "./listen_support/fixtures.ts";
import { fdCount } from "./listen_support/proc.ts";
import { greeting, R } from "./listen_support/replies.ts";
import { Server } from "./listen_support/server.ts";
import { sleep } from "./listen_support/time.ts";

const V4 = "127.0.0.1";
const V6 = "::1";

/** A server on both loopbacks, so two client IPs are available. */
function capped(scratch: Scratch): Promise<Server> {
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

Deno.test("the session caps refuse the extra connection and give the slot back", async (t) => {
  await using scratch = await Scratch.create();
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

Deno.test("a plaintext listener off loopback needs --allow-plaintext", async (t) => {
  await using scratch = await Scratch.create();
  const spec = (options: string[], env: Record<string, string> = {}) => ({
    options,
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
    env,
  });
  for (const address of ["0.0.0.0:0", "[::]:0", "192.0.2.1:106"]) {
    await t.step(
      `--listen ${address} alone exits 100 with one line naming --allow-plaintext`,
      async () => {
        const { code, logs, stdout } = await Server.run(
          spec(["--listen", address]),
        );
        assert.equal(code, 100);
        assert.equal(stdout, "");
        assert.equal(logs.length, 1, logs.join("\n"));
        assert.match(
          logs[0]!,
          /^qmail-poppass\[\d+\]: fatal: refusing a plaintext listener on .*--allow-plaintext/,
        );
      },
    );
  }
  await t.step(
    "a loopback listener beside an open one does not excuse it",
    async () => {
      const { code } = await Server.run(
        spec(["--listen", "127.0.0.1:0", "--listen", "0.0.0.0:0"]),
      );
      assert.equal(code, 100);
    },
  );
  const allowed: [string, string[], Record<string, string>][] = [
    ["--allow-plaintext", ["--listen", "0.0.0.0:0", "--allow-plaintext"], {}],
    ["POPPASS_ALLOW_PLAINTEXT=1", ["--listen", "0.0.0.0:0"], {
      POPPASS_ALLOW_PLAINTEXT: "1",
    }],
  ];
  for (const [how, options, env] of allowed) {
    await t.step(
      `with ${how} it binds 0.0.0.0 and serves (reached via 127.0.0.1)`,
      async () => {
        await using server = await Server.start(spec(options, env));
        assert.deepEqual(server.bound.map((b) => [b.ip, b.tls]), [[
          "0.0.0.0",
          false,
        ]]);
        await using c = await Client.connect({
          hostname: V4,
          port: server.port(),
        });
        assert.equal(await c.line(), greeting());
        assert.equal(await c.ask("quit"), R.bye);
        assert.equal((await server.stop()).code, 0);
      },
    );
  }
});

Deno.test("a TLS listener will not start with a certificate and key it cannot use", async (t) => {
  await using scratch = await Scratch.create();
  const [one, two] = [
    await makeCert(scratch, "one"),
    await makeCert(scratch, "two"),
  ];
  const junk = scratch.path("junk.pem");
  await Deno.writeTextFile(
    junk,
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  );
  const cases: [string, string, string, RegExp][] = [
    [
      "no certificate in --tls-cert",
      junk,
      one.keyFile,
      /--tls-cert holds no PEM certificate/,
    ],
    [
      "no key in --tls-key",
      one.certFile,
      junk,
      /--tls-key holds no PEM private key/,
    ],
    [
      "the key of another certificate",
      one.certFile,
      two.keyFile,
      /--tls-key does not belong/,
    ],
    [
      "a missing file",
      scratch.path("nope"),
      one.keyFile,
      /cannot read --tls-cert/,
    ],
  ];
  for (const [what, certFile, keyFile, expected] of cases) {
    await t.step(`${what}: exit 100 with one line saying so`, async () => {
      const { code, logs, stdout } = await Server.run({
        options: [
          "--listen",
          "127.0.0.1:0",
          "--tls-cert",
          certFile,
          "--tls-key",
          keyFile,
        ],
        check: [scratch.script("ok")],
        password: scratch.script("ok"),
      });
      assert.equal(code, 100);
      assert.equal(stdout, "");
      assert.equal(logs.length, 1, logs.join("\n"));
      assert.match(logs[0]!, expected);
    });
  }
});

// Known defect, kept as a specification: a TLS connection counts against
// the caps only once its handshake is done, so any number of silent
// clients each hold a descriptor for the 10 s handshake deadline, whatever
// --max-sessions says (tcpserver -c counts them from accept).
Deno.test({
  name:
    "connections still in their TLS handshake count against the session cap",
  ignore: true,
  fn: async () => {
    await using scratch = await Scratch.create();
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
    const base = fdCount(server.pid);
    const clients: Client[] = [];
    try {
      for (let i = 0; i < 30; i++) {
        clients.push(
          await Client.connect({ hostname: V4, port: server.port() }),
        );
      }
      await sleep(500);
      const held = fdCount(server.pid) - base;
      assert.ok(held <= 3, `${held} descriptors held for 30 silent clients`);
    } finally {
      await closeAll(clients);
    }
  },
});
