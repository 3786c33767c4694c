/**
 * The SQL store end to end, exact octets on the wire: listen mode on
 * PostgreSQL, stdio mode under Debian's tcpserver on MariaDB, the database
 * killed mid-session and restarted (temporary failure, then the next
 * session reconnects by itself), a database that is down at startup (a
 * warning, not an exit), malformed settings (exit 100), and the bundle run
 * with the package launcher's flags.
 */

import assert from "node:assert/strict";
import {
  Mariadb,
  mariadbMissing,
  Postgres,
  postgresMissing,
  type TestDatabase,
} from "../../support/databases.ts";
import { Server } from "../../support/listen_server.ts";
import { Client } from "../../support/client.ts";
import { Tcpserver } from "../../support/tcpserver.ts";
import { baseEnv, MAIN, ROOT } from "../../support/sandbox.ts";
import { greeting, R } from "../../support/pinned_replies.ts";
import { aptLine, needs } from "../../support/tools.ts";
import { lit, postfixadminMailbox, postfixadminSchema } from "./schemas.ts";

const HOST = "sql.test";
const TEMPORARY = "500 Temporary failure, please try again later.\r\n";
const CHANGE_FAILED = "500 Password change failed.\r\n";
const MISCONFIGURED = "500 Server configuration error, see the server log.\r\n";
const TIMINGS = ["--fail-delay", "0", "--idle-timeout", "20"];
const SCHEME = ["--passwd-scheme", "SHA512-CRYPT"];
const REPLY_MS = 20_000;

const PG_SKIP = postgresMissing();
const MY_SKIP = mariadbMissing();
const TCPSERVER_SKIP = needs(import.meta.url, "tcpserver").ignore
  ? `tcpserver is missing: ${aptLine(["tcpserver"])}`
  : undefined;
const skipped = (why: string | undefined) => why ? ` (skipped: ${why})` : "";

async function mailDatabase(db: TestDatabase): Promise<void> {
  await db.sql("mail", postfixadminSchema(db.kind));
  await db.sql("mail", "INSERT INTO domain (domain) VALUES ('example.org');");
  await db.sql(
    "mail",
    ["alice", "bob", "carol"].map((u) =>
      postfixadminMailbox(`${u}@example.org`, `{PLAIN}${u}-old-pw`)
    ).join("\n"),
  );
}

/** One dialogue: send each line, expect each reply (exact octets). */
async function dialogue(
  client: Client,
  steps: [line: string | undefined, reply: string][],
): Promise<void> {
  for (const [line, reply] of steps) {
    if (line !== undefined) await client.talk.line(line);
    assert.equal(await client.talk.reply(REPLY_MS), reply, `after ${line}`);
  }
}

async function storedHash(db: TestDatabase, user: string): Promise<string> {
  return (await db.sql(
    "mail",
    `SELECT password FROM mailbox WHERE username = ${lit(user)};`,
  )).trim();
}

Deno.test({
  name: `listen mode on PostgreSQL: changes, a kill mid-session, reconnect${
    skipped(PG_SKIP)
  }`,
  ignore: PG_SKIP !== undefined,
  async fn() {
    await using db = await Postgres.create(["mail"]);
    await mailDatabase(db);
    await using server = await Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        ...TIMINGS,
        ...SCHEME,
        "--sql-url",
        db.url("mail"),
      ],
      check: [],
      password: "",
      hostname: HOST,
    });
    assert.match(
      server.logs.join("\n"),
      new RegExp(
        `listening on .*; sql postgresql postgres@${db.socketDir}/mail`,
      ),
    );
    {
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user alice@example.org", R.userOk],
        ["pass alice-old-pw", R.passOk],
        ["newpass alice-new-pw", R.changed],
        ["quit", R.bye],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    assert.match(
      await storedHash(db, "alice@example.org"),
      /^\{SHA512-CRYPT\}\$6\$/,
    );
    {
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user nobody@example.org", R.userOk],
        ["pass alice-new-pw", R.authFailed],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    {
      // Killed between pass and newpass.
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user bob@example.org", R.userOk],
        ["pass bob-old-pw", R.passOk],
      ]);
      await db.kill();
      await dialogue(c, [["newpass bob-new-pw", CHANGE_FAILED]]);
      await c.talk.closed(REPLY_MS);
    }
    await server.waitForLog(
      /change failed for bob@example\.org: temporary, postgresql .*: (password|update) query: /,
    );
    {
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user bob@example.org", R.userOk],
        ["pass bob-old-pw", TEMPORARY],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    await db.start();
    {
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user bob@example.org", R.userOk],
        ["pass bob-old-pw", R.passOk],
        ["newpass bob-new-pw", R.changed],
        ["quit", R.bye],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    assert.equal((await server.stop()).code, 0);
    assert.equal(server.stdout, "");
    assert.ok(!server.logs.join("\n").includes("-pw"), "a password in the log");
  },
});

