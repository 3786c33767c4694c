/**
 * The LDAP store end to end against a real slapd: `main.ts` in stdio mode
 * under `tcpserver -R -H -l localhost` and in listen mode, exact bytes on
 * the wire, results confirmed with `ldapwhoami`; and the bundle, run with
 * the package launcher's flags (`--no-npm`), loading the store.
 */

import assert from "node:assert/strict";
import { PEOPLE, Slapd, SLAPD_TOOLS, userDn } from "../../support/slapd.ts";
import { baseEnv, GREETING, HOST, MAIN, ROOT } from "../../support/sandbox.ts";
import { needs } from "../../support/tools.ts";
import { converse } from "../../support/talk.ts";
import { Client } from "../../support/client.ts";
import { Tcpserver } from "../../support/tcpserver.ts";
import { Server } from "../../support/listen_server.ts";

const TEMPLATE = `uid=%n,${PEOPLE}`;
const CHANGED = GREETING + "200 Your password please.\r\n" +
  "200 Your new password please.\r\n200 Password changed, thank-you.\r\n";
const AUTH_FAILED = GREETING + "200 Your password please.\r\n" +
  "500 Old password is incorrect or user not found.\r\n";
const TEMPORARY = GREETING + "200 Your password please.\r\n" +
  "500 Temporary failure, please try again later.\r\n";
const CHANGE_FAILED = GREETING + "200 Your password please.\r\n" +
  "200 Your new password please.\r\n500 Password change failed.\r\n";

const sanitizer = {
  sanitizeOps: true,
  sanitizeResources: true,
  ...needs(import.meta.url, ...SLAPD_TOOLS),
};

function ldapArgs(slapd: Slapd): string[] {
  return ["--ldap-url", slapd.url, "--ldap-user-dn", TEMPLATE];
}

/** Open a connection, run the dialogue, return everything received. */
async function session(port: number, lines: string[]): Promise<string> {
  await using client = await Client.connect(port);
  return await converse(client.talk, lines, 15_000);
}

function assertNoPasswords(log: string, passwords: string[]): void {
  for (const password of passwords) {
    assert.ok(!log.includes(password), `log holds ${password}:\n${log}`);
  }
}

