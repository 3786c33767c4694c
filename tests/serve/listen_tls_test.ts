/**
 * Implicit TLS in listen mode (case 26 of `doc/test-plan.md`):
 * a full session over TLS, clients that never start a handshake, plaintext
 * sent to the TLS port, and SIGHUP swapping the certificate.
 */

import assert from "node:assert/strict";
import { writeAccounts } from "../support/accounts.ts";
import { changePayload, checkPayload } from "../support/bytes.ts";
import { readLedger } from "../support/ledger.ts";
import { Client, closeAll } from "../support/client.ts";
import { type Cert, makeCert, servedFingerprint } from "../support/certs.ts";
import { Sandbox } from "../support/sandbox.ts";
import { fdCount } from "../support/procs.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { Server } from "../support/listen_server.ts";
import { sleep, timed, until } from "../support/time.ts";
import { needs, testWith } from "../support/tools.ts";

const V4 = "127.0.0.1";

function tlsOptions(cert: { certFile: string; keyFile: string }): string[] {
  return [
    "--listen",
    "127.0.0.1:0",
    "--tls-cert",
    cert.certFile,
    "--tls-key",
    cert.keyFile,
  ];
}

/** One full change over TLS; returns the replies. */
async function tlsChange(
  port: number,
  cert: Cert,
  user: string,
  old: string,
  next: string,
) {
  await using c = await Client.connect({
    hostname: V4,
    port,
    caCerts: [cert.pem],
  });
  const got = [await c.line()];
  for (
    const line of [`user ${user}`, `pass ${old}`, `newpass ${next}`, "quit"]
  ) {
    got.push(await c.ask(line));
  }
  const end = await c.rest();
  assert.deepEqual(end, { data: "", ending: "eof" }, String(c.error));
  return { got, port: c.localPort };
}

const FULL = [greeting(), R.userOk, R.passOk, R.changed, R.bye];

const test = testWith(needs(import.meta.url, "openssl"));

test("a TLS listener serves a full session with exact replies and fd-3 octets", async () => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  const fa = scratch.fakeauth();
  await writeAccounts(fa.accounts, [["tess", "old pw"]]);
  await using server = await Server.start({ options: tlsOptions(cert), ...fa });
  assert.deepEqual(server.bound.map((b) => [b.ip, b.tls]), [[V4, true]]);
  const { got, port } = await tlsChange(
    server.port(),
    cert,
    "tess",
    "old pw",
    "new pw",
  );
  assert.deepEqual(got, FULL);
  const runs = await readLedger(fa.ledger);
  assert.deepEqual(runs.map((e) => [e.mode, e.exit]), [["check", "0"], [
    "set",
    "0",
  ]]);
  assert.deepEqual(runs[0]!.payload, checkPayload("tess", "old pw"));
  assert.deepEqual(runs[1]!.payload, changePayload("tess", "old pw", "new pw"));
  for (const run of runs) {
    assert.deepEqual(
      ["PROTO", "TCPREMOTEIP", "TCPREMOTEPORT", "TCPLOCALIP", "TCPLOCALPORT"]
        .map((k) => run.env[k]),
      ["TCP", V4, String(port), V4, String(server.port())],
    );
  }
});

/** Wait until the server's descriptor count is back at (or below) `baseline`. */
function backTo(pid: number, baseline: number, ms: number): Promise<number> {
  return until(
    () => {
      const now = fdCount(pid);
      return now <= baseline ? now : undefined;
    },
    ms,
    `fd count of ${pid} back to ${baseline} (now ${fdCount(pid)})`,
  );
}

/** Open `n` TCP connections to the TLS port that never send a byte. */
async function silent(port: number, n: number): Promise<Client[]> {
  const clients: Client[] = [];
  for (let i = 0; i < n; i++) {
    clients.push(await Client.connect({ hostname: V4, port }));
  }
  return clients;
}

