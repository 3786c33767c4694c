/**
 * argv and environment → `Config`: options, host name, the checkpassword
 * chain, `PASSWORD_COMMAND`, program lookup through PATH, listen
 * addresses. Everything is checked once, at startup.
 *
 * @module
 */

import {
  DEFAULT_LIMITS,
  type Limits,
  MAX_LINE_RANGE,
  MAX_SESSIONS_CEILING,
  MIN_PASSWORD_LENGTH,
  PAYLOAD_MAX,
} from "../common/limits.ts";
import {
  lookup,
  parseCount,
  parseSeconds,
  quote,
  type RawOptions,
  splitArgs,
  UsageError,
} from "./options.ts";
import { splitCommand } from "./words.ts";
import {
  DEFAULT_SCHEME,
  WRITE_SCHEMES,
  type WriteScheme,
  writeScheme,
} from "../hash/names.ts";
import { type Network, parseNetworks } from "../serve/cidr.ts";
import { type PamConfig, parsePamConfig } from "../stores/pam/config.ts";
import { executableState } from "../common/executable.ts";
import {
  LDAP_OPTIONS,
  type LdapConfig,
  parseLdapConfig,
} from "../stores/ldap/config.ts";
import { parseSqlSettings, type SqlSettings } from "../stores/sql/config.ts";
import type { StarterChoice } from "../stores/programs/starter.ts";

export { UsageError } from "./options.ts";

/** One listen address. */
export interface ListenAddress {
  readonly hostname: string;
  readonly port: number;
}

/** Where passwords are checked and changed. */
export type BackendConfig =
  | {
    readonly kind: "programs";
    readonly checkArgv: string[];
    readonly setArgv: string[];
    /**
     * How programs start: the `/bin/sh` shim, `fd3exec` (`--fd3-helper`)
     * or, in listen mode, `fd3spawn` (`--fd3-spawner`, which wins).
     */
    readonly starter: StarterChoice;
  }
  | {
    readonly kind: "passwdFile";
    readonly path: string;
    readonly scheme: PasswdScheme;
    readonly minPasswordLength: number;
  }
  | PamConfig
  | LdapConfig
  | {
    readonly kind: "sql";
    readonly sql: SqlSettings;
    readonly scheme: PasswdScheme;
    readonly minPasswordLength: number;
  };

/**
 * The options that select a built-in store, one group per store (the SQL
 * URL may also come from a file); options of two groups may not be mixed.
 */
const STORE_OPTIONS: readonly (readonly string[])[] = [
  ["ldap-url"],
  ["pam"],
  ["sql-url", "sql-url-file"],
  ["passwd-file"],
];

/** Hash schemes the passwd-file back end can write. */
export type PasswdScheme = WriteScheme;

/** stdio (one session on fd 0/1) or listen (many sessions in one process). */
export type ModeConfig =
  | { readonly kind: "stdio" }
  | {
    readonly kind: "listen";
    readonly addresses: ListenAddress[];
    readonly tls?: { readonly certFile: string; readonly keyFile: string };
  };

/** Everything the program needs to run, validated. */
export interface Config {
  readonly hostname: string;
  readonly mode: ModeConfig;
  readonly backend: BackendConfig;
  readonly limits: Limits;
  /** `--proxy-protocol`: peers that must open with a PROXY header. */
  readonly proxy?: readonly Network[];
  /** Lines to log at startup about risky but legal settings. */
  readonly warnings: string[];
}

/** What the command line asks for. */
export type Invocation =
  | { readonly kind: "help" }
  | { readonly kind: "version" }
  | {
    /** `check`: `--check-config`, validate and report, serve nothing. */
    readonly kind: "run" | "check";
    readonly config: Config;
  };

/** How config looks at the file system (replaced in tests). */
export interface FileProbe {
  /** "ok", "missing", "notExecutable" for a path. */
  executable(path: string): "ok" | "missing" | "notExecutable";
}

