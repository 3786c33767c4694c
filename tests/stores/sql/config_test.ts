/**
 * The SQL store's configuration without a database: URL forms, query
 * compilation (placeholders are always bound parameters), and how
 * `parseInvocation` selects the store, warns and refuses (exit 100).
 */

import assert from "node:assert/strict";
import { parseInvocation, UsageError } from "../../../lib/config/config.ts";
import { parseSqlUrl, shown } from "../../../lib/stores/sql/url.ts";
import {
  bind,
  compileQuery,
  DEFAULT_PASSWORD_QUERY,
  DEFAULT_UPDATE_QUERY,
  render,
  valuesOf,
} from "../../../lib/stores/sql/query.ts";

const ALL = ["u", "n", "d", "w"] as const;

Deno.test("URL forms: PostgreSQL host and unix socket, MySQL host and socket, SQLite", () => {
  const table: [string, unknown][] = [
    ["postgresql://mail:s3cr%40t@db.example:5433/postfix?sslmode=require", {
      kind: "postgresql",
      user: "mail",
      password: "s3cr@t",
      host: "db.example",
      port: 5433,
      database: "postfix",
      sslmode: "require",
    }],
    ["postgresql://mail@/postfix?host=/run/postgresql", {
      kind: "postgresql",
      user: "mail",
      socketDir: "/run/postgresql",
      port: 5432,
      database: "postfix",
      sslmode: "prefer",
    }],
    ["postgres://mail@/postfix?host=/run/postgresql&port=5434", {
      kind: "postgresql",
      user: "mail",
      socketDir: "/run/postgresql",
      port: 5434,
      database: "postfix",
      sslmode: "prefer",
    }],
    [
      "postgresql://mail@[::1]/postfix?sslmode=verify-full&sslrootcert=/etc/ca.pem",
      {
        kind: "postgresql",
        user: "mail",
        host: "::1",
        port: 5432,
        database: "postfix",
        sslmode: "verify-full",
        sslrootcert: "/etc/ca.pem",
      },
    ],
    // libpq's forms: no user (PGUSER or the OS user), ?host= over the host part.
    ["postgresql:///postfix?host=/run/postgresql", {
      kind: "postgresql",
      socketDir: "/run/postgresql",
      port: 5432,
      database: "postfix",
      sslmode: "prefer",
    }],
    ["postgresql://mail@localhost/postfix?host=/run/postgresql", {
      kind: "postgresql",
      user: "mail",
      socketDir: "/run/postgresql",
      port: 5432,
      database: "postfix",
      sslmode: "prefer",
    }],
    ["postgresql://mail@db.example/postfix?host=db2.example", {
      kind: "postgresql",
      user: "mail",
      host: "db2.example",
      port: 5432,
      database: "postfix",
      sslmode: "prefer",
    }],
    ["mysql://mail:pw@db.example/postfix", {
      kind: "mysql",
      user: "mail",
      password: "pw",
      host: "db.example",
      port: 3306,
      database: "postfix",
      sslMode: "PREFERRED",
    }],
    ["mysql://mail@localhost/postfix?socket=/run/mysqld/mysqld.sock", {
      kind: "mysql",
      user: "mail",
      socket: "/run/mysqld/mysqld.sock",
      port: 3306,
      database: "postfix",
      sslMode: "PREFERRED",
    }],
    ["mariadb://mail@127.0.0.1:3307/vmail?ssl-mode=required", {
      kind: "mysql",
      user: "mail",
      host: "127.0.0.1",
      port: 3307,
      database: "vmail",
      sslMode: "REQUIRED",
    }],
    ["sqlite:///var/lib/mail/users.sqlite", {
      kind: "sqlite",
      path: "/var/lib/mail/users.sqlite",
    }],
  ];
  for (const [url, want] of table) {
    assert.deepEqual(parseSqlUrl(url), want, url);
  }
});