Deno.test({
  name:
    `stdio mode under tcpserver on MariaDB: changes, a kill mid-session, reconnect${
      skipped(MY_SKIP ?? TCPSERVER_SKIP)
    }`,
  ignore: (MY_SKIP ?? TCPSERVER_SKIP) !== undefined,
  async fn() {
    await using db = await Mariadb.create(["mail"]);
    await mailDatabase(db);
    await using tcp = await Tcpserver.start({
      program: [MAIN, ...TIMINGS, ...SCHEME, HOST],
      env: { ...baseEnv(), POPPASS_SQL_URL: db.url("mail") },
    });
    {
      await using c = await tcp.connect();
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user carol@example.org", R.userOk],
        ["pass carol-old-pw", R.passOk],
        ["newpass carol-new-pw", R.changed],
        ["quit", R.bye],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    assert.match(
      await storedHash(db, "carol@example.org"),
      /^\{SHA512-CRYPT\}\$6\$/,
    );
    {
      await using c = await tcp.connect();
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user carol@example.org", R.userOk],
        ["pass carol-new-pw", R.passOk],
      ]);
      await db.kill();
      await dialogue(c, [["newpass carol-newer-pw", CHANGE_FAILED]]);
      await c.talk.closed(REPLY_MS);
    }
    await db.start();
    {
      await using c = await tcp.connect();
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user carol@example.org", R.userOk],
        ["pass carol-new-pw", R.passOk],
        ["newpass carol-newer-pw", R.changed],
        ["quit", R.bye],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    const statuses = await tcp.idle(3, REPLY_MS);
    assert.deepEqual(statuses, [0, 0, 0]);
    assert.match(
      tcp.log,
      /change failed for carol@example\.org: temporary, mysql /,
    );
    assert.ok(!tcp.log.includes("-pw"), "a password in the log");
  },
});

Deno.test({
  name:
    `listen mode: a database down at startup is a warning; sessions recover when it is up${
      skipped(PG_SKIP)
    }`,
  ignore: PG_SKIP !== undefined,
  async fn() {
    await using db = await Postgres.create(["mail"]);
    await mailDatabase(db);
    await db.kill();
    await using server = await Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        ...TIMINGS,
        "--sql-url",
        db.url("mail"),
      ],
      check: [],
      password: "",
      hostname: HOST,
    });
    assert.match(
      server.logs.join("\n"),
      /warning: the database cannot be used now \(.*password query at startup: .*\); sessions get temporary failures until it can/,
    );
    {
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user alice@example.org", R.userOk],
        ["pass alice-old-pw", TEMPORARY],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    await db.start();
    {
      await using c = await Client.connect(server.port());
      await dialogue(c, [
        [undefined, greeting(HOST)],
        ["user alice@example.org", R.userOk],
        ["pass alice-old-pw", R.passOk],
        ["quit", R.bye],
      ]);
      await c.talk.closed(REPLY_MS);
    }
    assert.equal((await server.stop()).code, 0);
    // A query on a missing table is told at startup too.
    await using typo = await Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        ...TIMINGS,
        "--sql-url",
        db.url("mail"),
        "--sql-password-query",
        "SELECT password FROM mailboxes WHERE username = %u",
      ],
      check: [],
      password: "",
      hostname: HOST,
    });
    assert.match(
      typo.logs.join("\n"),
      /warning: the database cannot be used now \(.*relation "mailboxes" does not exist\)/,
    );
  },
});

/** main.ts on stdio with `input`; its exit code, stdout and stderr. */
async function stdio(
  args: string[],
  input: string,
  env: Record<string, string> = {},
) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    cwd: ROOT,
    env: { ...baseEnv(), ...env },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input)).catch(() => {});
  await writer.close().catch(() => {});
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