/** Parse argv and environment; throws `UsageError` for every mistake. */
export function parseInvocation(
  args: readonly string[],
  env: (name: string) => string | undefined,
  probe: FileProbe,
): Invocation {
  const { options, positionals } = splitArgs(args);
  if (options.has("help")) return { kind: "help" };
  if (options.has("version")) return { kind: "version" };
  const get = (name: string) => lookup(options, name, env);
  const [hostname, ...chain] = positionals;
  if (hostname === undefined || hostname === "") {
    throw new UsageError(
      get("passwd-file") === undefined
        ? "missing hostname (usage: qmail-poppass [options] hostname checkprogram [subprogram ...])"
        : "missing hostname (usage: qmail-poppass [options] --passwd-file FILE hostname)",
    );
  }
  if (/[\r\n\0]/.test(hostname)) {
    throw new UsageError("hostname must not contain CR, LF or NUL");
  }
  const warnings: string[] = [];
  const mode = parseMode(options, get);
  const backend = parseBackend(get, chain, env, probe, warnings, mode.kind, [
    ...options.keys(),
  ]);
  const proxy = parseProxy(get("proxy-protocol"));
  return {
    kind: options.has("check-config") ? "check" : "run",
    config: {
      hostname,
      mode,
      backend,
      limits: parseLimits(get),
      ...(proxy ? { proxy } : {}),
      warnings,
    },
  };
}

function parseProxy(text: string | undefined): Network[] | undefined {
  if (text === undefined) return undefined;
  try {
    return parseNetworks(text);
  } catch (error) {
    throw new UsageError(`--proxy-protocol: ${(error as Error).message}`);
  }
}

function parseLimits(get: (name: string) => string | undefined): Limits {
  const seconds = (name: string, fallback: number) => {
    const text = get(name);
    return text === undefined ? fallback : parseSeconds(name, text);
  };
  const count = (name: string, fallback: number, min: number, max: number) => {
    const text = get(name);
    return text === undefined ? fallback : parseCount(name, text, min, max);
  };
  const limits: Limits = {
    failDelayMs: seconds("fail-delay", DEFAULT_LIMITS.failDelayMs),
    maxLine: count(
      "max-line",
      DEFAULT_LIMITS.maxLine,
      MAX_LINE_RANGE.min,
      MAX_LINE_RANGE.max,
    ),
    idleTimeoutMs: seconds("idle-timeout", DEFAULT_LIMITS.idleTimeoutMs),
    sessionTimeoutMs: seconds(
      "session-timeout",
      DEFAULT_LIMITS.sessionTimeoutMs,
    ),
    childTimeoutMs: seconds("child-timeout", DEFAULT_LIMITS.childTimeoutMs),
    maxSessions: count(
      "max-sessions",
      DEFAULT_LIMITS.maxSessions,
      1,
      MAX_SESSIONS_CEILING,
    ),
    maxPerIp: count(
      "max-per-ip",
      DEFAULT_LIMITS.maxPerIp,
      0,
      MAX_SESSIONS_CEILING,
    ),
    perIpPrefix4: count("per-ip-prefix4", DEFAULT_LIMITS.perIpPrefix4, 1, 32),
    perIpPrefix6: count("per-ip-prefix6", DEFAULT_LIMITS.perIpPrefix6, 1, 128),
  };
  for (
    const name of ["idle-timeout", "session-timeout", "child-timeout"] as const
  ) {
    if (get(name) !== undefined && seconds(name, 1) === 0) {
      throw new UsageError(
        `--${name}: a deadline of 0 s would end every session at once`,
      );
    }
  }
  return limits;
}

