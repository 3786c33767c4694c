/**
 * The SQL store against real PostgreSQL and MariaDB servers started from
 * Debian's packages in temporary folders (tests/support/databases.ts), and
 * against SQLite through node:sqlite: PostfixAdmin's schema with the
 * default queries, a custom schema with custom queries, hashes made by
 * `doveadm pw` and checked by `doveadm pw -t` after each change, SQL
 * injection through user names, more than one row, 20 changes at once, and
 * a database killed and restarted under the store.
 */

import assert from "node:assert/strict";
import type { Backend, Outcome, Peer } from "../../../lib/stores/backend.ts";
import {
  createSqlBackend,
  type SqlBackend,
} from "../../../lib/stores/sql/backend.ts";
import { parseSqlUrl } from "../../../lib/stores/sql/url.ts";
import {
  compileQuery,
  DEFAULT_PASSWORD_QUERY,
  DEFAULT_UPDATE_QUERY,
} from "../../../lib/stores/sql/query.ts";
import type { WriteScheme } from "../../../lib/hash/mod.ts";
import { openPostgres } from "../../../lib/stores/sql/postgres.ts";
import { openMysql } from "../../../lib/stores/sql/mysql.ts";
import {
  Mariadb,
  mariadbMissing,
  Postgres,
  postgresMissing,
  type TestDatabase,
} from "../../support/databases.ts";
import { aptLine, needs } from "../../support/tools.ts";
import {
  CUSTOM_QUERIES,
  CUSTOM_SCHEMA,
  IREDMAIL_QUERIES,
  iredmailSchema,
  lit,
  MAILCOW_QUERIES,
  MAILCOW_SCHEMA,
  postfixadminMailbox,
  postfixadminSchema,
} from "./schemas.ts";

const DOVEADM = !needs(import.meta.url, "doveadm").ignore;
const enc = (s: string) => new TextEncoder().encode(s);
const peer: Peer = { remoteIp: "127.0.0.1", env: {} };
const OK: Outcome = { kind: "ok" };