Deno.test("malformed URLs are UsageErrors that never show the password", () => {
  const bad = [
    "",
    "postgresql:/mail@host/db",
    "http://mail@host/db",
    "mysql://host/db", // no user
    "postgresql://mail:pw@host", // no database
    "postgresql://mail:pw@host/db/x",
    "postgresql://mail:pw@/db", // neither host nor ?host=
    "postgresql://mail:pw@host:0/db",
    "postgresql://mail:pw@host:70000/db",
    "postgresql://mail:pw@host/db?sslmode=sometimes",
    "postgresql://mail:pw@host/db?application_name=x",
    "postgresql://mail:pw@host/db?sslmode",
    "postgresql://mail:pw@host/d%ZZb",
    "mysql://mail:pw@localhost/db?socket=relative.sock",
    "mysql://mail:pw@host/db?ssl-mode=maybe",
    "mysql://mail:pw@host/db?sslmode=disable",
    "sqlite://relative/path",
    "sqlite:///",
    "sqlite://user:pw@/x",
    "postgresql://mail:pw@host/db name",
  ];
  for (const url of bad) {
    assert.throws(() => parseSqlUrl(url), (error: Error) => {
      assert.ok(error instanceof UsageError, url);
      assert.ok(!/:pw@/.test(error.message), error.message);
      return true;
    }, url);
  }
  assert.equal(shown("mysql://u:secret@h/db"), '"mysql://u:***@h/db"');
});

Deno.test("queries: placeholders become markers, quoted '%u' too, values stay out of the text", () => {
  const table: [string, string, string, string[]][] = [
    [
      DEFAULT_PASSWORD_QUERY,
      "SELECT password FROM mailbox WHERE username = $1 AND active = '1'",
      "SELECT password FROM mailbox WHERE username = ? AND active = '1'",
      ["u"],
    ],
    [
      DEFAULT_UPDATE_QUERY,
      "UPDATE mailbox SET password = $1, modified = CURRENT_TIMESTAMP WHERE username = $2 AND active = '1'",
      "UPDATE mailbox SET password = ?, modified = CURRENT_TIMESTAMP WHERE username = ? AND active = '1'",
      ["w", "u"],
    ],
    [
      "SELECT pw FROM users WHERE local='%n' AND domain = '%d' AND note LIKE 'a%%'",
      "SELECT pw FROM users WHERE local=$1 AND domain = $2 AND note LIKE 'a%'",
      "SELECT pw FROM users WHERE local=? AND domain = ? AND note LIKE 'a%'",
      ["n", "d"],
    ],
    [
      "SELECT p FROM t WHERE a = %u OR b = '%u';",
      "SELECT p FROM t WHERE a = $1 OR b = $2",
      "SELECT p FROM t WHERE a = ? OR b = ?",
      ["u", "u"],
    ],
  ];
  for (const [text, pg, my, params] of table) {
    const query = compileQuery("q", text, ALL);
    assert.equal(render(query, "postgresql"), pg);
    assert.equal(render(query, "mysql"), my);
    assert.equal(render(query, "sqlite"), my);
    assert.deepEqual(query.params, params);
  }
  const q = compileQuery("q", "SELECT %d, %n, %u", ALL);
  assert.deepEqual(bind(q, valuesOf("a'b@x.org")), [
    "x.org",
    "a'b",
    "a'b@x.org",
  ]);
  assert.deepEqual(bind(q, valuesOf("plain")), ["", "plain", "plain"]);
  assert.deepEqual(bind(q, valuesOf("a@b@c")), ["b@c", "a", "a@b@c"]);
});

Deno.test("queries: any other % sequence and ambiguous text are startup errors", () => {
  const bad: [string, RegExp][] = [
    ["SELECT p FROM t WHERE u = %s", /unknown placeholder "%s"/],
    ["SELECT p FROM t WHERE u = %{user}", /unknown placeholder "%\{"/],
    ["SELECT p FROM t WHERE u = %Lu", /unknown placeholder "%L"/],
    ["SELECT p FROM t WHERE u = %", /unknown placeholder "%"/],
    ["SELECT p FROM t WHERE u = '%n@example.org'", /inside a quoted string/],
    ["SELECT p FROM t WHERE u = ?", /bare \?/],
    ["SELECT p FROM t WHERE u = $1", /"\$1" would be taken/],
    ["SELECT p FROM t WHERE u = %u; DELETE FROM t", /one statement/],
    ["SELECT p FROM t WHERE u = 'x", /unterminated/],
    ["   ", /empty/],
  ];
  for (const [text, why] of bad) {
    assert.throws(
      () => compileQuery("sql-password-query", text, ["u", "n", "d"]),
      (e: Error) => e instanceof UsageError && why.test(e.message),
      text,
    );
  }
  assert.throws(
    () => compileQuery("sql-password-query", "SELECT %w", ["u", "n", "d"]),
    /%w has no value in this query/,
  );
});

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const probe = { executable: () => "ok" as const };