Deno.test("startup: malformed SQL settings exit 100 with the configuration reply", async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["--sql-url", "postgresql://mail:pw@/postfix", HOST],
      {},
      /fatal: --sql-url "postgresql:\/\/mail:\*\*\*@\/postfix": no host/,
    ],
    [["--sql-url", "oracle://mail@db/x", HOST], {}, /unknown scheme "oracle"/],
    [
      [HOST],
      { POPPASS_SQL_URL: "mysql://mail@db" },
      /expected one database name/,
    ],
    [
      [
        "--sql-url",
        "mysql://mail@db/x",
        "--sql-password-query",
        "SELECT password FROM mailbox WHERE username = '%s'",
        HOST,
      ],
      {},
      /unknown placeholder "%s"/,
    ],
    [
      ["--sql-url", "mysql://mail@db/x", "--passwd-file", "/etc/passwd", HOST],
      {},
      /are two stores: choose one/,
    ],
  ];
  for (const [args, env, why] of cases) {
    const r = await stdio(args, "user x\r\n", env);
    assert.equal(r.code, 100, r.stderr);
    assert.equal(r.stdout, MISCONFIGURED);
    assert.match(r.stderr, why);
    assert.ok(!r.stderr.includes(":pw@"), r.stderr);
  }
});

Deno.test("stdio: the database is reached only once a session needs it; unreachable is temporary", async () => {
  const dir = await Deno.makeTempDir({ prefix: "poppass-nodb-" });
  try {
    const url = `postgresql://mail@/postfix?host=${dir}`;
    const quit = await stdio(["--sql-url", url, ...TIMINGS, HOST], "quit\r\n");
    assert.equal(quit.code, 0, quit.stderr);
    assert.equal(quit.stdout, greeting(HOST) + R.bye);
    assert.ok(!quit.stderr.includes("warning"), quit.stderr);
    const pass = await stdio(
      ["--sql-url", url, ...TIMINGS, HOST],
      "user a@example.org\r\npass whatever-pw\r\n",
    );
    assert.equal(pass.stdout, greeting(HOST) + R.userOk + TEMPORARY);
    assert.match(
      pass.stderr,
      /authentication failed for a@example\.org: temporary, postgresql mail@.*password query: .*(ENOENT|ECONNREFUSED)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const LAUNCHER_FLAGS = [
  "run",
  "--no-config",
  "--no-remote",
  "--no-npm",
  "--no-prompt",
  "--allow-env",
  "--allow-run",
  "--allow-read",
];

Deno.test({
  name:
    `the bundle, run with the launcher's flags, changes passwords in PostgreSQL and MariaDB${
      skipped(PG_SKIP ?? MY_SKIP)
    }`,
  ignore: (PG_SKIP ?? MY_SKIP) !== undefined,
  async fn() {
    await using pg = await Postgres.create(["mail"]);
    await using my = await Mariadb.create(["mail"]);
    const dir = await Deno.makeTempDir({ prefix: "poppass-sqlbundle-" });
    try {
      const bundle = `${dir}/qmail-poppass.js`;
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "packaging/bundle.ts", bundle],
        cwd: ROOT,
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
      const talk = async (url: string, extra: string[], input: string) => {
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            ...LAUNCHER_FLAGS,
            ...extra,
            bundle,
            ...TIMINGS,
            ...SCHEME,
            HOST,
          ],
          env: {
            NO_COLOR: "1",
            DENO_NO_UPDATE_CHECK: "1",
            DENO_DIR: `${dir}/deno`,
            POPPASS_SQL_URL: url,
          },
          clearEnv: true,
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
          signal: AbortSignal.timeout(60_000),
        }).spawn();
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode(input));
        await w.close();
        const out = await child.output();
        return {
          code: out.code,
          stdout: new TextDecoder().decode(out.stdout),
          stderr: new TextDecoder().decode(out.stderr),
        };
      };
      const cases: [TestDatabase, string][] = [
        [pg, `${pg.socketDir}/.s.PGSQL.5432`],
        [my, my.socket],
      ];
      for (const [db, socket] of cases) {
        await mailDatabase(db);
        // Without the socket permission the launcher grants: exit 100.
        const denied = await talk(db.url("mail"), [], "quit\r\n");
        assert.equal(denied.code, 100, denied.stderr);
        assert.match(
          denied.stderr,
          new RegExp(`needs --allow-write=${socket}`),
        );
        const ok = await talk(
          db.url("mail"),
          ["--allow-net", `--allow-write=${socket}`],
          "user alice@example.org\r\npass alice-old-pw\r\nnewpass alice-bundle-pw\r\nquit\r\n",
        );
        assert.equal(
          ok.stdout,
          greeting(HOST) + R.userOk + R.passOk + R.changed + R.bye,
          ok.stderr,
        );
        assert.equal(ok.code, 0);
        assert.match(
          await storedHash(db, "alice@example.org"),
          /^\{SHA512-CRYPT\}\$6\$/,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
