/**
 * The built-in SQL store: check and change passwords in PostgreSQL,
 * MariaDB/MySQL or SQLite with two configurable queries (PostfixAdmin's
 * `mailbox` table by default). User names and hashes are always bound
 * parameters. The driver is opened lazily and replaced after any database
 * error, so a database that restarts is reconnected by the next session.
 *
 * @module
 */

import type { Backend, Outcome } from "../backend.ts";
import {
  costClass,
  dummyVerify,
  type Verdict,
  verify,
  type WriteScheme,
} from "../../hash/mod.ts";
import { hashNewPassword } from "../policy.ts";
import {
  SQL_CONNECT_TIMEOUT_MS,
  SQL_COST_CLASSES_MAX,
  SQL_QUERY_TIMEOUT_MS,
} from "../../common/limits.ts";
import { bind, type Query, render, valuesOf } from "./query.ts";
import { describeTarget, type SqlTarget } from "./url.ts";
import type { Driver, DriverOptions, Guard, NetworkDrivers } from "./driver.ts";
import { openSqlite } from "./sqlite.ts";

/** Settings of {@link createSqlBackend}. */
export interface SqlBackendOptions {
  readonly target: SqlTarget;
  readonly passwordQuery: Query;
  readonly updateQuery: Query;
  /** The scheme new passwords are hashed in. */
  readonly scheme: WriteScheme;
  /** Fewest characters a new password may have (as for the passwd-file). */
  readonly minPasswordLength: number;
  /** Connections at most: a small pool in listen mode, 1 in stdio mode. */
  readonly poolSize: number;
  /**
   * Run the password query once at startup to tell the admin early (listen
   * mode); a failure is a warning.
   */
  readonly probe: boolean;
  /**
   * The driver for `target` (postgres.ts or mysql.ts, loaded by the caller:
   * the bundle embeds each on its own). SQLite's is built in.
   */
  readonly drivers: NetworkDrivers;
  /** For the startup warning; session outcomes are logged by the session. */
  readonly log: (line: string) => void;
  /** Deadlines; the limits.ts values when absent (tests shorten them). */
  readonly connectTimeoutMs?: number;
  readonly queryTimeoutMs?: number;
}

/** A {@link Backend} that also closes its connections. */
export interface SqlBackend extends Backend {
  /** Close the pool; sessions still running get temporary failures. */
  close(): Promise<void>;
}

/** A database step that did not finish: error or deadline. */
class DatabaseTrouble extends Error {}