/** `doveadm pw -s SCHEME`: a hash as Dovecot makes it. */
async function doveadmHash(scheme: string, password: string): Promise<string> {
  const out = await new Deno.Command("doveadm", {
    args: ["pw", "-s", scheme, "-p", password],
    stdin: "null",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).trim();
}

/** `doveadm pw -t HASH -p PASSWORD`: does Dovecot accept it? */
async function doveadmAccepts(
  hash: string,
  password: string,
): Promise<boolean> {
  const out = await new Deno.Command("doveadm", {
    args: ["pw", "-t", hash, "-p", password],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code === 0;
}

interface Make {
  password?: string;
  update?: string;
  scheme?: WriteScheme;
  poolSize?: number;
  queryTimeoutMs?: number;
}

async function store(url: string, options: Make = {}): Promise<SqlBackend> {
  return await createSqlBackend({
    target: parseSqlUrl(url),
    drivers: { postgresql: openPostgres, mysql: openMysql },
    passwordQuery: compileQuery(
      "sql-password-query",
      options.password ?? DEFAULT_PASSWORD_QUERY,
      ["u", "n", "d"],
    ),
    updateQuery: compileQuery(
      "sql-update-query",
      options.update ?? DEFAULT_UPDATE_QUERY,
      ["u", "n", "d", "w"],
    ),
    scheme: options.scheme ?? "SHA512-CRYPT",
    minPasswordLength: 8,
    poolSize: options.poolSize ?? 4,
    probe: false,
    log: () => {},
    ...(options.queryTimeoutMs
      ? { queryTimeoutMs: options.queryTimeoutMs }
      : {}),
  });
}

const check = (b: Backend, user: string, pw: string) =>
  b.check(enc(user), enc(pw), peer);
const change = (b: Backend, user: string, old: string, pw: string) =>
  b.change(enc(user), enc(old), enc(pw), peer);

async function storedHash(
  db: TestDatabase,
  user: string,
  query = "SELECT password FROM mailbox WHERE username = ",
): Promise<string> {
  return (await db.sql("mail", `${query}${lit(user)};`)).trim();
}

function kindOf(outcome: Outcome): string {
  return outcome.kind;
}

const DATABASES: {
  name: string;
  missing: () => string | undefined;
  create: () => Promise<TestDatabase>;
}[] = [
  {
    name: "PostgreSQL",
    missing: postgresMissing,
    create: () => Postgres.create(["mail"]),
  },
  {
    name: "MariaDB",
    missing: mariadbMissing,
    create: () => Mariadb.create(["mail"]),
  },
];

for (const { name, missing, create } of DATABASES) {
  const skip = missing() ??
    (DOVEADM ? undefined : `doveadm is missing: ${aptLine(["doveadm"])}`);
  Deno.test({
    name: `${name}: the SQL store on a real server${
      skip ? ` (skipped: ${skip})` : ""
    }`,
    ignore: skip !== undefined,
    async fn(t) {
      await using db = await create();
      const url = db.url("mail");
      await db.sql("mail", postfixadminSchema(db.kind));
      await db.sql(
        "mail",
        "INSERT INTO domain (domain) VALUES ('example.org'), ('example.net');",
      );

      await t.step(
        "PostfixAdmin schema, default queries, doveadm hashes",
        async () => {
          const users: [string, string, string][] = [
            ["sha@example.org", "SHA512-CRYPT", "old-sha-pw"],
            ["blf@example.org", "BLF-CRYPT", "old-blf-pw"],
            ["argon@example.org", "ARGON2ID", "old-argon-pw"],
            ["plain@example.org", "PLAIN", "old-plain-pw"],
          ];
          for (const [user, scheme, pw] of users) {
            await db.sql(
              "mail",
              postfixadminMailbox(user, await doveadmHash(scheme, pw)),
            );
          }
          await db.sql(
            "mail",
            postfixadminMailbox(
              "gone@example.org",
              await doveadmHash("SHA512-CRYPT", "old-gone-pw"),
              false,
            ),
          );
          await using b = await closing(await store(url));
          for (const [user, scheme, pw] of users) {
            assert.deepEqual(await check(b, user, pw), OK, `${user} ${scheme}`);
            assert.deepEqual(await check(b, user, pw + "x"), {
              kind: "rejected",
              reason: "wrong password",
            });
            const next = `new-${scheme}-pw`;
            assert.deepEqual(await change(b, user, pw, next), OK, user);
            const hash = await storedHash(db, user);
            assert.match(hash, /^\{SHA512-CRYPT\}\$6\$/);
            assert.ok(
              await doveadmAccepts(hash, next),
              `doveadm accepts ${user}`,
            );
            assert.ok(!(await doveadmAccepts(hash, pw)));
            assert.deepEqual(await check(b, user, next), OK);
            assert.deepEqual(await check(b, user, pw), {
              kind: "rejected",
              reason: "wrong password",
            });
          }
          // modified moved, active stayed, nothing else changed.
          const row = await db.sql(
            "mail",
            "SELECT count(*) FROM mailbox WHERE modified > created;",
          );
          assert.equal(row.trim(), String(users.length));
          // An inactive user and a missing one: the same rejection.
          assert.deepEqual(
            kindOf(await check(b, "gone@example.org", "old-gone-pw")),
            "rejected",
          );
          assert.deepEqual(await check(b, "nobody@example.org", "whatever"), {
            kind: "rejected",
            reason: "unknown user",
          });
          assert.deepEqual(
            kindOf(
              await change(b, "gone@example.org", "old-gone-pw", "new-gone-pw"),
            ),
            "rejected",
          );
          // The new password policy of --passwd-scheme's stores.
          assert.deepEqual(
            await change(b, "sha@example.org", "new-SHA512-CRYPT-pw", "short"),
            {
              kind: "rejected",
              reason: "new password shorter than 8",
            },
          );
        },
      );

      await t.step(
        "--passwd-scheme writes what Dovecot reads (ARGON2ID, BLF-CRYPT)",
        async () => {
          for (const scheme of ["ARGON2ID", "BLF-CRYPT"] as const) {
            await using b = await closing(await store(url, { scheme }));
            const user = "blf@example.org";
            const old = (await check(b, user, "new-BLF-CRYPT-pw")).kind === "ok"
              ? "new-BLF-CRYPT-pw"
              : "via-ARGON2ID-pw";
            assert.deepEqual(
              await change(b, user, old, `via-${scheme}-pw`),
              OK,
            );
            const hash = await storedHash(db, user);
            assert.ok(hash.startsWith(`{${scheme}}`), hash);
            assert.ok(await doveadmAccepts(hash, `via-${scheme}-pw`), scheme);
          }
        },
      );

      await t.step(
        "a custom schema with custom queries (%n %d, quoted)",
        async () => {
          await db.sql("mail", CUSTOM_SCHEMA);
          await db.sql(
            "mail",
            `INSERT INTO accounts (id, local, dom, secret) VALUES (1, 'ann', 'example.net', ${
              lit(await doveadmHash("SHA512-CRYPT", "ann-old-pw"))
            }), (2, 'ann', 'example.org', ${
              lit(await doveadmHash("BLF-CRYPT", "other-ann-pw"))
            });`,
          );
          await using b = await closing(
            await store(url, {
              password: CUSTOM_QUERIES.password,
              update: CUSTOM_QUERIES.update,
            }),
          );
          assert.deepEqual(await check(b, "ann@example.net", "ann-old-pw"), OK);
          assert.deepEqual(
            await check(b, "ann@example.org", "other-ann-pw"),
            OK,
          );
          assert.deepEqual(
            await change(b, "ann@example.net", "ann-old-pw", "ann-new-pw"),
            OK,
          );
          const hash = (await db.sql(
            "mail",
            "SELECT secret FROM accounts WHERE id = 1;",
          )).trim();
          assert.ok(await doveadmAccepts(hash, "ann-new-pw"));
          assert.equal(
            (await db.sql("mail", "SELECT changes FROM accounts ORDER BY id;"))
              .trim().split("\n").join(","),
            "1,0",
          );
        },
      );

      await t.step(
        "SQL injection through user names changes nothing",
        async () => {
          const victim = "sha@example.org";
          await db.sql(
            "mail",
            postfixadminMailbox(
              "o'brien@example.org",
              await doveadmHash("SHA512-CRYPT", "quote-old-pw"),
            ),
          );
          const before = await db.sql(
            "mail",
            "SELECT username, password FROM mailbox ORDER BY username;",
          );
          const attacks = [
            `x' OR '1'='1`,
            `x' OR 1=1 -- `,
            `' OR ''='`,
            `${victim}' -- `,
            `${victim}'; DROP TABLE mailbox; --`,
            `${victim}\\' OR 1=1 #`,
            `x" OR "1"="1`,
            `%u' OR '1'='1`,
            `$1`,
            `?`,
            `${victim}' AND active = '1`,
            `${victim} `,
            `${victim}\0`,
            `${victim}\0' OR '1'='1`,
          ];
          await using b = await closing(await store(url));
          await using custom = await closing(
            await store(url, {
              password: CUSTOM_QUERIES.password,
              update: CUSTOM_QUERIES.update,
            }),
          );
          for (const user of attacks) {
            for (const s of [b, custom]) {
              const outcome = await check(s, user, "anything-at-all");
              assert.equal(
                outcome.kind,
                "rejected",
                `${user}: ${JSON.stringify(outcome)}`,
              );
              assert.equal(
                (await change(s, user, "anything-at-all", "pwned-pw-123")).kind,
                "rejected",
                user,
              );
            }
          }
          assert.equal(
            await db.sql(
              "mail",
              "SELECT username, password FROM mailbox ORDER BY username;",
            ),
            before,
          );
          // A real name with a quote works, as a value.
          assert.deepEqual(
            await check(b, "o'brien@example.org", "quote-old-pw"),
            OK,
          );
          assert.deepEqual(
            await change(
              b,
              "o'brien@example.org",
              "quote-old-pw",
              "quote-new-pw",
            ),
            OK,
          );
          assert.ok(
            await doveadmAccepts(
              await storedHash(db, "o'brien@example.org"),
              "quote-new-pw",
            ),
          );
        },
      );

      await t.step(
        "more than one row: temporary; an update of two rows is rolled back",
        async () => {
          await using many = await closing(
            await store(url, {
              password: "SELECT password FROM mailbox WHERE domain = %d",
            }),
          );
          const outcome = await check(
            many,
            "sha@example.org",
            "new-SHA512-CRYPT-pw",
          );
          assert.equal(outcome.kind, "temporary");
          assert.match(
            (outcome as { reason: string }).reason,
            /returned \d+ rows/,
          );
          const before = await db.sql(
            "mail",
            "SELECT username, password FROM mailbox ORDER BY username;",
          );
          await using wide = await closing(
            await store(url, {
              update: "UPDATE mailbox SET password = %w WHERE domain = %d",
            }),
          );
          const failed = await change(
            wide,
            "sha@example.org",
            "new-SHA512-CRYPT-pw",
            "wide-new-pw",
          );
          assert.equal(failed.kind, "temporary");
          assert.match(
            (failed as { reason: string }).reason,
            /touched \d+ rows, not 1; rolled back/,
          );
          assert.equal(
            await db.sql(
              "mail",
              "SELECT username, password FROM mailbox ORDER BY username;",
            ),
            before,
          );
          // Zero rows touched (the row went inactive meanwhile): rolled back too.
          await using none = await closing(
            await store(url, {
              update:
                "UPDATE mailbox SET password = %w WHERE username = %u AND active = '0'",
            }),
          );
          const zero = await change(
            none,
            "sha@example.org",
            "new-SHA512-CRYPT-pw",
            "none-new-pw",
          );
          assert.match((zero as { reason: string }).reason, /touched 0 rows/);
        },
      );

      if (db.kind === "postgresql") {
        await t.step(
          "a change that lands between the check and the update",
          async () => {
            // The password query returns the stored hash on odd calls (the
            // check) and a racing writer's hash on even calls (the re-read in
            // the update's transaction).
            await db.sql(
              "mail",
              `CREATE TABLE flips (n integer NOT NULL, other text NOT NULL);
             INSERT INTO flips VALUES (0, '{PLAIN}someone-else-pw');
             CREATE FUNCTION racy_password(u text) RETURNS text LANGUAGE plpgsql VOLATILE AS $fn$
             DECLARE k integer; o text;
             BEGIN
               UPDATE flips SET n = n + 1 RETURNING n, other INTO k, o;
               IF k % 2 = 1 THEN RETURN (SELECT password FROM mailbox WHERE username = u); END IF;
               RETURN o;
             END $fn$;`,
            );
            await db.sql(
              "mail",
              postfixadminMailbox("race@example.org", "{PLAIN}race-old-pw"),
            );
            await using b = await closing(
              await store(url, { password: "SELECT racy_password(%u)" }),
            );
            assert.deepEqual(
              await change(b, "race@example.org", "race-old-pw", "race-new-pw"),
              {
                kind: "rejected",
                reason:
                  "the password changed meanwhile and the old one no longer matches; rolled back",
              },
            );
            assert.equal(
              await storedHash(db, "race@example.org"),
              "{PLAIN}race-old-pw",
            );
            // The racing writer stored the same password in another hash: go on.
            await db.sql(
              "mail",
              `UPDATE flips SET n = 0, other = ${
                lit(await doveadmHash("SHA512-CRYPT", "race-old-pw"))
              };`,
            );
            assert.deepEqual(
              await change(b, "race@example.org", "race-old-pw", "race-new-pw"),
              OK,
            );
            assert.ok(
              await doveadmAccepts(
                await storedHash(db, "race@example.org"),
                "race-new-pw",
              ),
            );
          },
        );
      }

      await t.step("20 changes at once, each verified by doveadm", async () => {
        const users = Array.from(
          { length: 20 },
          (_, i) => `bulk${i}@example.org`,
        );
        const inserts = [];
        for (const user of users) {
          inserts.push(
            postfixadminMailbox(
              user,
              await doveadmHash("SHA512-CRYPT", `${user}-old`),
            ),
          );
        }
        await db.sql("mail", inserts.join("\n"));
        await using b = await closing(await store(url, { poolSize: 4 }));
        const outcomes = await Promise.all(
          users.map((user) => change(b, user, `${user}-old`, `${user}-new`)),
        );
        assert.deepEqual(outcomes, users.map(() => OK));
        for (const user of users) {
          assert.ok(
            await doveadmAccepts(await storedHash(db, user), `${user}-new`),
            user,
          );
        }
      });

      await t.step(
        "a database that stops answering: temporary at the deadline, then back",
        async () => {
          await using b = await closing(
            await store(url, { poolSize: 1, queryTimeoutMs: 1_500 }),
          );
          assert.deepEqual(
            await check(b, "plain@example.org", "new-PLAIN-pw"),
            OK,
          );
          await db.freeze();
          let hung: Outcome;
          const started = Date.now();
          try {
            hung = await check(b, "plain@example.org", "new-PLAIN-pw");
          } finally {
            db.thaw();
          }
          const took = Date.now() - started;
          assert.equal(hung.kind, "temporary", JSON.stringify(hung));
          assert.match(
            (hung as { reason: string }).reason,
            /no answer within 1500 ms/,
          );
          assert.ok(took >= 1_400 && took < 6_000, `${took} ms`);
          assert.deepEqual(
            await check(b, "plain@example.org", "new-PLAIN-pw"),
            OK,
          );
        },
      );

      await t.step(
        "the database killed and restarted: temporary, then the next call reconnects",
        async () => {
          await using b = await closing(await store(url, { poolSize: 2 }));
          assert.deepEqual(
            await check(b, "plain@example.org", "new-PLAIN-pw"),
            OK,
          );
          await db.kill();
          const down = await check(b, "plain@example.org", "new-PLAIN-pw");
          assert.equal(down.kind, "temporary", JSON.stringify(down));
          assert.equal(
            (await change(
              b,
              "plain@example.org",
              "new-PLAIN-pw",
              "after-restart-pw",
            )).kind,
            "temporary",
          );
          await db.start();
          assert.deepEqual(
            await check(b, "plain@example.org", "new-PLAIN-pw"),
            OK,
          );
          assert.deepEqual(
            await change(
              b,
              "plain@example.org",
              "new-PLAIN-pw",
              "after-restart-pw",
            ),
            OK,
          );
          assert.ok(
            await doveadmAccepts(
              await storedHash(db, "plain@example.org"),
              "after-restart-pw",
            ),
          );
        },
      );
    },
  });
}

Deno.test("SQLite through node:sqlite: PostfixAdmin-like table, default queries", async () => {
  const dir = await Deno.makeTempDir({ prefix: "poppass-sqlite-" });
  try {
    const path = `${dir}/mail.sqlite`;
    const { DatabaseSync } = await import("node:sqlite");
    const setup = new DatabaseSync(path);
    setup.exec(
      "CREATE TABLE mailbox (username TEXT PRIMARY KEY, password TEXT NOT NULL, modified TEXT, active TEXT NOT NULL DEFAULT '1');",
    );
    setup.prepare("INSERT INTO mailbox (username, password) VALUES (?, ?)").run(
      "lite@example.org",
      "{PLAIN}lite-old-pw",
    );
    setup.close();
    await using b = await closing(await store(`sqlite://${path}`));
    assert.deepEqual(await check(b, "lite@example.org", "lite-old-pw"), OK);
    assert.equal(
      (await check(b, "x' OR '1'='1", "lite-old-pw")).kind,
      "rejected",
    );
    assert.deepEqual(
      await change(b, "lite@example.org", "lite-old-pw", "lite-new-pw"),
      OK,
    );
    assert.deepEqual(await check(b, "lite@example.org", "lite-new-pw"), OK);
    const read = new DatabaseSync(path);
    const row = read.prepare("SELECT password, modified FROM mailbox")
      .get() as {
        password: string;
        modified: string;
      };
    read.close();
    assert.match(row.password, /^\{SHA512-CRYPT\}\$6\$/);
    assert.ok(row.modified);
    if (DOVEADM) assert.ok(await doveadmAccepts(row.password, "lite-new-pw"));
    // Another writer holds the file: a temporary failure after a short wait.
    const holder = new DatabaseSync(path);
    holder.exec("BEGIN EXCLUSIVE");
    try {
      const started = Date.now();
      const locked = await change(
        b,
        "lite@example.org",
        "lite-new-pw",
        "lite-newer-pw",
      );
      assert.equal(locked.kind, "temporary", JSON.stringify(locked));
      assert.match((locked as { reason: string }).reason, /locked/);
      assert.ok(Date.now() - started < 5_000);
    } finally {
      holder.exec("ROLLBACK");
      holder.close();
    }
    assert.deepEqual(
      await change(b, "lite@example.org", "lite-new-pw", "lite-newer-pw"),
      OK,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a database that is not there: temporary, within the deadline, no throw", async () => {
  const dir = await Deno.makeTempDir({ prefix: "poppass-nodb-" });
  try {
    for (
      const url of [
        `postgresql://u@/db?host=${dir}`,
        `mysql://u@localhost/db?socket=${dir}/mysqld.sock`,
        `sqlite://${dir}/missing.sqlite`,
      ]
    ) {
      await using b = await closing(await store(url));
      const started = Date.now();
      const outcome = await check(b, "a@example.org", "password");
      assert.equal(
        outcome.kind,
        "temporary",
        `${url}: ${JSON.stringify(outcome)}`,
      );
      assert.ok(Date.now() - started < 5_000);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** `await using` for a store. */
function closing(b: SqlBackend): SqlBackend & AsyncDisposable {
  return Object.assign(b, { [Symbol.asyncDispose]: () => b.close() });
}

for (
  const { name, missing, create } of [
    {
      name: "PostgreSQL",
      missing: postgresMissing,
      create: () => Postgres.create(["mail"], { tcp: true }),
    },
    {
      name: "MariaDB",
      missing: mariadbMissing,
      create: () => Mariadb.create(["mail"], { tcp: true }),
    },
  ]
) {
  const skip = missing();
  Deno.test({
    name: `${name} over TCP on 127.0.0.1, ssl modes passed through${
      skip ? ` (skipped: ${skip})` : ""
    }`,
    ignore: skip !== undefined,
    async fn() {
      await using db = await create();
      await db.sql("mail", postfixadminSchema(db.kind));
      await db.sql(
        "mail",
        "INSERT INTO domain (domain) VALUES ('example.org');",
      );
      await db.sql(
        "mail",
        postfixadminMailbox("tcp@example.org", "{PLAIN}tcp-old-pw"),
      );
      const url = db.tcpUrl("mail");
      {
        await using b = await closing(await store(url));
        assert.deepEqual(await check(b, "tcp@example.org", "tcp-old-pw"), OK);
        assert.deepEqual(
          await change(b, "tcp@example.org", "tcp-old-pw", "tcp-new-pw"),
          OK,
        );
      }
      // The test server has no TLS: "disable" works, "require" must fail.
      const [off, on] = db.kind === "postgresql"
        ? [
          url.replace("sslmode=prefer", "sslmode=disable"),
          url.replace("sslmode=prefer", "sslmode=require"),
        ]
        : [`${url}?ssl-mode=DISABLED`, `${url}?ssl-mode=REQUIRED`];
      {
        await using b = await closing(await store(off));
        assert.deepEqual(await check(b, "tcp@example.org", "tcp-new-pw"), OK);
      }
      {
        await using b = await closing(await store(on));
        const outcome = await check(b, "tcp@example.org", "tcp-new-pw");
        assert.equal(outcome.kind, "temporary", JSON.stringify(outcome));
        assert.match((outcome as { reason: string }).reason, /ssl|tls|secure/i);
      }
    },
  });
}

for (const { name, missing, create } of DATABASES) {
  const skip = missing();
  Deno.test({
    name: `${name}: the README's recipes on their projects' schemas${
      skip ? ` (skipped: ${skip})` : ""
    }`,
    ignore: skip !== undefined,
    async fn() {
      await using db = await Promise.resolve(create());
      const recipes: [string, string, { password: string; update: string }][] =
        [["iredmail", iredmailSchema(db.kind), IREDMAIL_QUERIES]];
      if (db.kind === "mariadb") {
        recipes.push(["mailcow", MAILCOW_SCHEMA, MAILCOW_QUERIES]);
      }
      for (const [database, schema, queries] of recipes) {
        await db.sql(
          db.kind === "postgresql" ? "postgres" : "mysql",
          `CREATE DATABASE ${database};`,
        );
        await db.sql(database, schema);
        await db.sql(
          database,
          "INSERT INTO domain (domain) VALUES ('example.org');" +
            "INSERT INTO mailbox (username, password, domain" +
            (database === "mailcow" ? ", local_part, attributes" : "") +
            ") VALUES ('r@example.org', '{PLAIN}recipe-old-pw', 'example.org'" +
            (database === "mailcow"
              ? `, 'r', '{"force_pw_update": "1"}'`
              : "") +
            ");",
        );
        await using b = await closing(
          await store(db.url(database), {
            password: queries.password,
            update: queries.update,
          }),
        );
        assert.deepEqual(
          await check(b, "r@example.org", "recipe-old-pw"),
          OK,
          database,
        );
        assert.deepEqual(
          await change(b, "r@example.org", "recipe-old-pw", "recipe-new-pw"),
          OK,
          database,
        );
        assert.deepEqual(
          await check(b, "r@example.org", "recipe-new-pw"),
          OK,
          database,
        );
        const after = (await db.sql(
          database,
          database === "mailcow"
            ? "SELECT password, JSON_VALUE(attributes, '$.force_pw_update'), modified IS NOT NULL FROM mailbox;"
            : "SELECT password, passwordlastchange > '2000-01-01' FROM mailbox;",
        )).trim().split("\t");
        assert.match(after[0]!, /^\{SHA512-CRYPT\}\$6\$/);
        if (DOVEADM) {
          assert.ok(await doveadmAccepts(after[0]!, "recipe-new-pw"), database);
        }
        assert.deepEqual(
          after.slice(1),
          database === "mailcow"
            ? ["0", "1"]
            : [db.kind === "postgresql" ? "t" : "1"],
          database,
        );
      }
    },
  });
}

Deno.test("SQLite: an unknown user costs what the stored hashes cost, not the write scheme", async () => {
  const dir = await Deno.makeTempDir({ prefix: "poppass-sqlite-" });
  try {
    const path = `${dir}/mail.sqlite`;
    const { DatabaseSync } = await import("node:sqlite");
    const setup = new DatabaseSync(path);
    setup.exec(
      "CREATE TABLE mailbox (username TEXT PRIMARY KEY, password TEXT NOT NULL, modified TEXT, active TEXT NOT NULL DEFAULT '1');",
    );
    // doveadm pw -s SHA512-CRYPT -p 'alice pw': ~5 ms to check, against
    // ~100 ms for an ARGON2ID dummy (the write scheme below).
    setup.prepare("INSERT INTO mailbox (username, password) VALUES (?, ?)").run(
      "alice@example.org",
      "{SHA512-CRYPT}$6$qb7EPxnLAmlNISHm$HGDS1smu4.qIY17JHrZxQwDQMRi6Ct1Zv" +
        "w32LNmMMNOf7PjgupDoE.X13s4IUNkuxKzqzwse/Oxm7i/uJjTUl/",
    );
    setup.close();
    await using b = await closing(
      await store(`sqlite://${path}`, { scheme: "ARGON2ID" }),
    );
    const timed = async (user: string) => {
      const started = performance.now();
      const outcome = await check(b, user, "a guess");
      assert.equal(outcome.kind, "rejected", JSON.stringify(outcome));
      return performance.now() - started;
    };
    // Back to back pairs, so that a busy machine slows both sides alike.
    const differences: number[] = [];
    for (let i = 0; i < 7; i++) {
      const known = await timed("alice@example.org");
      differences.push(await timed("nobody@example.org") - known);
    }
    const median = differences.sort((x, y) => x - y)[3]!;
    assert.ok(
      Math.abs(median) < 40,
      `median unknown - known: ${median.toFixed(1)} ms (${
        differences.map((d) => d.toFixed(0)).join(" ")
      })`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
