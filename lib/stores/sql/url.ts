/**
 * `--sql-url` → where the SQL store connects: PostgreSQL (host or unix
 * socket folder, `sslmode`), MySQL/MariaDB (host or `socket=`), or an
 * SQLite file. Pure parsing, no driver: config imports this at startup.
 *
 * @module
 */

import { quote, UsageError } from "../../config/options.ts";

/** PostgreSQL's `sslmode` values, as libpq names them. */
export type PgSslMode =
  | "disable"
  | "allow"
  | "prefer"
  | "require"
  | "verify-ca"
  | "verify-full";

/** MySQL's `ssl-mode` values, as the mysql client names them. */
export type MysqlSslMode =
  | "DISABLED"
  | "PREFERRED"
  | "REQUIRED"
  | "VERIFY_CA"
  | "VERIFY_IDENTITY";

/** A parsed `--sql-url`. */
export type SqlTarget =
  | {
    readonly kind: "postgresql";
    /** Absent: as libpq, `PGUSER` or the user the server runs as. */
    readonly user?: string;
    readonly password?: string;
    /** A host name or address; absent when `socketDir` is set. */
    readonly host?: string;
    /** The folder of the unix socket (`?host=/run/postgresql`). */
    readonly socketDir?: string;
    readonly port: number;
    readonly database: string;
    readonly sslmode: PgSslMode;
    /** `sslrootcert=FILE`: CA certificates for verify-ca/verify-full. */
    readonly sslrootcert?: string;
  }
  | {
    readonly kind: "mysql";
    readonly user: string;
    readonly password?: string;
    readonly host?: string;
    /** The unix socket file (`?socket=/run/mysqld/mysqld.sock`). */
    readonly socket?: string;
    readonly port: number;
    readonly database: string;
    readonly sslMode: MysqlSslMode;
  }
  | {
    readonly kind: "sqlite";
    /** Absolute path of the database file. */
    readonly path: string;
  };

const PG_SSL: readonly PgSslMode[] = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];
const MYSQL_SSL: readonly MysqlSslMode[] = [
  "DISABLED",
  "PREFERRED",
  "REQUIRED",
  "VERIFY_CA",
  "VERIFY_IDENTITY",
];