function config(args: string[], vars: Record<string, string> = {}) {
  const invocation = parseInvocation(args, env(vars), probe);
  if (invocation.kind !== "run") throw new Error(invocation.kind);
  return invocation.config;
}

Deno.test("parseInvocation: --sql-url selects the SQL store with PostfixAdmin's queries", () => {
  const c = config([
    "--sql-url",
    "postgresql://mail@/postfix?host=/run/postgresql",
    "pop.example",
  ]);
  assert.equal(c.backend.kind, "sql");
  if (c.backend.kind !== "sql") return;
  assert.equal(c.backend.scheme, "ARGON2ID");
  assert.equal(c.backend.minPasswordLength, 8);
  assert.deepEqual(c.backend.sql.passwordQuery.params, ["u"]);
  assert.deepEqual(c.backend.sql.updateQuery.params, ["w", "u"]);
  assert.deepEqual(c.warnings, []);
  // From the environment, with a password: no warning (ps does not show it).
  const e = config(["--passwd-scheme", "sha512-crypt", "pop.example"], {
    POPPASS_SQL_URL: "mysql://mail:pw@db/postfix",
    POPPASS_SQL_PASSWORD_QUERY: "SELECT p FROM u WHERE n = '%u'",
    POPPASS_MIN_PASSWORD_LENGTH: "12",
  });
  assert.equal(e.backend.kind, "sql");
  if (e.backend.kind !== "sql") return;
  assert.equal(e.backend.scheme, "SHA512-CRYPT");
  assert.equal(e.backend.minPasswordLength, 12);
  assert.deepEqual(e.warnings, []);
});

Deno.test("parseInvocation: a password in --sql-url on argv is accepted with a warning", () => {
  const c = config(["--sql-url=mysql://mail:pw@db/postfix", "pop.example"]);
  assert.equal(c.warnings.length, 1);
  assert.match(
    c.warnings[0]!,
    /holds a password.*ps.*POPPASS_SQL_URL.*--sql-url-file/,
  );
  assert.ok(!c.warnings[0]!.includes("pw@"));
});

Deno.test("parseInvocation: --sql-url-file reads the URL and warns when others can read it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/url`;
    await Deno.writeTextFile(file, " mysql://mail:pw@db/postfix \n# note\n", {
      mode: 0o600,
    });
    await Deno.chmod(file, 0o600);
    const c = config(["--sql-url-file", file, "pop.example"]);
    assert.equal(c.backend.kind, "sql");
    assert.deepEqual(c.warnings, []);
    await Deno.chmod(file, 0o644);
    const open = config(["pop.example"], { POPPASS_SQL_URL_FILE: file });
    assert.match(open.warnings.join("\n"), /readable by group or others/);
    assert.throws(
      () => config(["--sql-url-file", `${dir}/missing`, "pop.example"]),
      /cannot read --sql-url-file/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseInvocation: SQL mistakes and mixed stores are usage errors", () => {
  const url = "postgresql://mail@/postfix?host=/run/postgresql";
  const bad: [string[], Record<string, string>, RegExp][] = [
    [["--sql-url", "postgresql:/x", "h"], {}, /--sql-url "postgresql:\/x"/],
    [["--sql-url", url, "--passwd-file", "/etc/p", "h"], {}, /passwd-file/],
    [["--sql-url", url, "h"], { POPPASS_FD3_HELPER: "/x" }, /fd3-helper/],
    [["--sql-url", url, "h", "/bin/check"], {}, /replaces the checkpassword/],
    [["--sql-url", url, "--sql-url-file", "/x", "h"], {}, /not both/],
    [
      [
        "--sql-url",
        url,
        "--sql-update-query",
        "UPDATE t SET a=1 WHERE u=%u",
        "h",
      ],
      {},
      /%w/,
    ],
    [
      ["--sql-url", url, "--sql-password-query", "SELECT p WHERE u=%x", "h"],
      {},
      /%x/,
    ],
    [
      ["--sql-password-query", "SELECT 1", "h", "/bin/check"],
      {},
      /needs --sql-url/,
    ],
    [["--sql-url", url, "--passwd-scheme", "MD5", "h"], {}, /passwd-scheme/],
  ];
  for (const [args, vars, why] of bad) {
    assert.throws(
      () => parseInvocation(args, env(vars), probe),
      (e: Error) => e instanceof UsageError && why.test(e.message),
      args.join(" "),
    );
  }
});
