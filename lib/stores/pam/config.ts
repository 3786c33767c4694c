/**
 * `--pam SERVICE` and `--pam-min-uid N`: the PAM store's part of the
 * configuration, kept here so that `lib/config/config.ts` only calls it.
 *
 * @module
 */

import { parseCount, quote, UsageError } from "../../config/options.ts";

/** The PAM store's settings. */
export interface PamConfig {
  readonly kind: "pam";
  /** The PAM service: `/etc/pam.d/SERVICE`. */
  readonly service: string;
  /** Accounts with a smaller uid, and uid 0, are refused like unknown users. */
  readonly minUid: number;
}

/** `--pam-min-uid` when not given: Debian's first ordinary user. */
export const DEFAULT_MIN_UID = 1000;

/** The options that belong to another store or to the programs. */
const OTHER_STORES = ["passwd-file", "fd3-helper", "fd3-spawner"] as const;

/**
 * Read the PAM options; throws `UsageError` when another store's option or
 * a checkpassword chain is given too, or a value is malformed.
 */
export function parsePamConfig(
  service: string,
  get: (name: string) => string | undefined,
  chain: readonly string[],
): PamConfig {
  for (const name of OTHER_STORES) {
    if (get(name) !== undefined) {
      throw new UsageError(`--pam and --${name} exclude each other`);
    }
  }
  if (chain.length > 0) {
    throw new UsageError(
      "--pam replaces the checkpassword chain: give only the hostname",
    );
  }
  // A PAM service name is a file name in /etc/pam.d.
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(service)) {
    throw new UsageError(
      `--pam ${quote(service)}: expected a service name like qmail-poppass`,
    );
  }
  const minUid = get("pam-min-uid");
  return {
    kind: "pam",
    service,
    minUid: minUid === undefined
      ? DEFAULT_MIN_UID
      : parseCount("pam-min-uid", minUid, 1, 4_294_967_295),
  };
}

/** Where Linux-PAM looks for a service's file, in order. */
export const PAM_DIRECTORIES = ["/etc/pam.d", "/usr/lib/pam.d"] as const;

/**
 * Startup checks that need the system: Deno's FFI permission and the
 * service's file (without it PAM silently uses the `other` service).
 * Returns warnings to log: a server that is not root can, with pam_unix,
 * check only its own user's password and change none.
 */
export function checkPamSystem(service: string): string[] {
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new UsageError(
      "--pam loads libpam through Deno's FFI: run Deno with --allow-ffi",
    );
  }
  const found = PAM_DIRECTORIES.some((folder) => {
    try {
      return Deno.statSync(`${folder}/${service}`).isFile;
    } catch {
      return false;
    }
  });
  if (!found) {
    throw new UsageError(
      `--pam ${quote(service)}: no ${PAM_DIRECTORIES[0]}/${service} ` +
        '(PAM would fall back to the "other" service)',
    );
  }
  return realUid() === 0 ? [] : [
    "--pam: not running as root: pam_unix cannot read or write /etc/shadow " +
    "for other users, so checks and changes will fail",
  ];
}

/** The real uid from /proc (Deno.uid() would need --allow-sys). */
function realUid(): number | undefined {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    return uid === undefined ? undefined : Number(uid);
  } catch {
    return undefined;
  }
}