/** Make the SQL back end. Never throws for an unreachable database. */
export async function createSqlBackend(
  options: SqlBackendOptions,
): Promise<SqlBackend> {
  const { target, scheme, minPasswordLength, log } = options;
  const driverOptions: DriverOptions = {
    poolSize: target.kind === "sqlite" ? 1 : options.poolSize,
    connectTimeoutMs: options.connectTimeoutMs ?? SQL_CONNECT_TIMEOUT_MS,
    queryTimeoutMs: options.queryTimeoutMs ?? SQL_QUERY_TIMEOUT_MS,
  };
  const dialect = target.kind;
  const selectText = render(options.passwordQuery, dialect);
  const updateText = render(options.updateQuery, dialect);
  const where = describeTarget(target);
  let driver: Driver | undefined;
  let closed = false;

  const open = (): Driver => {
    if (closed) throw new DatabaseTrouble("the store is closed");
    const missing = () =>
      new DatabaseTrouble(`no ${target.kind} driver was loaded`);
    switch (target.kind) {
      case "postgresql": {
        const open = options.drivers.postgresql;
        if (!open) throw missing();
        return open(target, driverOptions);
      }
      case "mysql": {
        const open = options.drivers.mysql;
        if (!open) throw missing();
        return open(target, driverOptions);
      }
      case "sqlite":
        return openSqlite(target, driverOptions);
    }
  };

  /**
   * Run one step against the current driver within the deadline. On any
   * error the driver is dropped and closed, so the next step connects
   * afresh (a restarted database, a dead connection in the pool).
   */
  async function step<T>(what: string, run: (d: Driver) => Promise<T>) {
    const d = driver ??= open();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new DatabaseTrouble(
              `no answer within ${driverOptions.queryTimeoutMs} ms`,
            ),
          ),
        driverOptions.queryTimeoutMs,
      );
    });
    let work: Promise<T> | undefined;
    try {
      work = run(d);
      return await Promise.race([work, deadline]);
    } catch (error) {
      work?.catch(() => {});
      if (driver === d) driver = undefined;
      void d.close();
      throw new DatabaseTrouble(`${where}: ${what}: ${describe(error)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  const trouble = (error: unknown): Outcome => {
    const reason = error instanceof DatabaseTrouble
      ? error.message
      : `${where}: ${describe(error)}`;
    return { kind: "temporary", reason };
  };

  // The stored hashes seen so far, by cost class (scheme and parameters):
  // an unknown user's dummy check is spent on the most common class, so
  // that its time does not tell it from a wrong password even with a short
  // --fail-delay, whatever scheme the rows hold. Before the first row, the
  // write scheme stands in.
  const seen = new Map<string, { count: number; sample: string }>();
  const remember = (stored: string) => {
    const key = costClass(stored);
    const entry = seen.get(key);
    if (entry) entry.count++;
    else if (seen.size < SQL_COST_CLASSES_MAX) {
      seen.set(key, { count: 1, sample: stored });
    }
  };
  const dummy = async (pw: Uint8Array) => {
    let best: { count: number; sample: string } | undefined;
    for (const entry of seen.values()) {
      if (!best || entry.count > best.count) best = entry;
    }
    if (best === undefined) return await dummyVerify(scheme, pw);
    await verify(best.sample, pw);
  };

  /** The stored hash of `user` after checking `pw`, or the outcome. */
  async function authenticate(
    user: Uint8Array,
    pw: Uint8Array,
  ): Promise<Outcome | { stored: string; name: string }> {
    const name = utf8(user);
    if (name === undefined || name.includes("\0")) {
      // Not UTF-8, or a NUL (PostgreSQL refuses it in text): no row can
      // hold it. Cost what a wrong password costs.
      await dummy(pw);
      return { kind: "rejected", reason: "unknown user (not UTF-8 or NUL)" };
    }
    let rows: unknown[][];
    try {
      rows = await step(
        "password query",
        (d) =>
          d.select(selectText, bind(options.passwordQuery, valuesOf(name))),
      );
    } catch (error) {
      return trouble(error);
    }
    if (rows.length > 1) {
      const reason =
        `${where}: the password query returned ${rows.length} rows for one user; fix the query or the data`;
      return { kind: "temporary", reason };
    }
    const stored = rows.length === 1 ? text(rows[0]![0]) : undefined;
    if (stored === undefined || stored === "") {
      await dummy(pw);
      return {
        kind: "rejected",
        reason: rows.length === 0 ? "unknown user" : "no password stored",
      };
    }
    remember(stored);
    const verdict = await verify(stored, pw);
    return verdict.kind === "match" ? { stored, name } : outcomeOf(verdict);
  }

  if (options.probe) {
    try {
      // The password query itself, for a user no row has: a missing table
      // or a typo shows now, not at the first session.
      await step(
        "password query at startup",
        (d) => d.select(selectText, bind(options.passwordQuery, valuesOf(""))),
      );
    } catch (error) {
      log(
        `warning: the database cannot be used now (${
          describe(error)
        }); sessions get temporary failures until it can`,
      );
    }
  }

  return {
    async check(user, oldPassword) {
      const found = await authenticate(user, oldPassword);
      return "kind" in found ? found : { kind: "ok" };
    },
    async change(user, oldPassword, newPassword) {
      const found = await authenticate(user, oldPassword);
      if ("kind" in found) return found;
      const hashed = await hashNewPassword(
        oldPassword,
        newPassword,
        minPasswordLength,
        scheme,
      );
      if (typeof hashed !== "string") return hashed;
      // In the update's transaction, read the hash again: if another
      // change landed since the check, the old password must still match.
      const guard: Guard = async (select) => {
        const rows = await select(
          selectText,
          bind(options.passwordQuery, valuesOf(found.name)),
        );
        const now = rows.length === 1 ? text(rows[0]![0]) : undefined;
        if (now === found.stored) return true;
        if (now === undefined || now === "") return false;
        return (await verify(now, oldPassword)).kind === "match";
      };
      let count: number | "refused";
      try {
        count = await step(
          "update query",
          (d) =>
            d.updateOne(
              updateText,
              bind(options.updateQuery, valuesOf(found.name, hashed)),
              guard,
            ),
        );
      } catch (error) {
        return trouble(error);
      }
      if (count === "refused") {
        return {
          kind: "rejected",
          reason:
            "the password changed meanwhile and the old one no longer matches; rolled back",
        };
      }
      if (count !== 1) {
        const reason =
          `${where}: the update query touched ${count} rows, not 1; rolled back`;
        return { kind: "temporary", reason };
      }
      return { kind: "ok" };
    },
    async close() {
      closed = true;
      const d = driver;
      driver = undefined;
      await d?.close();
    },
  };
}

function outcomeOf(verdict: Verdict): Outcome {
  if (verdict.kind === "match") return { kind: "ok" };
  if (verdict.kind === "mismatch") {
    return { kind: "rejected", reason: "wrong password" };
  }
  return { kind: "temporary", reason: verdict.reason };
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function utf8(octets: Uint8Array): string | undefined {
  try {
    return decoder.decode(octets);
  } catch {
    return undefined;
  }
}

/** A column value as text: strings, and binary columns holding text. */
function text(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return utf8(value);
  return undefined;
}

function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s+/g, " ").slice(0, 300);
}
