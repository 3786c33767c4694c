/**
 * Startup warnings (issue 18 item 9) and the first hour's friction (issue
 * 17 item 5): warnings are not repeated on every stdio connection;
 * `--check-config` prints each of them and exits (0 valid, 100 not, no
 * `500` line); listen mode says them once; certificates that clients
 * refuse are warned about; `--passwd-file` without a host name gets its
 * own usage; `--help` names no source file.
 */

import assert from "node:assert/strict";
import { baseEnv, FAKEAUTH, HOST, Sandbox } from "../support/sandbox.ts";
import { runOnce } from "../support/stdio.ts";
import { makeCert } from "../support/certs.ts";
import { run } from "../support/tools.ts";
import { Server } from "../support/listen_server.ts";
import { needs, testWith } from "../support/tools.ts";

const TRUE_WARNING = /warning: the checkpassword chain ends in true/;

function stdioEnv(box: Sandbox, extra: Record<string, string> = {}) {
  return {
    ...baseEnv(),
    ...box.env(),
    PASSWORD_COMMAND: `${FAKEAUTH} set`,
    ...extra,
  };
}

const test = testWith(needs(import.meta.url, "openssl"));

Deno.test("stdio: a chain ending in true is not warned about on every connection", async () => {
  await using box = await Sandbox.create();
  const { stdout, log, ended } = await runOnce(
    { args: [HOST, FAKEAUTH, "check", "/bin/true"], env: stdioEnv(box) },
    new TextEncoder().encode("quit\r\n"),
  );
  assert.equal(ended.code, 0);
  assert.match(stdout, /200 Bye\.\r\n$/);
  assert.doesNotMatch(log, /warning/);
});

Deno.test("--check-config prints every warning and exits 0 for valid settings, 100 with no 500 line for invalid ones", async (t) => {
  await using box = await Sandbox.create();
  await t.step("valid, no warning: exit 0, one line", async () => {
    const { stdout, log, ended } = await runOnce({
      args: ["--check-config", HOST, FAKEAUTH, "check"],
      env: stdioEnv(box),
    });
    assert.equal(ended.code, 0);
    assert.equal(stdout, "");
    assert.match(
      log,
      /^qmail-poppass\[\d+\]: check-config: the settings are valid \(stdio mode, fd-3 shim \/bin\/(ba)?sh\); 0 warnings\n$/,
    );
  });
  await t.step("a chain ending in true: the warning, exit 0", async () => {
    const { stdout, log, ended } = await runOnce({
      args: ["--check-config", HOST, FAKEAUTH, "check", "/bin/true"],
      env: stdioEnv(box),
    });
    assert.equal(ended.code, 0);
    assert.equal(stdout, "");
    const lines = log.trimEnd().split("\n");
    assert.equal(lines.length, 2, log);
    assert.match(lines[0]!, TRUE_WARNING);
    assert.match(lines[1]!, /; 1 warning$/);
  });
  await t.step("PASSWORD_COMMAND beside --passwd-file: warned", async () => {
    const file = `${box.dir}/users`;
    await Deno.writeTextFile(file, "");
    const { log, ended } = await runOnce({
      args: ["--check-config", "--passwd-file", file, HOST],
      env: stdioEnv(box),
    });
    assert.equal(ended.code, 0, log);
    assert.match(
      log,
      /warning: PASSWORD_COMMAND is set but not used: the passwd-file store writes new passwords itself/,
    );
  });
  await t.step(
    "invalid: exit 100, the fatal line, nothing on stdout",
    async () => {
      const { stdout, log, ended } = await runOnce({
        args: ["--check-config", HOST, `${box.dir}/nope`],
        env: stdioEnv(box),
      });
      assert.equal(ended.code, 100);
      assert.equal(stdout, "");
      assert.match(log, /fatal: checkprogram ".*\/nope" does not exist/);
    },
  );
});

Deno.test("passwd-file with a clear-text user: no warning per stdio connection, --check-config counts it", async () => {
  await using box = await Sandbox.create();
  const file = `${box.dir}/users`;
  await Deno.writeTextFile(file, "ann:{PLAIN}secret-1\n");
  const env = { ...baseEnv(), ...box.env() };
  const session = await runOnce(
    { args: ["--passwd-file", file, HOST], env },
    new TextEncoder().encode("quit\r\n"),
  );
  assert.equal(session.ended.code, 0);
  assert.doesNotMatch(session.log, /warning/);
  const check = await runOnce({
    args: ["--check-config", "--passwd-file", file, HOST],
    env,
  });
  assert.equal(check.ended.code, 0);
  const lines = check.log.trimEnd().split("\n");
  assert.equal(lines.length, 2, check.log);
  assert.match(
    lines[0]!,
    /warning: .*users: 1 users have clear-text passwords$/,
  );
  assert.match(lines[1]!, /\(stdio mode, passwd-file .*\); 1 warning$/);
});

Deno.test("--passwd-file without a host name prints the usage of the passwd-file form", async () => {
  await using box = await Sandbox.create();
  const { log, ended } = await runOnce({
    args: ["--passwd-file", `${box.dir}/users`],
    env: stdioEnv(box),
  });
  assert.equal(ended.code, 100);
  assert.match(
    log,
    /fatal: missing hostname \(usage: qmail-poppass \[options\] --passwd-file FILE hostname\)/,
  );
});

Deno.test("--help names no source file", async () => {
  const { stdout, ended } = await runOnce({
    args: ["--help"],
    env: baseEnv(),
  });
  assert.equal(ended.code, 0);
  assert.match(stdout, /--check-config/);
  assert.match(stdout, /--per-ip-prefix6 BITS/);
  assert.doesNotMatch(stdout, /lib\/|\.c\b|\.ts\b/);
});

test("listen mode warns once at startup, and about certificates clients refuse", async (t) => {
  await using scratch = await Sandbox.create();
  const good = await makeCert(scratch, "good");
  const bare = scratch.path("bare");
  // openssl req -x509 without -addext: no subjectAltName, CA:TRUE.
  await run([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-keyout",
    `${bare}.key`,
    "-out",
    `${bare}.crt`,
  ]);
  const start = (certFile: string, keyFile: string) =>
    Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        certFile,
        "--tls-key",
        keyFile,
      ],
      check: [scratch.script("ok"), "/bin/true"],
      password: scratch.script("ok"),
    });
  await t.step(
    "a good certificate: only the chain's warning, once",
    async () => {
      await using server = await start(good.certFile, good.keyFile);
      assert.equal(server.grep(/warning:/).length, 1, server.logs.join("\n"));
      assert.equal(server.grep(TRUE_WARNING).length, 1);
    },
  );
  await t.step("no subjectAltName and CA:TRUE: one warning each", async () => {
    await using server = await start(`${bare}.crt`, `${bare}.key`);
    assert.equal(
      server.grep(
        /warning: the --tls-cert certificate has no subjectAltName: many clients check the host name only there/,
      ).length,
      1,
    );
    assert.equal(
      server.grep(
        /warning: the --tls-cert certificate is a CA certificate \(CA:TRUE\)/,
      ).length,
      1,
    );
  });
});
