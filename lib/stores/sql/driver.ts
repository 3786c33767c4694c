/**
 * What the SQL store needs from a database driver: rows of one query, and
 * one update in a transaction that commits only when it touched exactly
 * one row.
 *
 * @module
 */

import type { SqlTarget } from "./url.ts";

/** One open pool (or single connection) to one database. */
export interface Driver {
  /** Run a query with bound parameters; rows as arrays of column values. */
  select(text: string, params: readonly string[]): Promise<unknown[][]>;
  /**
   * Run an update with bound parameters in a transaction: first `guard`,
   * with a query function on the same transaction (roll back and resolve
   * to `"refused"` when it says no), then the update; commit when it
   * touched exactly one row, else roll back. Resolves to the row count.
   */
  updateOne(
    text: string,
    params: readonly string[],
    guard: Guard,
  ): Promise<number | "refused">;
  /** Close every connection; never throws. */
  close(): Promise<void>;
}

/** A check run inside the update's transaction, before the update. */
export type Guard = (
  select: (text: string, params: readonly string[]) => Promise<unknown[][]>,
) => Promise<boolean>;

/** How a driver is opened. */
export interface DriverOptions {
  /** Connections at most (1 in stdio mode). */
  readonly poolSize: number;
  /** Deadline for opening one connection. */
  readonly connectTimeoutMs: number;
  /** Deadline for one statement, for drivers that can ask the server. */
  readonly queryTimeoutMs: number;
}

/** The network drivers, each its own module so only the one in use loads. */
export interface NetworkDrivers {
  readonly postgresql?: (
    target: Extract<SqlTarget, { kind: "postgresql" }>,
    options: DriverOptions,
  ) => Driver;
  readonly mysql?: (
    target: Extract<SqlTarget, { kind: "mysql" }>,
    options: DriverOptions,
  ) => Driver;
}
