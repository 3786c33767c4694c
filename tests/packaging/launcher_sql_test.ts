/**
 * The Debian launcher (packaging/deb/launcher.sh) with an SQL URL: it must
 * add --allow-net, --allow-ffi (hash workers), write access to a unix socket or an SQLite file's
 * folder. Run with `echo` in place of the runtime, so
 * the test reads the exact command line it would exec.
 */

import assert from "node:assert/strict";

const LAUNCHER = new URL("../../packaging/deb/launcher.sh", import.meta.url)
  .pathname;
const BASE =
  "run --no-config --no-remote --no-npm --no-prompt --allow-env --allow-run --allow-read";

async function launch(
  args: string[],
  env: Record<string, string> = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "poppass-launcher-" });
  try {
    const text = (await Deno.readTextFile(LAUNCHER))
      .replace(/^runtime=.*$/m, "runtime=/bin/echo")
      .replace(/^program=.*$/m, "program=PROGRAM");
    await Deno.writeTextFile(`${dir}/launcher.sh`, text);
    for (const [name, value] of Object.entries(env)) {
      if (name === "URL_FILE_TEXT") {
        await Deno.writeTextFile(`${dir}/url`, value);
      }
    }
    const vars = Object.fromEntries(
      Object.entries(env).filter(([n]) => n !== "URL_FILE_TEXT").map((
        [n, v],
      ) => [n, v.replace("DIR", dir)]),
    );
    const out = await new Deno.Command("sh", {
      args: [`${dir}/launcher.sh`, ...args.map((a) => a.replace("DIR", dir))],
      env: { PATH: "/usr/bin:/bin", ...vars },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).trim().replaceAll(dir, "DIR");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("launcher: an SQL URL adds --allow-net and the socket or folder to write", async () => {
  const table: [string[], Record<string, string>, string][] = [
    [
      ["--sql-url", "postgresql://mail@/postfix?host=/run/postgresql", "h"],
      {},
      `${BASE} --allow-net --allow-ffi --allow-write=/run/postgresql/.s.PGSQL.5432 PROGRAM --sql-url postgresql://mail@/postfix?host=/run/postgresql h`,
    ],
    [
      [
        "--sql-url=postgresql://mail@/postfix?sslmode=disable&host=/run/pg&port=5433",
        "h",
      ],
      {},
      `${BASE} --allow-net --allow-ffi --allow-write=/run/pg/.s.PGSQL.5433 PROGRAM --sql-url=postgresql://mail@/postfix?sslmode=disable&host=/run/pg&port=5433 h`,
    ],
    [
      ["--sql-url", "postgresql://mail:pw@db.example:5433/postfix", "h"],
      {},
      `${BASE} --allow-net --allow-ffi PROGRAM --sql-url postgresql://mail:pw@db.example:5433/postfix h`,
    ],
    [
      ["h"],
      {
        POPPASS_SQL_URL:
          "mysql://mail@localhost/postfix?socket=/run/mysqld/mysqld.sock",
      },
      `${BASE} --allow-net --allow-ffi --allow-write=/run/mysqld/mysqld.sock PROGRAM h`,
    ],
    [
      ["--sql-url", "sqlite:///var/lib/mail/users.sqlite", "h"],
      {},
      `${BASE} --allow-net --allow-ffi --allow-write=/var/lib/mail PROGRAM --sql-url sqlite:///var/lib/mail/users.sqlite h`,
    ],
    [
      ["--sql-url-file", "DIR/url", "h"],
      { URL_FILE_TEXT: "  postgresql://mail@/postfix?host=/srv/pg  \n" },
      `${BASE} --allow-net --allow-ffi --allow-write=/srv/pg/.s.PGSQL.5432 PROGRAM --sql-url-file DIR/url h`,
    ],
    [
      ["--listen", "127.0.0.1:106", "h"],
      { POPPASS_SQL_URL_FILE: "DIR/url", URL_FILE_TEXT: "mysql://m:p@db/x\n" },
      `${BASE} --allow-net --v8-flags=--max-old-space-size=64 --allow-ffi PROGRAM --listen 127.0.0.1:106 h`,
    ],
  ];
  for (const [args, env, want] of table) {
    assert.equal(await launch(args, env), want, args.join(" "));
  }
});
