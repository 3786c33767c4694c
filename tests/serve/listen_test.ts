/**
 * Listen mode over real sockets: full sessions on IPv4 and IPv6 loopback,
 * the children's ucspi-tcp environment, failure delays that never slow
 * other sessions, the session caps, the plaintext guard, and SIGTERM.
 * Cases 4, 21, 24, 27 and 28 of `doc/test-plan.md`.
 */

import { forEachLauncher } from "../support/fd3exec.ts";
import assert from "node:assert/strict";
import { writeAccounts } from "../support/accounts.ts";
import { changePayload, checkPayload, hex } from "../support/bytes.ts";
import { readLedger } from "../support/ledger.ts";
import { Client, closeAll } from "../support/client.ts";
import { Sandbox } from "../support/sandbox.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { Server } from "../support/listen_server.ts";
import { timed } from "../support/time.ts";

const V4 = "127.0.0.1";
const V6 = "::1";

/** Start a server with fakeauth as both back ends and these accounts. */
async function fakeauthServer(
  scratch: Sandbox,
  options: string[],
  users: [string, string][],
  extraEnv: Record<string, string> = {},
) {
  const fa = scratch.fakeauth(extraEnv);
  await writeAccounts(fa.accounts, users);
  const server = await Server.start({ options, ...fa });
  return { server, fa };
}

/** Run the whole dialogue; returns the transcript the client received. */
async function change(c: Client, user: string, old: string, next: string) {
  const got = [await c.line()];
  got.push(await c.ask(`user ${user}`));
  got.push(await c.ask(`pass ${old}`));
  got.push(await c.ask(`newpass ${next}`));
  got.push(await c.ask("quit"));
  const end = await c.rest();
  return { got, end };
}

const FULL = [greeting(), R.userOk, R.passOk, R.changed, R.bye];

forEachLauncher(
  "listen mode serves full sessions on 127.0.0.1 and [::1] byte for byte",
  async (launch, t) => {
    await using scratch = await Sandbox.create();
    const users: [string, string][] = [["bob4", " old pw ü "], [
      "bob6",
      "old\tsix",
    ]];
    const { server, fa } = await fakeauthServer(
      scratch,
      [
        ...launch.flags,
        ...["--listen", "127.0.0.1:0", "--listen", "[::1]:0"],
      ],
      users,
    );
    await using _ = server;
    // The startup line says how back ends are started.
    const startup = server.logs.find((l) => l.includes("listening on"))!;
    assert.ok(startup.endsWith(launch.startup), startup);
    assert.deepEqual(server.bound.map((b) => [b.ip, b.tls]), [[V4, false], [
      V6,
      false,
    ]]);
    for (
      const [index, [ip, user, old, next]] of [
        [V4, "bob4", " old pw ü ", "  new ⚡ pw  "],
        [V6, "bob6", "old\tsix", "n"],
      ].entries()
    ) {
      await t.step(
        `a change over ${ip} gets exact replies and exact fd-3 octets`,
        async () => {
          await using c = await Client.connect({
            hostname: ip!,
            port: server.port(index),
          });
          const { got, end } = await change(c, user!, old!, next!);
          assert.deepEqual(got, FULL);
          assert.deepEqual(end, { data: "", ending: "eof" });
          const runs = (await readLedger(fa.ledger)).filter((e) =>
            hex(e.payload).startsWith(
              hex(new TextEncoder().encode(user! + "\0")),
            )
          );
          assert.deepEqual(runs.map((e) => [e.mode, e.exit]), [["check", "0"], [
            "set",
            "0",
          ]]);
          assert.deepEqual(runs[0]!.payload, checkPayload(user!, old!));
          assert.deepEqual(runs[1]!.payload, changePayload(user!, old!, next!));
          const accounts = await Deno.readTextFile(fa.accounts);
          assert.match(
            accounts,
            new RegExp(
              `^${hex(new TextEncoder().encode(user!))}:${
                hex(new TextEncoder().encode(next!))
              }$`,
              "m",
            ),
          );
          await server.waitForLog(
            new RegExp(
              `ip=${
                ip!.replace(/\./g, "\\.")
              }: Password change for ${user} succeeded$`,
            ),
          );
        },
      );
    }
    assert.equal(server.stdout, "");
  },
);

