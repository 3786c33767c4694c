/**
 * PostgreSQL through the `postgres` npm driver (porsager/postgres.js).
 *
 * @module
 */

import postgres from "postgres";
import type { Driver, DriverOptions } from "./driver.ts";
import type { SqlTarget } from "./url.ts";

/** Open a pool to `target` (connections are made on first use). */
export function openPostgres(
  target: Extract<SqlTarget, { kind: "postgresql" }>,
  options: DriverOptions,
): Driver {
  const onSocket = target.socketDir !== undefined;
  const sql = postgres({
    host: target.host ?? "localhost",
    port: target.port,
    ...(onSocket
      ? { path: `${target.socketDir}/.s.PGSQL.${target.port}` }
      : {}),
    database: target.database,
    ...(target.user === undefined ? {} : { username: target.user }),
    ...(target.password === undefined ? {} : { password: target.password }),
    // libpq ignores sslmode on unix sockets; so do we.
    ssl: onSocket ? false : sslOption(target),
    max: options.poolSize,
    connect_timeout: Math.max(1, Math.ceil(options.connectTimeoutMs / 1000)),
    idle_timeout: 60,
    max_lifetime: 30 * 60,
    // Unnamed statements: parameters are still bound, and poolers such as
    // PgBouncer in transaction mode work.
    prepare: false,
    fetch_types: false,
    onnotice: () => {},
    connection: {
      application_name: "qmail-poppass",
      statement_timeout: options.queryTimeoutMs,
    },
  });
  return {
    async select(text, params) {
      const rows = await sql.unsafe(text, [...params]).values();
      return rows.map((row) => [...row]);
    },
    async updateOne(text, params, guard) {
      let count: number | "refused" = -1;
      await sql.begin(async (tx) => {
        const select = async (t: string, p: readonly string[]) =>
          (await tx.unsafe(t, [...p]).values()).map((row) => [...row]);
        if (!(await guard(select))) {
          count = "refused";
          throw new RollBack();
        }
        const result = await tx.unsafe(text, [...params]);
        count = result.count;
        if (count !== 1) throw new RollBack();
      }).catch((error) => {
        if (!(error instanceof RollBack)) throw error;
      });
      return count;
    },
    async close() {
      await sql.end({ timeout: 0 }).catch(() => {});
    },
  };
}

class RollBack extends Error {}

function sslOption(
  target: Extract<SqlTarget, { kind: "postgresql" }>,
): boolean | "allow" | "prefer" | "require" | object {
  const ca = target.sslrootcert === undefined
    ? {}
    : { ca: Deno.readTextFileSync(target.sslrootcert) };
  switch (target.sslmode) {
    case "disable":
      return false;
    case "allow":
    case "prefer":
    case "require":
      return target.sslmode;
    case "verify-ca":
      return {
        ...ca,
        rejectUnauthorized: true,
        checkServerIdentity: () => undefined,
      };
    case "verify-full":
      return { ...ca, rejectUnauthorized: true };
  }
}
