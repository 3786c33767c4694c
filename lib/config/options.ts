/**
 * The option table: every command-line option, its `POPPASS_*` variable
 * and how its value is read. Parsing stops at the first positional
 * argument or `--`, so the checkpassword chain passes through untouched.
 *
 * @module
 */

import { MAX_SECONDS } from "../common/limits.ts";

/** How an option's text becomes a value. */
export type OptionKind = "flag" | "seconds" | "count" | "text" | "list";

/** One row of the option table. */
export interface OptionSpec {
  readonly name: string;
  readonly env: string;
  readonly kind: OptionKind;
  readonly help: string;
}

/** All options, in the order `--help` lists them. */
export const OPTIONS: readonly OptionSpec[] = [
  {
    name: "listen",
    env: "POPPASS_LISTEN",
    kind: "list",
    help: "ADDR:PORT  listen mode (repeatable)",
  },
  {
    name: "tls-cert",
    env: "POPPASS_TLS_CERT",
    kind: "text",
    help: "FILE  PEM certificate: implicit TLS",
  },
  {
    name: "tls-key",
    env: "POPPASS_TLS_KEY",
    kind: "text",
    help: "FILE  PEM private key",
  },
  {
    name: "allow-plaintext",
    env: "POPPASS_ALLOW_PLAINTEXT",
    kind: "flag",
    help: "allow plaintext listeners off loopback",
  },
  {
    name: "fail-delay",
    env: "POPPASS_FAIL_DELAY",
    kind: "seconds",
    help: "S  delay after a failure (5)",
  },
  {
    name: "max-line",
    env: "POPPASS_MAX_LINE",
    kind: "count",
    help: "N  line limit in octets (512)",
  },
  {
    name: "idle-timeout",
    env: "POPPASS_IDLE_TIMEOUT",
    kind: "seconds",
    help: "S  deadline per line (60)",
  },
  {
    name: "session-timeout",
    env: "POPPASS_SESSION_TIMEOUT",
    kind: "seconds",
    help: "S  deadline per session (180)",
  },
  {
    name: "child-timeout",
    env: "POPPASS_CHILD_TIMEOUT",
    kind: "seconds",
    help: "S  deadline per child program (30)",
  },
  {
    name: "max-sessions",
    env: "POPPASS_MAX_SESSIONS",
    kind: "count",
    help: "N  listen: concurrent sessions (40)",
  },
  {
    name: "max-per-ip",
    env: "POPPASS_MAX_PER_IP",
    kind: "count",
    help: "N  listen: sessions and TLS handshakes per client (10, 0 = off)",
  },
  {
    name: "per-ip-prefix4",
    env: "POPPASS_PER_IP_PREFIX4",
    kind: "count",
    help: "BITS  listen: IPv4 clients share --max-per-ip per /BITS (32)",
  },
  {
    name: "per-ip-prefix6",
    env: "POPPASS_PER_IP_PREFIX6",
    kind: "count",
    help: "BITS  listen: IPv6 clients share --max-per-ip per /BITS (64)",
  },
  {
    name: "proxy-protocol",
    env: "POPPASS_PROXY_PROTOCOL",
    kind: "text",
    help: "CIDR,...  peers that must send a PROXY header (HAProxy)",
  },
  {
    name: "fd3-helper",
    env: "POPPASS_FD3_HELPER",
    kind: "text",
    help: "FILE  compiled fd-3 shim (fd3exec) instead of /bin/sh",
  },
  {
    name: "fd3-spawner",
    env: "POPPASS_FD3_SPAWNER",
    kind: "text",
    help: "FILE  listen: long-lived program starter (fd3spawn)",
  },
  {
    name: "passwd-file",
    env: "POPPASS_PASSWD_FILE",
    kind: "text",
    help: "FILE  built-in Dovecot passwd-file back end",
  },
  {
    name: "sql-url",
    env: "POPPASS_SQL_URL",
    kind: "text",
    help: "URL  built-in SQL back end: postgresql://, mysql://, sqlite:///",
  },
  {
    name: "sql-url-file",
    env: "POPPASS_SQL_URL_FILE",
    kind: "text",
    help: "FILE  read --sql-url from FILE (keeps a password out of ps)",
  },
  {
    name: "sql-password-query",
    env: "POPPASS_SQL_PASSWORD_QUERY",
    kind: "text",
    help: "Q  SQL: stored hash of %u (PostfixAdmin mailbox)",
  },
  {
    name: "sql-update-query",
    env: "POPPASS_SQL_UPDATE_QUERY",
    kind: "text",
    help: "Q  SQL: set the new hash %w of %u (PostfixAdmin mailbox)",
  },
  {
    name: "passwd-scheme",
    env: "POPPASS_PASSWD_SCHEME",
    kind: "text",
    help: "S  scheme for new hashes (ARGON2ID)",
  },
  {
    name: "min-password-length",
    env: "POPPASS_MIN_PASSWORD_LENGTH",
    kind: "count",
    help: "N  passwd-file, SQL: shortest new password (8)",
  },
  {
    name: "pam",
    env: "POPPASS_PAM",
    kind: "text",
    help: "SERVICE  built-in PAM store (/etc/pam.d/SERVICE)",
  },
  {
    name: "pam-min-uid",
    env: "POPPASS_PAM_MIN_UID",
    kind: "count",
    help: "N  PAM: refuse accounts below this uid (1000)",
  },
  {
    name: "ldap-url",
    env: "POPPASS_LDAP_URL",
    kind: "text",
    help: "URLS  LDAP store: ldap:// or ldaps:// URLs, tried in order",
  },
  {
    name: "ldap-user-dn",
    env: "POPPASS_LDAP_USER_DN",
    kind: "text",
    help:
      "TEMPLATE  LDAP: the user's DN, e.g. uid=%n,ou=people,dc=example,dc=org",
  },
  {
    name: "ldap-base",
    env: "POPPASS_LDAP_BASE",
    kind: "text",
    help: "DN  LDAP: search the user's DN below this base",
  },
  {
    name: "ldap-filter",
    env: "POPPASS_LDAP_FILTER",
    kind: "text",
    help: "FILTER  LDAP: search filter ((uid=%n))",
  },
  {
    name: "ldap-bind-dn",
    env: "POPPASS_LDAP_BIND_DN",
    kind: "text",
    help: "DN  LDAP: search as this DN (password: POPPASS_LDAP_BIND_PASSWORD)",
  },
  {
    name: "ldap-bind-password-file",
    env: "POPPASS_LDAP_BIND_PASSWORD_FILE",
    kind: "text",
    help: "FILE  LDAP: the --ldap-bind-dn password",
  },
  {
    name: "ldap-starttls",
    env: "POPPASS_LDAP_STARTTLS",
    kind: "flag",
    help: "LDAP: StartTLS on ldap:// before any bind",
  },
  {
    name: "ldap-ca",
    env: "POPPASS_LDAP_CA",
    kind: "text",
    help: "FILE  LDAP: PEM CA certificates to verify the server with",
  },
  {
    name: "check-config",
    env: "",
    kind: "flag",
    help: "check the settings, print every warning, exit (0 valid, 100 not)",
  },
  { name: "help", env: "", kind: "flag", help: "print this help and exit" },
  {
    name: "version",
    env: "",
    kind: "flag",
    help: "print the version and exit",
  },
];