const SHAPE =
  /^([a-z][a-z0-9+.-]*):\/\/(?:([^:@/?#]*)(?::([^@/?#]*))?@)?(\[[0-9A-Fa-f:.]+\]|[^:/?#\[\]]*)(?::(\d*))?(\/[^?#]*)?(?:\?([^#]*))?$/;

/**
 * Parse a URL; throws `UsageError` naming the problem (never the
 * password) for anything malformed or unsupported.
 */
export function parseSqlUrl(text: string): SqlTarget {
  const fail = (why: string): never => {
    throw new UsageError(`--sql-url ${shown(text)}: ${why}`);
  };
  if (/[\s\0]/.test(text)) fail("contains white space or NUL");
  const m = SHAPE.exec(text);
  if (!m) {
    return fail(
      "expected postgresql://USER@HOST/DB, mysql://USER@HOST/DB or sqlite:///PATH",
    );
  }
  const [, scheme, rawUser, rawPass, rawHost, rawPort, rawPath, rawQuery] = m;
  const decode = (what: string, part: string | undefined) => {
    if (part === undefined) return undefined;
    try {
      return decodeURIComponent(part);
    } catch {
      return fail(`bad %-escape in the ${what}`);
    }
  };
  const user = decode("user name", rawUser);
  const password = decode("password", rawPass);
  const host = decode("host", rawHost)!.replace(/^\[(.*)\]$/, "$1");
  const path = decode("database name", rawPath);
  const params = new Map<string, string>();
  for (const pair of (rawQuery ?? "").split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) fail(`parameter ${quote(pair)} is not NAME=VALUE`);
    const name = decode("parameters", pair.slice(0, eq))!;
    if (params.has(name)) fail(`parameter ${quote(name)} given twice`);
    params.set(name, decode("parameters", pair.slice(eq + 1))!);
  }
  const port = (fallback: number) => {
    if (rawPort === undefined || rawPort === "") return fallback;
    const n = Number(rawPort);
    if (!(n >= 1 && n <= 65_535)) fail(`port ${quote(rawPort)} out of range`);
    return n;
  };
  const only = (allowed: readonly string[]) => {
    for (const name of params.keys()) {
      if (!allowed.includes(name)) {
        fail(
          `unsupported parameter ${quote(name)} (this store knows ${
            allowed.join(", ") || "none"
          })`,
        );
      }
    }
  };
  const database = () => {
    const db = (path ?? "").replace(/^\//, "");
    if (db === "" || db.includes("/")) fail("expected one database name: /DB");
    return db;
  };
  const userName = () => {
    if (user === undefined || user === "") fail("expected a user name: USER@");
    return user!;
  };
  switch (scheme) {
    case "postgresql":
    case "postgres": {
      only(["host", "port", "sslmode", "sslrootcert"]);
      const socketDir = params.get("host");
      const sslmode = params.get("sslmode") ?? "prefer";
      if (!PG_SSL.includes(sslmode as PgSslMode)) {
        fail(`sslmode ${quote(sslmode)}: expected ${PG_SSL.join(", ")}`);
      }
      let portNumber = port(5432);
      const portParam = params.get("port");
      if (portParam !== undefined) {
        if (rawPort) fail("port given twice");
        const n = /^\d+$/.test(portParam) ? Number(portParam) : NaN;
        if (!(n >= 1 && n <= 65_535)) {
          fail(`port ${quote(portParam)} out of range`);
        }
        portNumber = n;
      }
      const onSocket = socketDir !== undefined && socketDir.startsWith("/");
      const hostName = socketDir !== undefined && !onSocket ? socketDir : host;
      // As in libpq, ?host= wins over the host part (postgresql://u@localhost/db?host=/run/postgresql).
      if (!onSocket && hostName === "") {
        fail("no host: give HOST or ?host=/socket/folder");
      }
      const sslrootcert = params.get("sslrootcert");
      return {
        kind: "postgresql",
        ...(user === undefined || user === "" ? {} : { user }),
        ...(password === undefined ? {} : { password }),
        ...(onSocket ? { socketDir } : { host: hostName }),
        port: portNumber,
        database: database(),
        sslmode: sslmode as PgSslMode,
        ...(sslrootcert === undefined ? {} : { sslrootcert }),
      };
    }
    case "mysql":
    case "mariadb": {
      only(["socket", "ssl-mode"]);
      const socket = params.get("socket");
      if (socket !== undefined && !socket.startsWith("/")) {
        fail("socket= needs an absolute path");
      }
      if (socket === undefined && host === "") fail("no host");
      const sslMode = (params.get("ssl-mode") ?? "PREFERRED").toUpperCase();
      if (!MYSQL_SSL.includes(sslMode as MysqlSslMode)) {
        fail(`ssl-mode ${quote(sslMode)}: expected ${MYSQL_SSL.join(", ")}`);
      }
      return {
        kind: "mysql",
        user: userName(),
        ...(password === undefined ? {} : { password }),
        ...(socket === undefined ? { host } : { socket }),
        port: port(3306),
        database: database(),
        sslMode: sslMode as MysqlSslMode,
      };
    }
    case "sqlite": {
      only([]);
      if (rawUser !== undefined || rawPass !== undefined) {
        fail("sqlite takes no user or password");
      }
      if (host !== "" || rawPort !== undefined) {
        fail("expected sqlite:///absolute/path (three slashes)");
      }
      if (!path || path === "/" || path.endsWith("/")) {
        fail("expected sqlite:///absolute/path/to/file");
      }
      return { kind: "sqlite", path: path! };
    }
    default:
      return fail(
        `unknown scheme ${
          quote(scheme!)
        }: expected postgresql, mysql or sqlite`,
      );
  }
}

/** Does the URL text carry a password (`USER:PASS@`)? */
export function hasPassword(target: SqlTarget): boolean {
  return target.kind !== "sqlite" && target.password !== undefined &&
    target.password !== "";
}

/** The URL with any password replaced by `***`, for logs and errors. */
export function shown(text: string): string {
  return quote(
    text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):[^@/?#]*@/i, "$1:***@"),
  );
}

/** Where the store connects, for the startup line (no password). */
export function describeTarget(target: SqlTarget): string {
  switch (target.kind) {
    case "postgresql":
      return `postgresql ${target.user === undefined ? "" : `${target.user}@`}${
        target.socketDir ?? `${target.host}:${target.port}`
      }/${target.database}`;
    case "mysql":
      return `mysql ${target.user}@${
        target.socket ?? `${target.host}:${target.port}`
      }/${target.database}`;
    case "sqlite":
      return `sqlite ${target.path}`;
  }
}
