/**
 * The SQL store's options: `--sql-url` / `--sql-url-file`, the two
 * queries, checked at startup. Loads no driver.
 *
 * @module
 */

import { quote, UsageError } from "../../config/options.ts";
import { hasPassword, parseSqlUrl, type SqlTarget } from "./url.ts";
import {
  compileQuery,
  DEFAULT_PASSWORD_QUERY,
  DEFAULT_UPDATE_QUERY,
  type Query,
} from "./query.ts";

/** What the SQL store needs from the configuration. */
export interface SqlSettings {
  readonly target: SqlTarget;
  readonly passwordQuery: Query;
  readonly updateQuery: Query;
}

/**
 * Read the SQL options; undefined when neither `--sql-url` nor
 * `--sql-url-file` is set (another store is meant). `chain` is the
 * positional words after the hostname, which this store does not take;
 * `onArgv` names the options given on the command line.
 * A password in a URL given on the command line (`ps` shows it) is
 * accepted with a warning.
 */
export function parseSqlSettings(
  get: (name: string) => string | undefined,
  chain: readonly string[],
  warnings: string[],
  onArgv: readonly string[],
): SqlSettings | undefined {
  const direct = get("sql-url");
  const file = get("sql-url-file");
  if (direct === undefined && file === undefined) {
    for (const name of ["sql-password-query", "sql-update-query"]) {
      if (get(name) !== undefined) {
        throw new UsageError(`--${name} needs --sql-url or --sql-url-file`);
      }
    }
    return undefined;
  }
  for (const other of ["passwd-file", "fd3-helper", "fd3-spawner"]) {
    if (get(other) !== undefined) {
      throw new UsageError(`--sql-url and --${other} do not go together`);
    }
  }
  if (chain.length > 0) {
    throw new UsageError(
      "--sql-url replaces the checkpassword chain: give only the hostname",
    );
  }
  if (direct !== undefined && file !== undefined) {
    throw new UsageError("give --sql-url or --sql-url-file, not both");
  }
  let text: string;
  if (file !== undefined) {
    try {
      const info = Deno.statSync(file);
      if (((info.mode ?? 0) & 0o077) !== 0) {
        warnings.push(
          `--sql-url-file ${
            quote(file)
          } is readable by group or others; chmod 600 it`,
        );
      }
      text = (Deno.readTextFileSync(file).split("\n")[0] ?? "").trim();
    } catch (error) {
      throw new UsageError(
        `cannot read --sql-url-file ${quote(file)}: ${
          (error as Error).message
        }`,
      );
    }
  } else {
    text = direct!;
  }
  const target = parseSqlUrl(text);
  if (file === undefined && onArgv.includes("sql-url") && hasPassword(target)) {
    warnings.push(
      "the --sql-url on the command line holds a password, which every local user can read with ps; " +
        "set POPPASS_SQL_URL from a mode 0600 envdir file, or use --sql-url-file, instead",
    );
  }
  const updateQuery = compileQuery(
    "sql-update-query",
    get("sql-update-query") ?? DEFAULT_UPDATE_QUERY,
    ["u", "n", "d", "w"],
  );
  if (!updateQuery.params.includes("w")) {
    throw new UsageError("--sql-update-query must set the new hash: %w");
  }
  return {
    target,
    passwordQuery: compileQuery(
      "sql-password-query",
      get("sql-password-query") ?? DEFAULT_PASSWORD_QUERY,
      ["u", "n", "d"],
    ),
    updateQuery,
  };
}

/**
 * The Deno permission the store lacks to reach `target`, as a sentence
 * naming the flag, or undefined. Checked before the driver loads: a
 * driver that meets a missing permission mid-connect can fail outside
 * any promise the server awaits.
 */
export function sqlPermissionProblem(target: SqlTarget): string | undefined {
  const lacks = (descriptor: Deno.PermissionDescriptor) =>
    Deno.permissions.querySync(descriptor).state !== "granted";
  switch (target.kind) {
    case "postgresql": {
      if (target.socketDir !== undefined) {
        const path = `${target.socketDir}/.s.PGSQL.${target.port}`;
        return lacks({ name: "write", path })
          ? `the SQL store needs --allow-write=${path} to connect to its socket`
          : undefined;
      }
      return lacks({ name: "net", host: `${target.host}:${target.port}` })
        ? `the SQL store needs --allow-net to reach ${target.host}:${target.port}`
        : undefined;
    }
    case "mysql":
      if (target.socket !== undefined) {
        return lacks({ name: "write", path: target.socket })
          ? `the SQL store needs --allow-write=${target.socket} to connect to its socket`
          : undefined;
      }
      return lacks({ name: "net", host: `${target.host}:${target.port}` })
        ? `the SQL store needs --allow-net to reach ${target.host}:${target.port}`
        : undefined;
    case "sqlite": {
      const folder = target.path.replace(/\/[^/]*$/, "") || "/";
      // SQLite writes a journal next to the file.
      return lacks({ name: "write", path: folder }) ||
          lacks({ name: "read", path: folder })
        ? `the SQL store needs --allow-read and --allow-write=${folder} for ${target.path} and its journal`
        : undefined;
    }
  }
}
