/**
 * Listen mode at startup: plaintext listeners off loopback are refused
 * (case 27 of `doc/test-plan.md`), and so are TLS files that
 * cannot serve and addresses that cannot be bound, each with one clear
 * line and the right exit code.
 */

import assert from "node:assert/strict";
import { Client } from "../support/client.ts";
import { makeCert } from "../support/certs.ts";
import { Sandbox } from "../support/sandbox.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { Server } from "../support/listen_server.ts";
import { needs, testWith } from "../support/tools.ts";

const V4 = "127.0.0.1";

const test = testWith(needs(import.meta.url, "openssl"));

Deno.test("a plaintext listener off loopback needs --allow-plaintext", async (t) => {
  await using scratch = await Sandbox.create();
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

test("a TLS listener will not start with a certificate and key it cannot use", async (t) => {
  await using scratch = await Sandbox.create();
  const [one, two] = [
    await makeCert(scratch, "one"),
    await makeCert(scratch, "two"),
  ];
  const junk = scratch.path("junk.pem");
  await Deno.writeTextFile(
    junk,
    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
  );
  const badKey = scratch.path("bad.key");
  await Deno.writeTextFile(
    badKey,
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
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
      one.certFile,
      /--tls-key names a certificate, not a private key: give the certificate's unencrypted key/,
    ],
    [
      "a broken key in --tls-key",
      one.certFile,
      badKey,
      /--tls-key holds no PEM private key \(.*\): give the certificate's unencrypted key/,
    ],
    [
      "certificate and key swapped",
      one.keyFile,
      one.certFile,
      /fatal: --tls-cert and --tls-key are swapped: --tls-cert names the private key and --tls-key the certificate; exchange the two file names$/,
    ],
    [
      "a key as the certificate",
      one.keyFile,
      one.keyFile,
      /--tls-cert names a private key, not a certificate: give the file that begins with -----BEGIN CERTIFICATE-----/,
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

test("an address that cannot be bound exits 111 with one line naming it", async (t) => {
  await using scratch = await Sandbox.create();
  await using busy = await Server.start({
    options: ["--listen", "127.0.0.1:0"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const taken = `127.0.0.1:${busy.port()}`;
  const cert = await makeCert(scratch, "busy");
  const tls = ["--tls-cert", cert.certFile, "--tls-key", cert.keyFile];
  for (const [what, extra] of [["plain", []], ["tls", tls]] as const) {
    await t.step(
      `a ${what} listener on a port in use, after one that worked`,
      async () => {
        const { code, logs } = await Server.run({
          options: ["--listen", "[::1]:0", "--listen", taken, ...extra],
          check: [scratch.script("ok")],
          password: scratch.script("ok"),
        });
        assert.equal(code, 111);
        assert.equal(logs.length, 1, logs.join("\n"));
        assert.match(
          logs[0]!,
          new RegExp(`fatal: cannot listen on ${taken}: .*in use`, "i"),
        );
      },
    );
  }
});

/** A port free on 0.0.0.0 and on [::] at the time of the call. */
function freePort(): number {
  for (let attempt = 0; attempt < 20; attempt++) {
    const v4 = Deno.listen({ hostname: "0.0.0.0", port: 0 });
    const port = (v4.addr as Deno.NetAddr).port;
    v4.close();
    try {
      Deno.listen({ hostname: "::", port }).close();
      return port;
    } catch {
      // taken on IPv6: try another
    }
  }
  throw new Error("no port free on both 0.0.0.0 and [::]");
}

// Issue 18 item 8: the example listen line of the packaged
// /etc/default/qmail-poppass failed with EADDRINUSE, because Deno's [::]
// socket also takes IPv4.
test("the shipped POPPASS_LISTEN example (0.0.0.0 and [::] on one port) starts and serves both families", async (t) => {
  const shipped = await Deno.readTextFile(
    new URL("../../packaging/systemd/qmail-poppass.default", import.meta.url),
  );
  const line = /^#?POPPASS_LISTEN=(.*)$/m.exec(shipped)?.[1];
  assert.equal(line, "0.0.0.0:106 [::]:106");
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "example");
  for (const order of [line, "[::]:106 0.0.0.0:106"]) {
    await t.step(`POPPASS_LISTEN="${order}" (port 106 replaced)`, async () => {
      const port = freePort();
      await using server = await Server.start({
        options: [],
        check: [scratch.script("ok")],
        password: scratch.script("ok"),
        env: {
          POPPASS_LISTEN: order.replaceAll(":106", `:${port}`),
          POPPASS_TLS_CERT: cert.certFile,
          POPPASS_TLS_KEY: cert.keyFile,
        },
      });
      assert.deepEqual(server.grep(/fatal|in use/i), []);
      for (const hostname of ["127.0.0.1", "::1"]) {
        await using c = await Client.connect({
          hostname,
          port,
          caCerts: [cert.pem],
        });
        assert.equal(
          await c.line(),
          greeting(),
          `${hostname}: ${c.error}\n${server.logs.join("\n")}`,
        );
        assert.equal(await c.ask("quit"), R.bye);
      }
    });
  }
});