function parseBackend(
  get: (name: string) => string | undefined,
  chain: string[],
  env: (name: string) => string | undefined,
  probe: FileProbe,
  warnings: string[],
  mode: Config["mode"]["kind"],
  onArgv: readonly string[],
): BackendConfig {
  const stores = STORE_OPTIONS.flatMap((group) =>
    group.filter((name) => get(name) !== undefined).slice(0, 1)
  );
  if (stores.length > 1) {
    throw new UsageError(
      `${
        stores.map((name) => `--${name}`).join(" and ")
      } are two stores: choose one`,
    );
  }
  const pam = get("pam");
  if (pam !== undefined) return parsePamConfig(pam, get, chain);
  const sql = parseSqlSettings(get, chain, warnings, onArgv);
  if (sql) return { kind: "sql", sql, ...policy(get) };
  const passwdFile = get("passwd-file");
  const helperWord = get("fd3-helper");
  // Used in listen mode only, like --max-sessions: one process per
  // connection would gain nothing from a long-lived starter.
  const spawnerWord = mode === "listen" ? get("fd3-spawner") : undefined;
  const ldapUrl = get("ldap-url");
  if (ldapUrl !== undefined) {
    const other = passwdFile !== undefined
      ? "--passwd-file"
      : helperWord ?? spawnerWord
      ? "--fd3-helper/--fd3-spawner"
      : chain.length > 0
      ? "a checkpassword chain"
      : undefined;
    if (other) {
      throw new UsageError(
        `--ldap-url and ${other} are two stores: choose one (with --ldap-url, give only the hostname)`,
      );
    }
    return parseLdapConfig(ldapUrl, get, env, warnings);
  }
  const stray = LDAP_OPTIONS.find((name) => get(name) !== undefined);
  if (stray) throw new UsageError(`--${stray} needs --ldap-url`);
  if (passwdFile !== undefined) {
    for (
      const [name, word] of [["helper", helperWord], ["spawner", spawnerWord]]
    ) {
      if (word !== undefined) {
        throw new UsageError(
          `--fd3-${name} starts the checkpassword chain; --passwd-file runs no programs`,
        );
      }
    }
    if (chain.length > 0) {
      throw new UsageError(
        "--passwd-file replaces the checkpassword chain: give only the hostname",
      );
    }
    if ((env("PASSWORD_COMMAND") ?? "").trim() !== "") {
      warnings.push(
        "PASSWORD_COMMAND is set but not used: the passwd-file store writes new passwords itself; unset it to silence this",
      );
    }
    return {
      kind: "passwdFile",
      path: passwdFile,
      scheme: parseScheme(get("passwd-scheme") ?? DEFAULT_SCHEME),
      minPasswordLength: parseCount(
        "min-password-length",
        get("min-password-length") ?? String(MIN_PASSWORD_LENGTH),
        1,
        PAYLOAD_MAX,
      ),
    };
  }
  if (chain.length === 0) {
    throw new UsageError(
      "missing checkprogram (usage: qmail-poppass [options] hostname checkprogram [subprogram ...])",
    );
  }
  const command = env("PASSWORD_COMMAND");
  if (command === undefined || command.trim() === "") {
    throw new UsageError(
      'PASSWORD_COMMAND is not set: it names the setpassword program, e.g. "/usr/sbin/vsetpass /bin/false"',
    );
  }
  let setArgv: string[];
  try {
    setArgv = splitCommand(command, env);
  } catch (error) {
    throw new UsageError(`PASSWORD_COMMAND: ${(error as Error).message}`);
  }
  if (setArgv.length === 0) {
    throw new UsageError("PASSWORD_COMMAND has no words");
  }
  const checkArgv = [
    resolveProgram("checkprogram", chain[0]!, env, probe),
    ...chain.slice(1),
  ];
  setArgv[0] = resolveProgram("PASSWORD_COMMAND", setArgv[0]!, env, probe);
  if (/(^|\/)true$/.test(chain[chain.length - 1]!)) {
    warnings.push(
      "the checkpassword chain ends in true: right for DJB-style programs (checkpassword /bin/true), " +
        "but an indimail module such as vchkpass runs the next program on FAILURE, so vchkpass /bin/true accepts any password; end such chains in /bin/false",
    );
  }
  const starterPath = (name: string, word: string | undefined) => {
    if (word === undefined) return undefined;
    if (!word.startsWith("/")) {
      throw new UsageError(`--${name} ${quote(word)}: give an absolute path`);
    }
    return resolveProgram(`--${name}`, word, env, probe);
  };
  const helper = starterPath("fd3-helper", helperWord);
  const spawner = starterPath("fd3-spawner", spawnerWord);
  return {
    kind: "programs",
    checkArgv,
    setArgv,
    starter: spawner !== undefined
      ? { kind: "fd3spawn", path: spawner }
      : helper !== undefined
      ? { kind: "fd3exec", path: helper }
      : { kind: "shim" },
  };
}

