/**
 * MariaDB and MySQL through the `mysql2` npm driver, with server-side
 * prepared statements (`execute`), so parameters are bound by the server.
 *
 * @module
 */

import {
  createPool,
  type PoolConnection,
  type ResultSetHeader,
} from "mysql2/promise";
import type { Driver, DriverOptions } from "./driver.ts";
import type { SqlTarget } from "./url.ts";

/** Open a pool to `target` (connections are made on first use). */
export function openMysql(
  target: Extract<SqlTarget, { kind: "mysql" }>,
  options: DriverOptions,
): Driver {
  const ssl = target.socket === undefined ? sslOption(target) : undefined;
  const pool = createPool({
    ...(target.socket === undefined
      ? { host: target.host!, port: target.port }
      : { socketPath: target.socket }),
    user: target.user,
    ...(target.password === undefined ? {} : { password: target.password }),
    database: target.database,
    connectionLimit: options.poolSize,
    maxIdle: options.poolSize,
    idleTimeout: 60_000,
    connectTimeout: options.connectTimeoutMs,
    rowsAsArray: true,
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    charset: "utf8mb4",
    ...(ssl === undefined ? {} : { ssl }),
  });
  return {
    async select(text, params) {
      const [rows] = await pool.execute(text, [...params]);
      return rows as unknown[][];
    },
    async updateOne(text, params, guard) {
      let conn: PoolConnection | undefined;
      try {
        conn = await pool.getConnection();
        await conn.beginTransaction();
        const c = conn;
        const select = async (t: string, p: readonly string[]) =>
          (await c.execute(t, [...p]))[0] as unknown[][];
        if (!(await guard(select))) {
          await conn.rollback();
          conn.release();
          conn = undefined;
          return "refused";
        }
        const [result] = await conn.execute(text, [...params]);
        const count = (result as ResultSetHeader).affectedRows;
        if (count === 1) await conn.commit();
        else await conn.rollback();
        conn.release();
        conn = undefined;
        return count;
      } finally {
        // Failed midway: the connection may hold an open transaction.
        conn?.destroy();
      }
    },
    async close() {
      await pool.end().catch(() => {});
    },
  };
}

function sslOption(
  target: Extract<SqlTarget, { kind: "mysql" }>,
):
  | { rejectUnauthorized: boolean; checkServerIdentity?: () => undefined }
  | undefined {
  switch (target.sslMode) {
    case "DISABLED":
    case "PREFERRED":
      return undefined;
    case "REQUIRED":
      return { rejectUnauthorized: false };
    case "VERIFY_CA":
      return { rejectUnauthorized: true, checkServerIdentity: () => undefined };
    case "VERIFY_IDENTITY":
      return { rejectUnauthorized: true };
  }
}