test("TLS clients that never handshake do not keep their sockets", async (t) => {
  await using scratch = await Sandbox.create();
  const cert = await makeCert(scratch, "server");
  await using server = await Server.start({
    options: [
      ...tlsOptions(cert),
      "--max-sessions",
      "200",
      "--max-per-ip",
      "0",
    ],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  assert.deepEqual((await tlsChange(port, cert, "warm", "a", "b")).got, FULL);
  await sleep(200);
  const baseline = fdCount(server.pid);

  await t.step(
    "50 silent clients that leave after 1 s release every descriptor",
    async () => {
      const clients = await silent(port, 50);
      try {
        await sleep(1_000);
        const during = fdCount(server.pid);
        assert.ok(
          during >= baseline + 45,
          `only ${during - baseline} more descriptors while connected`,
        );
        await closeAll(clients);
        const { value: after, ms } = await timed(() =>
          backTo(server.pid, baseline, 5_000)
        );
        console.log(
          `silent TLS clients closing after 1 s: fds ${baseline} before, ${during} while connected, ${after} after (${
            ms.toFixed(0)
          } ms)`,
        );
      } finally {
        await closeAll(clients);
      }
    },
  );

  await t.step(
    "50 silent clients that stay are dropped at the handshake deadline",
    async () => {
      const clients = await silent(port, 50);
      try {
        await sleep(500);
        const during = fdCount(server.pid);
        assert.ok(during >= baseline + 45, `only ${during - baseline} more`);
        const { value: endings, ms } = await timed(() =>
          Promise.all(clients.map((c) => c.rest(15_000)))
        );
        assert.ok(
          ms >= 9_000 && ms < 13_000,
          `dropped after ${ms} ms, not at the 10 s deadline`,
        );
        for (const end of endings) assert.equal(end.data, "");
        const after = await backTo(server.pid, baseline, 3_000);
        console.log(
          `silent TLS clients staying: fds ${baseline} before, ${during} while connected, ${after} after the server dropped them at ${
            (ms / 1000).toFixed(1)
          } s`,
        );
      } finally {
        await closeAll(clients);
      }
    },
  );

  await t.step(
    "plaintext sent to the TLS port is closed and the server goes on serving",
    async () => {
      {
        await using c = await Client.connect({ hostname: V4, port });
        await c.sendQuietly("user bob\r\npass secret\r\n");
        const { data } = await c.rest(5_000);
        // At most a TLS alert record (content type 21), never a poppassd reply.
        assert.ok(
          data === "" || data.charCodeAt(0) === 0x15,
          JSON.stringify(data),
        );
      }
      await server.waitForLog(/TLS handshake failed from 127\.0\.0\.1: /);
      assert.deepEqual(
        (await tlsChange(port, cert, "after", "a", "b")).got,
        FULL,
      );
      await backTo(server.pid, baseline, 3_000);
    },
  );
});

test("SIGHUP loads a new certificate for new connections; a running session goes on", async (t) => {
  await using scratch = await Sandbox.create();
  const first = await makeCert(scratch, "first");
  const second = await makeCert(scratch, "second");
  const live = {
    certFile: scratch.path("live.crt"),
    keyFile: scratch.path("live.key"),
  };
  const install = async (cert: Cert) => {
    await Deno.copyFile(cert.keyFile, live.keyFile);
    await Deno.copyFile(cert.certFile, live.certFile);
  };
  await install(first);
  await using server = await Server.start({
    options: tlsOptions(live),
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
  });
  const port = server.port();
  assert.equal(await servedFingerprint(port), first.fingerprint);
  await using running = await Client.connect({
    hostname: V4,
    port,
    caCerts: [first.pem],
  });
  assert.equal(await running.line(), greeting());
  assert.equal(await running.ask("user rita"), R.userOk);

  await t.step(
    "after SIGHUP new connections see the new certificate",
    async () => {
      await install(second);
      const from = server.logs.length;
      server.signal("SIGHUP");
      await server.waitForLog(/TLS certificate and key reloaded$/, 5_000, from);
      assert.equal(await servedFingerprint(port), second.fingerprint);
      assert.deepEqual(
        (await tlsChange(port, second, "new", "a", "b")).got,
        FULL,
      );
      await using old = await Client.connect({
        hostname: V4,
        port,
        caCerts: [first.pem],
      });
      assert.equal(
        await old.line(),
        undefined,
        "the old certificate is still served",
      );
    },
  );

  await t.step(
    "the session opened before SIGHUP finishes its change",
    async () => {
      assert.equal(await running.ask("pass a"), R.passOk);
      assert.equal(await running.ask("newpass b"), R.changed);
      assert.equal(await running.ask("quit"), R.bye);
      assert.deepEqual(await running.rest(), { data: "", ending: "eof" });
    },
  );

  const breakers: [string, () => Promise<void>][] = [
    ["a file that is no certificate", async () => {
      await Deno.writeTextFile(live.certFile, "not a certificate\n");
    }],
    ["a key that belongs to another certificate", async () => {
      await Deno.copyFile(second.certFile, live.certFile);
      await Deno.copyFile(first.keyFile, live.keyFile);
    }],
  ];
  for (const [what, breakIt] of breakers) {
    await t.step(`SIGHUP with ${what} keeps the current one`, async () => {
      await breakIt();
      const from = server.logs.length;
      server.signal("SIGHUP");
      await server.waitForLog(
        /TLS reload failed, keeping the old certificate: --tls-/,
        5_000,
        from,
      );
      assert.equal(await servedFingerprint(port), second.fingerprint);
      assert.deepEqual(
        (await tlsChange(port, second, "still", "a", "b")).got,
        FULL,
      );
    });
  }
});
