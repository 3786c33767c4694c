/**
 * Many instances on one SQL store behind a real HAProxy (Debian's
 * /usr/sbin/haproxy, `send-proxy-v2` and `check-send-proxy`): two
 * listen-mode instances started with `--sql-url … --proxy-protocol
 * 127.0.0.1/32` share one real PostgreSQL (unix socket, PostfixAdmin's
 * `mailbox` table); clients connect from 127.0.0.2 and 127.0.0.3. The
 * database is read back after every change, and a trigger counts the
 * updates each row took, so "exactly once" is the database's own word.
 * Also one MariaDB run of the concurrent changes.
 */

import assert from "node:assert/strict";
import { make, verify } from "../../lib/hash/mod.ts";
import {
  Mariadb,
  mariadbMissing,
  Postgres,
  postgresMissing,
  type TestDatabase,
} from "../support/databases.ts";
import { BoundClient, Haproxy } from "../support/haproxy.ts";
import { Server } from "../support/listen_server.ts";
import { pool, until, within } from "../support/time.ts";
import { greeting, R } from "../support/pinned_replies.ts";
import { aptLine, needs } from "../support/tools.ts";
import {
  lit,
  postfixadminMailbox,
  postfixadminSchema,
} from "../stores/sql/schemas.ts";

const GREETING = greeting();
const TRUSTED = ["--proxy-protocol", "127.0.0.1/32"];
const TIMINGS = ["--fail-delay", "0.1", "--idle-timeout", "60"];
const SCHEME = ["--passwd-scheme", "SHA512-CRYPT"];
/** A reply that waits on the database and a hash, on a loaded machine. */
const REPLY_MS = 30_000;
const DOMAIN = "example.org";
const enc = new TextEncoder();

const HAPROXY_SKIP = needs(import.meta.url, "haproxy").ignore
  ? `HAProxy is not installed: ${aptLine(["haproxy"])}`
  : undefined;
const PG_SKIP = HAPROXY_SKIP ?? postgresMissing();
const MY_SKIP = HAPROXY_SKIP ?? mariadbMissing();
const DOVEADM = !needs(import.meta.url, "doveadm").ignore;
const skipped = (why: string | undefined) => why ? ` (skipped: ${why})` : "";

const address = (user: string) => `${user}@${DOMAIN}`;
const oldPassword = (user: string) => `old-pw-${user}`;
const newPassword = (user: string) => `new-password-${user}`;
const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * PostfixAdmin's tables with `users` (old password hashed as SHA512-CRYPT),
 * and `password_log`: one row per UPDATE that touched a row's password.
 */
async function mailDatabase(
  db: TestDatabase,
  users: readonly string[],
): Promise<void> {
  await db.sql("mail", postfixadminSchema(db.kind));
  await db.sql("mail", `INSERT INTO domain (domain) VALUES (${lit(DOMAIN)});`);
  const rows: string[] = [];
  for (const u of users) {
    const hash = await make("SHA512-CRYPT", enc.encode(oldPassword(u)));
    rows.push(postfixadminMailbox(address(u), hash));
  }
  await db.sql("mail", rows.join("\n"));
  await db.sql(
    "mail",
    db.kind === "postgresql"
      ? `
CREATE TABLE password_log (username varchar(255) NOT NULL);
CREATE FUNCTION log_password() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO password_log (username) VALUES (NEW.username);
  RETURN NEW;
END $$;
CREATE TRIGGER mailbox_password AFTER UPDATE OF password ON mailbox
  FOR EACH ROW EXECUTE FUNCTION log_password();
`
      : `
CREATE TABLE password_log (username varchar(255) NOT NULL);
CREATE TRIGGER mailbox_password AFTER UPDATE ON mailbox
  FOR EACH ROW INSERT INTO password_log (username) VALUES (NEW.username);
`,
  );
}

/** How many updates each user's row took (users with none are absent). */
async function updateCounts(db: TestDatabase): Promise<Map<string, number>> {
  const out = await db.sql(
    "mail",
    "SELECT username, COUNT(*) FROM password_log GROUP BY username ORDER BY username;",
  );
  return new Map(
    out.split("\n").filter((l) => l !== "").map((l) => {
      const [user, count] = l.split("\t");
      return [user!, Number(count)];
    }),
  );
}

