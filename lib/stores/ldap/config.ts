/**
 * The LDAP store's options (`--ldap-*`, `POPPASS_LDAP_*`) into an
 * {@link LdapConfig}, checked at startup; every mistake is a `UsageError`
 * (exit 100). Files (CA, bind password) are read when the store is made.
 *
 * @module
 */

import { quote, UsageError } from "../../config/options.ts";
import { templateProblem } from "./escape.ts";

/** How the user's DN is found. */
export type LdapUserDn =
  | { readonly kind: "template"; readonly template: string }
  | {
    readonly kind: "search";
    readonly base: string;
    /** With `%u`/`%n`/`%d`, filled with RFC 4515 escaping. */
    readonly filter: string;
    /** Absent: the search runs anonymously. */
    readonly bindDn?: string;
    /** Where the bind DN's password comes from (never argv). */
    readonly bindPassword?:
      | { readonly kind: "env"; readonly value: string }
      | { readonly kind: "file"; readonly path: string };
  };

/** The LDAP store, validated. */
export interface LdapConfig {
  readonly kind: "ldap";
  /** `ldap://` or `ldaps://` URLs, tried in this order for each connection. */
  readonly urls: string[];
  readonly userDn: LdapUserDn;
  /** Upgrade `ldap://` connections with StartTLS before any bind. */
  readonly startTls: boolean;
  /** PEM file of the CAs to trust instead of the system's. */
  readonly caFile?: string;
}

/** The `--ldap-*` options other than `--ldap-url` (they need it). */
export const LDAP_OPTIONS = [
  "ldap-user-dn",
  "ldap-base",
  "ldap-filter",
  "ldap-bind-dn",
  "ldap-bind-password-file",
  "ldap-starttls",
  "ldap-ca",
] as const;

/** The variable holding the search bind DN's password. */
export const BIND_PASSWORD_ENV = "POPPASS_LDAP_BIND_PASSWORD";

/** The default search filter. */
export const DEFAULT_FILTER = "(uid=%n)";

/**
 * Parse the LDAP options; `urlText` is the value of `--ldap-url`. Pushes a
 * warning for passwords that would cross a network in clear.
 */
export function parseLdapConfig(
  urlText: string,
  get: (name: string) => string | undefined,
  env: (name: string) => string | undefined,
  warnings: string[],
): LdapConfig {
  const words = urlText.split(/\s+/).filter((w) => w !== "");
  if (words.length === 0) throw new UsageError("--ldap-url: no URL given");
  const urls = words.map(parseUrl);
  const startTls = get("ldap-starttls") !== undefined &&
    get("ldap-starttls") !== "0";
  if (startTls && urls.some((u) => u.startsWith("ldaps:"))) {
    throw new UsageError(
      "--ldap-starttls upgrades ldap:// connections; ldaps:// is TLS already",
    );
  }
  const caFile = get("ldap-ca");
  const anyLdaps = urls.some((u) => u.startsWith("ldaps:"));
  if (caFile !== undefined && !startTls && !anyLdaps) {
    throw new UsageError("--ldap-ca needs ldaps:// or --ldap-starttls");
  }
  // Without StartTLS, a plain ldap:// URL off loopback sends the password
  // (the bind) in clear.
  const open = startTls ? undefined : urls.find((u) =>
    u.startsWith("ldap:") &&
    !/^ldap:\/\/(127\.[\d.]+|\[::1\]|localhost)(:|$)/.test(u)
  );
  if (open) {
    warnings.push(
      `${open} without --ldap-starttls: passwords cross the network in clear`,
    );
  }
  return {
    kind: "ldap",
    urls,
    userDn: parseUserDn(get, env),
    startTls,
    ...(caFile === undefined ? {} : { caFile }),
  };
}

function parseUrl(word: string): string {
  let url: URL;
  try {
    url = new URL(word);
  } catch {
    throw new UsageError(`--ldap-url ${quote(word)}: not a URL`);
  }
  if (url.protocol !== "ldap:" && url.protocol !== "ldaps:") {
    throw new UsageError(
      `--ldap-url ${quote(word)}: expected ldap:// or ldaps://`,
    );
  }
  if (
    url.hostname === "" || url.username !== "" || url.password !== "" ||
    !["", "/"].includes(url.pathname) || url.search !== "" || url.hash !== ""
  ) {
    throw new UsageError(
      `--ldap-url ${
        quote(word)
      }: expected ldap[s]://HOST[:PORT] and nothing more`,
    );
  }
  return `${url.protocol}//${url.host}`;
}

function parseUserDn(
  get: (name: string) => string | undefined,
  env: (name: string) => string | undefined,
): LdapUserDn {
  const template = get("ldap-user-dn");
  const base = get("ldap-base");
  const searchOptions = [
    "ldap-filter",
    "ldap-bind-dn",
    "ldap-bind-password-file",
  ] as const;
  const envPassword = env(BIND_PASSWORD_ENV);
  const passwordFile = get("ldap-bind-password-file");
  if (template !== undefined) {
    if (base !== undefined) {
      throw new UsageError(
        "--ldap-user-dn and --ldap-base are two ways to find the user: choose one",
      );
    }
    const search = searchOptions.find((name) => get(name) !== undefined);
    if (search) {
      throw new UsageError(
        `--${search} goes with --ldap-base, not --ldap-user-dn`,
      );
    }
    checkTemplate("--ldap-user-dn", template);
    return { kind: "template", template };
  }
  if (base === undefined) {
    throw new UsageError(
      "--ldap-url needs --ldap-user-dn TEMPLATE or --ldap-base DN",
    );
  }
  const filter = get("ldap-filter") ?? DEFAULT_FILTER;
  checkTemplate("--ldap-filter", filter);
  if (!/^\(.*\)$/.test(filter)) {
    throw new UsageError(
      `--ldap-filter ${quote(filter)}: a filter is enclosed in parentheses`,
    );
  }
  const bindDn = get("ldap-bind-dn");
  const hasEnvPassword = envPassword !== undefined && envPassword !== "";
  if (hasEnvPassword && passwordFile !== undefined) {
    throw new UsageError(
      `${BIND_PASSWORD_ENV} and --ldap-bind-password-file: give the password once`,
    );
  }
  if (bindDn === undefined) {
    if (hasEnvPassword || passwordFile !== undefined) {
      throw new UsageError("a bind password needs --ldap-bind-dn");
    }
    return { kind: "search", base, filter };
  }
  if (!hasEnvPassword && passwordFile === undefined) {
    throw new UsageError(
      `--ldap-bind-dn needs its password in ${BIND_PASSWORD_ENV} or --ldap-bind-password-file (never on the command line)`,
    );
  }
  return {
    kind: "search",
    base,
    filter,
    bindDn,
    bindPassword: hasEnvPassword
      ? { kind: "env", value: envPassword }
      : { kind: "file", path: passwordFile! },
  };
}

function checkTemplate(option: string, template: string): void {
  const problem = templateProblem(template);
  if (problem) throw new UsageError(`${option} ${quote(template)}: ${problem}`);
}