/** --passwd-scheme and --min-password-length, for the built-in stores. */
function policy(get: (name: string) => string | undefined) {
  return {
    scheme: parseScheme(get("passwd-scheme") ?? DEFAULT_SCHEME),
    minPasswordLength: parseCount(
      "min-password-length",
      get("min-password-length") ?? String(MIN_PASSWORD_LENGTH),
      1,
      PAYLOAD_MAX,
    ),
  };
}

function parseScheme(text: string): PasswdScheme {
  const scheme = writeScheme(text);
  if (scheme) return scheme;
  throw new UsageError(
    `--passwd-scheme: expected ${WRITE_SCHEMES.join(", ")}, got ${quote(text)}`,
  );
}

/** Resolve a program word through PATH (when it has no `/`) and check it can run. */
export function resolveProgram(
  what: string,
  word: string,
  env: (name: string) => string | undefined,
  probe: FileProbe,
): string {
  if (word === "") throw new UsageError(`${what}: empty program name`);
  const candidates = word.includes("/")
    ? [word]
    : (env("PATH") ?? "/usr/local/bin:/usr/bin:/bin").split(":").filter((d) =>
      d !== ""
    ).map((d) => `${d.replace(/\/$/, "")}/${word}`);
  let notExecutable: string | undefined;
  for (const path of candidates) {
    const state = probe.executable(path);
    if (state === "ok") return path;
    if (state === "notExecutable") notExecutable ??= path;
  }
  if (notExecutable) {
    throw new UsageError(
      `${what} ${quote(notExecutable)} is not an executable file`,
    );
  }
  throw new UsageError(
    word.includes("/")
      ? `${what} ${quote(word)} does not exist`
      : `${what} ${quote(word)} was not found in PATH`,
  );
}

function parseMode(
  options: RawOptions,
  get: (name: string) => string | undefined,
): ModeConfig {
  const words = options.get("listen") ??
    (get("listen") ?? "").split(/\s+/).filter((w) => w !== "");
  const certFile = get("tls-cert");
  const keyFile = get("tls-key");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  if (words.length === 0) {
    if (certFile !== undefined) {
      throw new UsageError(
        "--tls-cert needs --listen (under tcpserver, let tcpserver or a TLS proxy do TLS)",
      );
    }
    return { kind: "stdio" };
  }
  const addresses = words.map(parseListen);
  const allowPlaintext = get("allow-plaintext") !== undefined &&
    get("allow-plaintext") !== "0";
  if (certFile === undefined && !allowPlaintext) {
    const open = addresses.find((a) => !isLoopback(a.hostname));
    if (open) {
      throw new UsageError(
        `refusing a plaintext listener on ${
          formatAddress(open)
        }: passwords would cross the network in clear; ` +
          "use --tls-cert/--tls-key, a loopback address, or --allow-plaintext",
      );
    }
  }
  return certFile !== undefined && keyFile !== undefined
    ? { kind: "listen", addresses, tls: { certFile, keyFile } }
    : { kind: "listen", addresses };
}

/** Parse `HOST:PORT` or `[IPv6]:PORT`. */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 0 && port <= 65_535)) {
    throw new UsageError(
      `cannot parse --listen ${quote(text)}: expected HOST:PORT or [IPv6]:PORT`,
    );
  }
  return { hostname: match[1] ?? match[2]!, port };
}

/** Addresses that never leave the machine. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" ||
    /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** `127.0.0.1:106` or `[::1]:106`. */
export function formatAddress(address: ListenAddress): string {
  return address.hostname.includes(":")
    ? `[${address.hostname}]:${address.port}`
    : `${address.hostname}:${address.port}`;
}

/** The real file probe: a regular file with an execute bit. */
export const denoProbe: FileProbe = { executable: executableState };