Deno.test("children get PROTO=TCP and the TCP endpoints of their session", async (t) => {
  await using scratch = await Sandbox.create();
  const { server, fa } = await fakeauthServer(
    scratch,
    ["--listen", "127.0.0.1:0", "--listen", "[::1]:0"],
    [["env4", "a"], ["env6", "b"]],
  );
  await using _ = server;
  for (
    const [index, ip, user, pw] of [[0, V4, "env4", "a"], [
      1,
      V6,
      "env6",
      "b",
    ]] as const
  ) {
    await t.step(
      `over ${ip} the ucspi-tcp variables name both ends`,
      async () => {
        await using c = await Client.connect({
          hostname: ip,
          port: server.port(index),
        });
        const { got } = await change(c, user, pw, "c");
        assert.deepEqual(got, FULL);
        const runs = (await readLedger(fa.ledger)).filter((e) =>
          hex(e.payload).startsWith(hex(new TextEncoder().encode(user + "\0")))
        );
        assert.equal(runs.length, 2);
        for (const run of runs) {
          assert.equal(run.env.PROTO, "TCP");
          assert.equal(run.env.TCPREMOTEIP, ip);
          assert.equal(run.env.TCPREMOTEPORT, String(c.localPort));
          assert.equal(run.env.TCPLOCALIP, ip);
          assert.equal(run.env.TCPLOCALPORT, String(server.port(index)));
        }
      },
    );
  }
});

/** Connect, name a user, send `pass`; the caller reads the verdict later. */
async function startFailing(port: number, user: string): Promise<Client> {
  const c = await Client.connect({ hostname: V4, port });
  assert.equal(await c.line(), greeting());
  assert.equal(await c.ask(`user ${user}`), R.userOk);
  await c.send("pass wrong\r\n");
  return c;
}

async function goodSession(port: number, user = "good"): Promise<number> {
  await using c = await Client.connect({ hostname: V4, port });
  const { value, ms } = await timed(() => change(c, user, "x", "y"));
  assert.deepEqual(value.got, FULL);
  return ms;
}

Deno.test("a session in its failure delay does not delay other sessions", async (t) => {
  await using scratch = await Sandbox.create();
  await using server = await Server.start({
    options: [
      "--listen",
      "127.0.0.1:0",
      "--fail-delay",
      "2",
      "--max-sessions",
      "100",
      "--max-per-ip",
      "0",
    ],
    check: [scratch.script("rule")],
    password: scratch.script("rule"),
  });
  const port = server.port();
  await t.step(
    "a good session completes in under 1 s while one fails with a 2 s delay",
    async () => {
      const start = performance.now();
      await using bad = await startFailing(port, "bad1");
      const ms = await goodSession(port);
      console.log(
        `good session beside one failing session: ${ms.toFixed(0)} ms`,
      );
      assert.ok(ms < 1_000, `good session took ${ms} ms`);
      assert.equal(await bad.line(4_000), R.authFailed);
      const waited = performance.now() - start;
      assert.ok(waited >= 2_000, `failure reply after only ${waited} ms`);
      assert.deepEqual(await bad.rest(), { data: "", ending: "eof" });
    },
  );
  await t.step(
    "50 sessions in their failure delay do not slow a good session",
    async () => {
      const alone = await goodSession(port);
      const bad: Client[] = [];
      try {
        for (let i = 0; i < 50; i++) {
          bad.push(
            await startFailing(port, `bad${i}`),
          );
        }
        const ms = await goodSession(port);
        console.log(
          `good session alone ${alone.toFixed(0)} ms, beside 50 failing: ${
            ms.toFixed(0)
          } ms`,
        );
        assert.ok(
          ms < 1_000,
          `good session took ${ms} ms beside 50 failing ones`,
        );
        for (const c of bad) {
          assert.equal(await c.line(4_000), R.authFailed);
          assert.deepEqual(await c.rest(), { data: "", ending: "eof" });
        }
      } finally {
        await closeAll(bad);
      }
    },
  );
});