Deno.test(
  "LDAP store in stdio mode under tcpserver: exact replies, ldapwhoami confirms",
  { ...sanitizer, ...needs(import.meta.url, ...SLAPD_TOOLS, "tcpserver") },
  async () => {
    await using slapd = await Slapd.start({ ppolicy: true });
    await slapd.addUsers([
      { uid: "alice", password: "alice-old-1", mail: "alice@example.org" },
      { uid: "bob", password: "bob-old-1" },
    ]);
    await using server = await Tcpserver.start({
      program: [MAIN, "--fail-delay", "0.3", ...ldapArgs(slapd), HOST],
      env: baseEnv(),
    });
    const alice = userDn({ uid: "alice" });
    assert.equal(
      await session(server.port, [
        "user alice@example.org",
        "pass alice-old-1",
        "newpass alice-new-Q7",
        "quit",
      ]),
      CHANGED + "200 Bye.\r\n",
    );
    assert.equal(await slapd.whoami(alice, "alice-new-Q7"), `dn:${alice}`);
    assert.equal(await slapd.whoami(alice, "alice-old-1"), undefined);
    assert.equal(
      await session(server.port, ["user alice", "pass alice-old-1"]),
      AUTH_FAILED,
    );
    assert.equal(
      await session(server.port, ["user nobody", "pass alice-new-Q7"]),
      AUTH_FAILED,
    );
    assert.equal(
      await session(server.port, ["user *", "pass alice-new-Q7"]),
      AUTH_FAILED,
    );
    // ppolicy: pwdMinLength 8.
    assert.equal(
      await session(server.port, ["user bob", "pass bob-old-1", "newpass 2sh"]),
      CHANGE_FAILED,
    );
    await slapd.kill();
    assert.equal(
      await session(server.port, ["user bob", "pass bob-old-1"]),
      TEMPORARY,
    );
    await slapd.restart();
    assert.equal(
      await session(server.port, [
        "user bob",
        "pass bob-old-1",
        "newpass bob-new-Q7",
        "quit",
      ]),
      CHANGED + "200 Bye.\r\n",
    );
    const bob = userDn({ uid: "bob" });
    assert.equal(await slapd.whoami(bob, "bob-new-Q7"), `dn:${bob}`);
    const statuses = await server.idle(7);
    assert.deepEqual(statuses, [0, 0, 0, 0, 0, 0, 0]);
    const log = server.log;
    assert.match(
      log,
      /change failed for bob: rejected, the server refused the new password: ConstraintViolation \(19\): Password fails quality checking policy/,
    );
    assert.match(
      log,
      /authentication failed for bob: temporary, no LDAP server reached \(ldap:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/,
    );
    assert.match(
      log,
      /authentication failed for nobody: rejected, wrong password or unknown user/,
    );
    assertNoPasswords(log, [
      "alice-old-1",
      "alice-new-Q7",
      "bob-old-1",
      "bob-new-Q7",
      "2sh",
    ]);
  },
);

Deno.test(
  "LDAP store in listen mode: 20 changes at once, wrong and unknown users alike",
  sanitizer,
  async () => {
    await using slapd = await Slapd.start();
    await slapd.addUsers([
      { uid: "carol", password: "carol-old-1" },
      ...Array.from({ length: 20 }, (_, i) => ({
        uid: `user${i}`,
        password: `old-pw-${i}`,
      })),
    ]);
    const server = await Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        "--fail-delay",
        "0.5",
        "--max-per-ip",
        "0",
        ...ldapArgs(slapd),
      ],
      check: [],
      password: "",
      hostname: HOST,
    });
    try {
      assert.match(
        server.logs.join("\n"),
        new RegExp(
          `listening on .*; ldap ldap://127\\.0\\.0\\.1:${slapd.port}`,
        ),
      );
      const port = server.port();
      const received = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          session(port, [
            `user user${i}`,
            `pass old-pw-${i}`,
            `newpass new-pw-${i}`,
            "quit",
          ])),
      );
      assert.deepEqual(received, Array(20).fill(CHANGED + "200 Bye.\r\n"));
      for (let i = 0; i < 20; i++) {
        const dn = userDn({ uid: `user${i}` });
        assert.equal(await slapd.whoami(dn, `new-pw-${i}`), `dn:${dn}`);
      }
      // Wrong password and unknown user: the same octets after the same
      // failure delay, measured from the pass line.
      const timed = async (user: string) => {
        await using client = await Client.connect(port);
        const talk = client.talk;
        await talk.reply(15_000);
        await talk.line(`user ${user}`);
        await talk.reply(15_000);
        const started = performance.now();
        await talk.line("pass carol-old-2");
        const reply = await talk.reply(15_000);
        return { reply, ms: performance.now() - started };
      };
      const wrong = await timed("carol");
      const unknown = await timed("nobody");
      assert.equal(
        wrong.reply,
        "500 Old password is incorrect or user not found.\r\n",
      );
      assert.equal(unknown.reply, wrong.reply);
      for (const { ms } of [wrong, unknown]) {
        assert.ok(ms >= 490 && ms < 10_000, `${ms} ms`);
      }
    } finally {
      const status = await server.stop();
      assert.equal(status.code, 0);
    }
    assertNoPasswords(server.logs.join("\n"), [
      "old-pw-",
      "new-pw-",
      "carol-old",
    ]);
  },
);

Deno.test(
  "the bundle, run with the launcher's flags (--no-npm), loads the LDAP store",
  sanitizer,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ldap-bundle-" });
    try {
      await using slapd = await Slapd.start();
      await slapd.addUsers([{ uid: "dave", password: "dave-old-1" }]);
      const bundle = `${dir}/qmail-poppass.js`;
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "packaging/bundle.ts", bundle],
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      assert.ok(built.success, new TextDecoder().decode(built.stderr));
      assert.match(
        await Deno.readTextFile(bundle),
        /registry\.npmjs\.org\/ldapts\/\d/,
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-config",
          "--no-remote",
          "--no-npm",
          "--no-prompt",
          "--allow-env",
          "--allow-run",
          "--allow-read",
          "--allow-net",
          bundle,
          "--fail-delay",
          "0",
          ...ldapArgs(slapd),
          HOST,
        ],
        env: { ...baseEnv(), DENO_DIR: `${dir}/deno` },
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(60_000),
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(
        "user dave\r\npass dave-old-1\r\nnewpass dave-new-Q7\r\nquit\r\n",
      ));
      await writer.close();
      const out = await child.output();
      const log = new TextDecoder().decode(out.stderr);
      assert.equal(
        new TextDecoder().decode(out.stdout),
        CHANGED + "200 Bye.\r\n",
        log,
      );
      assert.equal(out.code, 0);
      const dn = userDn({ uid: "dave" });
      assert.equal(await slapd.whoami(dn, "dave-new-Q7"), `dn:${dn}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
