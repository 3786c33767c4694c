/**
 * SQLite through Deno's built-in `node:sqlite` (no npm package). Calls
 * are synchronous; a locked database is waited for briefly
 * (`SQLITE_BUSY_MS`).
 *
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import type { Driver, DriverOptions } from "./driver.ts";
import type { SqlTarget } from "./url.ts";
import { SQLITE_BUSY_MS } from "../../common/limits.ts";

/** Open the database file lazily, at the first statement. */
export function openSqlite(
  target: Extract<SqlTarget, { kind: "sqlite" }>,
  options: DriverOptions,
): Driver {
  let db: DatabaseSync | undefined;
  const open = () => {
    if (!db) {
      try {
        Deno.statSync(target.path);
      } catch {
        throw new Error(`${target.path} does not exist`);
      }
      // node:sqlite waits for a lock synchronously, holding the only JS
      // thread: a short wait, then a temporary failure.
      db = new DatabaseSync(target.path, {
        timeout: Math.min(options.queryTimeoutMs, SQLITE_BUSY_MS),
      });
    }
    return db;
  };
  return {
    select(text, params) {
      return Promise.resolve().then(() => rows(open(), text, params));
    },
    async updateOne(text, params, guard) {
      await Promise.resolve();
      const d = open();
      d.exec("BEGIN IMMEDIATE");
      try {
        const select = (t: string, p: readonly string[]) =>
          Promise.resolve(rows(d, t, p));
        if (!(await guard(select))) {
          d.exec("ROLLBACK");
          return "refused";
        }
        const count = Number(d.prepare(text).run(...params).changes);
        d.exec(count === 1 ? "COMMIT" : "ROLLBACK");
        return count;
      } catch (error) {
        if (d.isTransaction) d.exec("ROLLBACK");
        throw error;
      }
    },
    close() {
      db?.close();
      db = undefined;
      return Promise.resolve();
    },
  };
}

function rows(
  db: DatabaseSync,
  text: string,
  params: readonly string[],
): unknown[][] {
  return db.prepare(text).all(...params).map((row) =>
    Object.values(row as Record<string, unknown>)
  );
}