/** A usage or configuration mistake: exit 100. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** Raw option values by option name, before interpretation. */
export type RawOptions = Map<string, string[]>;

/** Split argv into options (up to the first positional or `--`) and positionals. */
export function splitArgs(
  args: readonly string[],
): { options: RawOptions; positionals: string[] } {
  const options: RawOptions = new Map();
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      i++;
      break;
    }
    if (arg === "-h") add(options, "help", "1");
    else if (arg.startsWith("--")) i = takeLong(args, i, options);
    else if (arg.startsWith("-") && arg !== "-") {
      throw new UsageError(`unknown option ${quote(arg)}`);
    } else break;
  }
  return { options, positionals: args.slice(i) };
}

/**
 * Does argv ask for listen mode? Reads only the option words (before the
 * first positional or `--`), without judging them, so that a startup error
 * can still tell whether a stdio client is waiting for a `500` line.
 */
export function asksForListen(args: readonly string[]): boolean {
  return asksFor(args, "listen");
}

/** Does argv give the option `name` (read as `asksForListen` reads)? */
export function asksFor(args: readonly string[], name: string): boolean {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--" || !arg.startsWith("-") || arg === "-") return false;
    if (arg === `--${name}` || arg.startsWith(`--${name}=`)) return true;
    const spec = OPTIONS.find((o) => `--${o.name}` === arg);
    if (spec && spec.kind !== "flag") i++;
  }
  return false;
}