/** `doveadm pw -t HASH -p PASSWORD`: does Dovecot accept it? */
async function doveadmAccepts(hash: string, password: string) {
  const out = await new Deno.Command("doveadm", {
    args: ["pw", "-t", hash, "-p", password],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code === 0;
}

/**
 * Each of `users` has exactly its new password in the database, written by
 * exactly one UPDATE, as SHA512-CRYPT (checked by lib/hash and, where
 * installed, by Dovecot).
 */
async function assertChanged(
  db: TestDatabase,
  users: readonly string[],
): Promise<void> {
  const counts = await updateCounts(db);
  for (const u of users) {
    assert.equal(counts.get(address(u)), 1, `updates of ${u}`);
    const stored = (await db.sql(
      "mail",
      `SELECT password FROM mailbox WHERE username = ${lit(address(u))};`,
    )).trim();
    assert.match(stored, /^\{SHA512-CRYPT\}\$6\$/, u);
    const pw = newPassword(u);
    assert.equal((await verify(stored, enc.encode(pw))).kind, "match", u);
    assert.notEqual(
      (await verify(stored, enc.encode(oldPassword(u)))).kind,
      "match",
      u,
    );
    if (DOVEADM) assert.ok(await doveadmAccepts(stored, pw), `doveadm: ${u}`);
  }
}

/**
 * Two instances on `db`, HAProxy (send-proxy-v2) in front, both UP. The
 * URL is on the command line as the checks start it; MariaDB's
 * holds the app user's password, so it goes in POPPASS_SQL_URL instead.
 */
async function cluster(db: TestDatabase, extra: readonly string[] = []) {
  const dir = await Deno.makeTempDir({ prefix: "poppass-haproxy-sql-" });
  const url = db.url("mail");
  const inEnv = db.kind === "mariadb";
  const start = () =>
    Server.start({
      options: [
        "--listen",
        "127.0.0.1:0",
        ...TRUSTED,
        ...TIMINGS,
        ...SCHEME,
        ...(inEnv ? [] : ["--sql-url", url]),
        ...extra,
      ],
      check: [],
      password: "",
      env: inEnv ? { POPPASS_SQL_URL: url } : {},
    });
  const started = await Promise.allSettled([start(), start()]);
  const servers = started.flatMap((s) =>
    s.status === "fulfilled" ? [s.value] : []
  );
  try {
    for (const s of started) if (s.status === "rejected") throw s.reason;
    const [a, b] = servers as [Server, Server];
    const haproxy = await Haproxy.start({
      dir,
      backends: [{ name: "a", port: a.port() }, { name: "b", port: b.port() }],
    });
    try {
      await haproxy.waitForStates({ a: "UP", b: "UP" }, 30_000);
    } catch (error) {
      await haproxy.stop();
      throw error;
    }
    return { a, b, haproxy, dir };
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

type Cluster = Awaited<ReturnType<typeof cluster>>;

/**
 * Each instance logged one line at startup, no warning: the database
 * (`sql` as the startup line names it) and the trusted balancer.
 */
function assertStartup(c: Cluster, sql: string): void {
  for (const s of [c.a, c.b]) {
    assert.match(
      s.logs[0]!,
      new RegExp(
        `: listening on 127\\.0\\.0\\.1:\\d+ \\(plain\\); .*; sql ${
          re(sql)
        }; proxy-protocol from 127\\.0\\.0\\.1/32$`,
      ),
    );
    assert.ok(
      !s.logs.some((l) => /warning|fatal/.test(l)),
      s.logs.join("\n"),
    );
  }
}

/** Stop HAProxy and both instances by PID; no password in any log. */
async function stopAll(c: Cluster): Promise<void> {
  try {
    await c.haproxy.stop();
    await Promise.all([c.a.stop(), c.b.stop()]);
    for (const s of [c.a, c.b]) {
      assert.equal(s.stdout, "");
      const all = s.logs.join("\n");
      assert.ok(!/old-pw-|new-password-/.test(all), "a password in the log");
    }
  } finally {
    await Deno.remove(c.dir, { recursive: true });
  }
}

/** Lines about sessions (`ip=` lines) of one instance. */
const sessionLines = (s: Server) => s.logs.filter((l) => / ip=/.test(l));

/** The instance whose log has `user`'s successful change, or undefined. */
function changedOn(c: Cluster, user: string): "a" | "b" | undefined {
  const line = new RegExp(
    `: Password change for ${re(address(user))} succeeded$`,
  );
  const on = (["a", "b"] as const).filter((n) => c[n].grep(line).length > 0);
  assert.ok(on.length <= 1, `${user} changed on both instances`);
  return on[0];
}

/** The full dialogue after the greeting; the transcript, close included. */
async function dialogue(client: BoundClient, user: string) {
  return [
    await client.ask(`user ${address(user)}`, REPLY_MS),
    await client.ask(`pass ${oldPassword(user)}`, REPLY_MS),
    await client.ask(`newpass ${newPassword(user)}`, REPLY_MS),
    await client.ask("quit", REPLY_MS),
    await client.rest(REPLY_MS),
  ];
}

const CHANGED = [R.userOk, R.passOk, R.changed, R.bye, ""];

/**
 * Connect one client per user, one after the other (so round robin puts
 * the i-th on instance i mod 2), then run every dialogue at once: all the
 * changes reach the two instances, and the database, together.
 */
async function concurrentChanges(
  c: Cluster,
  users: readonly string[],
  source: (i: number) => string,
): Promise<void> {
  const clients: BoundClient[] = [];
  try {
    for (const [i, u] of users.entries()) {
      const client = await BoundClient.connect(source(i), c.haproxy.port);
      clients.push(client);
      assert.equal(await client.line(REPLY_MS), GREETING, `greeting for ${u}`);
    }
    const transcripts = await Promise.all(
      clients.map((client, i) => dialogue(client, users[i]!)),
    );
    const logs = () => [...c.a.logs, ...c.b.logs].join("\n");
    for (const [i, t] of transcripts.entries()) {
      assert.deepEqual(t, CHANGED, `${users[i]}\n${logs()}`);
    }
  } finally {
    await Promise.all(clients.map((client) => client.close()));
  }
}

/**
 * The log side of {@link concurrentChanges}: each change logged once, with
 * its client's real address, on the instance round robin chose; each
 * instance saw both addresses and nothing else (no balancer address, no
 * health check).
 */
async function assertLogged(
  c: Cluster,
  users: readonly string[],
  source: (i: number) => string,
): Promise<void> {
  await until(
    () => users.every((u) => changedOn(c, u) !== undefined) ? true : undefined,
    REPLY_MS,
    "every change in a log",
  );
  const first = changedOn(c, users[0]!)!;
  const other = first === "a" ? "b" : "a";
  for (const [i, u] of users.entries()) {
    const on = changedOn(c, u)!;
    assert.equal(on, i % 2 === 0 ? first : other, `instance of ${u}`);
    const lines = c[on].grep(
      new RegExp(`: Password change for ${re(address(u))} succeeded$`),
    );
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0]!, new RegExp(` ip=${re(source(i))}: `));
  }
  for (const name of ["a", "b"] as const) {
    const lines = sessionLines(c[name]);
    assert.ok(lines.some((l) => / ip=127\.0\.0\.2: /.test(l)), name);
    assert.ok(lines.some((l) => / ip=127\.0\.0\.3: /.test(l)), name);
    assert.ok(
      lines.every((l) => / ip=127\.0\.0\.[23]: /.test(l)),
      lines.join("\n"),
    );
  }
}

/** Sources alternate in pairs, instances one by one: each sees both. */
const pairs = (i: number) => i % 4 < 2 ? "127.0.0.2" : "127.0.0.3";

Deno.test({
  name: `PostgreSQL shared by two instances behind HAProxy (send-proxy-v2)${
    skipped(PG_SKIP)
  }`,
  ignore: PG_SKIP !== undefined,
  async fn(t) {
    const concurrent = Array.from({ length: 16 }, (_, i) => `c${i}`);
    const failover = Array.from({ length: 8 }, (_, i) => `f${i}`);
    const limited = ["p0", "p1"];
    await using db = await Postgres.create(["mail"]);
    await mailDatabase(db, [...concurrent, ...failover, ...limited]);

    await t.step(
      "16 concurrent changes from two addresses land exactly once, logged with the real address",
      async () => {
        const c = await cluster(db);
        try {
          assertStartup(c, `postgresql postgres@${db.socketDir}/mail`);
          await concurrentChanges(c, concurrent, pairs);
          await assertLogged(c, concurrent, pairs);
          await assertChanged(db, concurrent);
          // Nobody else's row was touched.
          assert.deepEqual(
            [...(await updateCounts(db)).keys()],
            concurrent.map(address).sort(),
          );
        } finally {
          await stopAll(c);
        }
      },
    );

    await t.step(
      "--max-per-ip counts the real address, per instance",
      async () => {
        const c = await cluster(db, ["--max-per-ip", "2"]);
        const open: BoundClient[] = [];
        try {
          assertStartup(c, `postgresql postgres@${db.socketDir}/mail`);
          // Round robin puts two sessions from 127.0.0.2 on each instance…
          for (let i = 0; i < 4; i++) {
            const client = await BoundClient.connect(
              "127.0.0.2",
              c.haproxy.port,
            );
            open.push(client);
            assert.equal(await client.line(REPLY_MS), GREETING, `session ${i}`);
          }
          // …so the fifth finds its instance full…
          const fifth = await BoundClient.connect("127.0.0.2", c.haproxy.port);
          open.push(fifth);
          assert.equal(await fifth.rest(REPLY_MS), R.tooMany);
          // …while 127.0.0.3 is welcome on both and its changes land.
          const others = [];
          for (let i = 0; i < 2; i++) {
            const other = await BoundClient.connect(
              "127.0.0.3",
              c.haproxy.port,
            );
            open.push(other);
            others.push(other);
            assert.equal(await other.line(REPLY_MS), GREETING);
          }
          const transcripts = await Promise.all(
            others.map((o, i) => dialogue(o, limited[i]!)),
          );
          for (const t of transcripts) assert.deepEqual(t, CHANGED);
          await assertChanged(db, limited);
          const on = limited.map((u) => changedOn(c, u));
          assert.deepEqual([...on].sort(), ["a", "b"]);
          const refused = [c.a, c.b].flatMap((s) =>
            sessionLines(s).filter((l) => /limit reached/.test(l))
          );
          assert.equal(refused.length, 1, refused.join("\n"));
          assert.match(
            refused[0]!,
            / ip=127\.0\.0\.2: limit reached: max-per-ip 2, connection refused$/,
          );
        } finally {
          await Promise.all(open.map((o) => o.close()));
          await stopAll(c);
        }
      },
    );

    await t.step(
      "after SIGKILL of one instance the other serves every new session; changes land",
      async () => {
        const c = await cluster(db);
        try {
          assertStartup(c, `postgresql postgres@${db.socketDir}/mail`);
          c.a.signal("SIGKILL");
          const status = await within(c.a.status, REPLY_MS, "a's exit");
          assert.equal(status.signal, "SIGKILL");
          await c.haproxy.waitForStates({ a: "DOWN", b: "UP" }, 30_000);
          const source = (i: number) => i % 2 ? "127.0.0.3" : "127.0.0.2";
          const transcripts = await pool(failover, 4, async (u, i) => {
            await using client = await BoundClient.connect(
              source(i),
              c.haproxy.port,
            );
            return [await client.line(REPLY_MS), ...await dialogue(client, u)];
          });
          for (const [i, t] of transcripts.entries()) {
            assert.deepEqual(
              t,
              [GREETING, ...CHANGED],
              `${failover[i]}\n${c.b.logs.join("\n")}`,
            );
          }
          await until(
            () =>
              failover.every((u) => changedOn(c, u) === "b") ? true : undefined,
            REPLY_MS,
            "every change in b's log",
          );
          for (const [i, u] of failover.entries()) {
            const lines = c.b.grep(
              new RegExp(`: Password change for ${re(address(u))} succeeded$`),
            );
            assert.equal(lines.length, 1);
            assert.match(lines[0]!, new RegExp(` ip=${re(source(i))}: `));
          }
          await assertChanged(db, failover);
          // Every row was changed exactly once over the three steps.
          assert.deepEqual(
            [...(await updateCounts(db)).values()],
            [...concurrent, ...failover, ...limited].map(() => 1),
          );
        } finally {
          await stopAll(c);
        }
      },
    );
  },
});

Deno.test({
  name:
    `MariaDB shared by two instances behind HAProxy: concurrent changes land once${
      skipped(MY_SKIP)
    }`,
  ignore: MY_SKIP !== undefined,
  async fn() {
    const users = Array.from({ length: 8 }, (_, i) => `m${i}`);
    await using db = await Mariadb.create(["mail"]);
    await mailDatabase(db, users);
    const c = await cluster(db);
    try {
      assertStartup(c, `mysql poppass@${db.socket}/mail`);
      await concurrentChanges(c, users, pairs);
      await assertLogged(c, users, pairs);
      await assertChanged(db, users);
      assert.deepEqual(
        [...(await updateCounts(db)).keys()],
        users.map(address).sort(),
      );
    } finally {
      await stopAll(c);
    }
  },
});