function takeLong(
  args: readonly string[],
  i: number,
  options: RawOptions,
): number {
  const arg = args[i]!;
  const eq = arg.indexOf("=");
  const name = arg.slice(2, eq < 0 ? undefined : eq);
  const spec = OPTIONS.find((o) => o.name === name);
  if (!spec) throw new UsageError(`unknown option ${quote(arg)}`);
  if (spec.kind === "flag") {
    if (eq >= 0) throw new UsageError(`--${name} takes no value`);
    add(options, name, "1");
    return i;
  }
  if (eq >= 0) {
    add(options, name, arg.slice(eq + 1));
    return i;
  }
  const value = args[i + 1];
  if (value === undefined) throw new UsageError(`--${name} needs a value`);
  add(options, name, value);
  return i + 1;
}

function add(options: RawOptions, name: string, value: string): void {
  const list = options.get(name) ?? [];
  list.push(value);
  options.set(name, list);
}

/**
 * The effective text of an option: the last command-line value, else its
 * non-empty environment variable (an empty envdir file means unset).
 */
export function lookup(
  options: RawOptions,
  name: string,
  env: (name: string) => string | undefined,
): string | undefined {
  const given = options.get(name);
  if (given) return given[given.length - 1];
  const spec = OPTIONS.find((o) => o.name === name);
  const value = spec?.env ? env(spec.env) : undefined;
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

/** Seconds (decimals allowed) to milliseconds, within 0..MAX_SECONDS. */
export function parseSeconds(name: string, text: string): number {
  const value = /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
  if (!(value >= 0 && value <= MAX_SECONDS)) {
    throw new UsageError(
      `--${name}: expected seconds from 0 to ${MAX_SECONDS}, got ${
        quote(text)
      }`,
    );
  }
  return Math.round(value * 1000);
}

/** A whole number within `min..max`. */
export function parseCount(
  name: string,
  text: string,
  min: number,
  max: number,
): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(
      `--${name}: expected a whole number from ${min} to ${max}, got ${
        quote(text)
      }`,
    );
  }
  return value;
}

/** Quote a value for an error message, safely. */
export function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? text.slice(0, 80) + "…" : text);
}

/** The `--help` text. */
export function usageText(): string {
  const lines = OPTIONS.map((o) => {
    const [arg, ...rest] = o.help.includes("  ")
      ? o.help.split("  ")
      : ["", o.help];
    const left = `  --${o.name}${arg ? " " + arg : ""}`;
    const env = o.env ? ` [${o.env}]` : "";
    return `${left.padEnd(30)} ${rest.join("  ")}${env}`;
  });
  return [
    "usage: qmail-poppass [options] hostname checkprogram [subprogram ...]",
    "       qmail-poppass [options] --passwd-file FILE hostname",
    "       qmail-poppass [options] --pam SERVICE hostname",
    "       qmail-poppass [options] --ldap-url URL (--ldap-user-dn T | --ldap-base DN) hostname",
    "       qmail-poppass [options] --sql-url URL hostname",
    "",
    "PASSWORD_COMMAND names the setpassword program (with the checkprogram form).",
    "Without --listen, one session is served on fd 0/1 (tcpserver, inetd, systemd).",
    "",
    "options (each also read from the variable in brackets; the command line wins):",
    ...lines,
  ].join("\n");
}
