/**
 * The LDAP store: the directory server checks the old password (a simple
 * bind as the user) and sets the new one itself (the Password Modify
 * extended operation of RFC 3062 on that same bound connection), so its
 * own password policy and hashing apply. Loaded by main.ts only when
 * `--ldap-url` is given.
 *
 * Every check and every change opens its own connection and closes it:
 * nothing is shared between sessions, so no session can ever act with
 * another user's bind.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import * as tls from "node:tls";
import * as net from "node:net";
import { Client } from "ldapts";
import type { Backend, Outcome } from "../backend.ts";
import type { LdapConfig } from "./config.ts";
import {
  escapeDnValue,
  escapeFilterValue,
  fillTemplate,
  isUtf8,
  nameParts,
} from "./escape.ts";
import { UsageError } from "../../config/options.ts";
import { sanitize } from "../../common/log.ts";
import {
  LDAP_CONNECT_TIMEOUT_MS,
  LDAP_DEADLINE_MS,
  LDAP_MESSAGE_MAX,
  LDAP_OPERATION_TIMEOUT_MS,
} from "../../common/limits.ts";
import { wipe } from "../../common/wipe.ts";

/** The Password Modify extended operation (RFC 3062). */
export const PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1";

/** Settings of {@link createLdapBackend}. */
export interface LdapBackendOptions {
  readonly config: LdapConfig;
  /** Deadlines; the defaults come from `lib/common/limits.ts`. */
  readonly connectTimeoutMs?: number;
  readonly operationTimeoutMs?: number;
  readonly deadlineMs?: number;
}

/** LDAP result codes (RFC 4511 §4.1.9) this store tells apart. */
const CODE = {
  noSuchObject: 32,
  invalidDnSyntax: 34,
  inappropriateAuthentication: 48,
  invalidCredentials: 49,
  busy: 51,
  unavailable: 52,
} as const;

/** A bind as the user that these codes refuse: wrong password or no such user. */
const BIND_REJECTED: ReadonlySet<number> = new Set([
  CODE.noSuchObject,
  CODE.invalidDnSyntax,
  CODE.inappropriateAuthentication,
  CODE.invalidCredentials,
]);

/** An outcome decided before the end (unknown user, wrong password). */
class Decided extends Error {
  constructor(readonly outcome: Outcome) {
    super(outcome.kind);
  }
}

/**
 * Make the LDAP {@link Backend}. Reads the CA file and the bind password
 * file now, so that a wrong path fails at startup (`UsageError`).
 */
export async function createLdapBackend(
  options: LdapBackendOptions,
): Promise<Backend> {
  const { config } = options;
  // ldapts's debug log (NODE_DEBUG=ldapts) prints every request it sends,
  // the Password Modify value with both passwords included.
  if (/(^|[\s,])(ldapts|\*)($|[\s,])/i.test(Deno.env.get("NODE_DEBUG") ?? "")) {
    throw new UsageError(
      "NODE_DEBUG names ldapts: its debug log would print passwords; unset it",
    );
  }
  const connectTimeout = options.connectTimeoutMs ?? LDAP_CONNECT_TIMEOUT_MS;
  const timeout = options.operationTimeoutMs ?? LDAP_OPERATION_TIMEOUT_MS;
  const deadlineMs = options.deadlineMs ?? LDAP_DEADLINE_MS;
  const ca = config.caFile === undefined
    ? undefined
    : await readConfigFile("--ldap-ca", config.caFile);
  const userDn = config.userDn;
  let bindPassword: string | undefined;
  if (userDn.kind === "search" && userDn.bindPassword !== undefined) {
    const source = userDn.bindPassword;
    bindPassword = source.kind === "env"
      ? source.value
      : (await readConfigFile("--ldap-bind-password-file", source.path))
        .replace(/\r?\n$/, "");
    if (bindPassword === "") {
      throw new UsageError("the --ldap-bind-dn password is empty");
    }
  }

  /** TLS settings for one server: verify the certificate against `host`. */
  function tlsFor(url: URL): tls.ConnectionOptions {
    const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
    return {
      host,
      ...(net.isIP(host) ? {} : { servername: host }),
      ...(ca === undefined ? {} : { ca: [ca] }),
      rejectUnauthorized: true,
    };
  }

  /** Open a connection to the first server that answers. */
  async function connect(track: (conn: Connection) => void): Promise<Client> {
    const failures: string[] = [];
    for (const text of config.urls) {
      const url = new URL(text);
      const tlsOptions = tlsFor(url);
      const conn = connection({
        url: text,
        connectTimeout,
        timeout,
        ...(url.protocol === "ldaps:" ? { tlsOptions } : {}),
      });
      track(conn);
      try {
        if (config.startTls) await conn.startTls(tlsOptions, timeout);
        else await reach(conn.client);
        return conn.client;
      } catch (error) {
        await conn.close();
        failures.push(`${text}: ${describe(error)}`);
      }
    }
    throw new Decided({
      kind: "temporary",
      reason: `no LDAP server reached (${failures.join("; ")})`,
    });
  }

  /** The user's DN, or a `Decided` rejection (unknown user). */
  async function findDn(client: Client, user: Uint8Array): Promise<string> {
    const parts = nameParts(user);
    if (userDn.kind === "template") {
      return fillTemplate(userDn.template, parts, escapeDnValue) ??
        unknown("an empty name part");
    }
    if (!isUtf8(user)) unknown("the name is not UTF-8");
    const filter = fillTemplate(userDn.filter, parts, escapeFilterValue) ??
      unknown("an empty name part");
    if (userDn.bindDn !== undefined) {
      try {
        await client.bind(userDn.bindDn, bindPassword);
      } catch (error) {
        throw new Decided({
          kind: "temporary",
          reason: `search bind as ${
            sanitize(userDn.bindDn, { allowSpace: true })
          } failed: ${describe(error)}`,
        });
      }
    }
    let entries: { dn: string }[];
    try {
      ({ searchEntries: entries } = await client.search(userDn.base, {
        scope: "sub",
        filter,
        attributes: ["1.1"],
        sizeLimit: 2,
      }));
    } catch (error) {
      throw new Decided({
        kind: "temporary",
        reason: `search failed: ${describe(error)}`,
      });
    }
    if (entries.length !== 1) {
      return unknown(
        entries.length === 0 ? "no entry matches" : "several entries match",
      );
    }
    return entries[0]!.dn;
  }

  /** Bind as the user; a `Decided` rejection for a wrong password. */
  async function bindUser(
    client: Client,
    dn: string,
    password: string,
  ): Promise<void> {
    try {
      await client.bind(dn, password);
    } catch (error) {
      const code = resultCode(error);
      if (code !== undefined && BIND_REJECTED.has(code)) {
        throw new Decided({
          kind: "rejected",
          reason: "wrong password or unknown user",
        });
      }
      throw error;
    }
  }

  /**
   * Connect, find the user, bind as the user with `old`, then `then`;
   * every path ends with the connection closed and a bounded time spent.
   */
  async function asUser(
    user: Uint8Array,
    old: Uint8Array,
    then: (client: Client) => Promise<Outcome>,
  ): Promise<Outcome> {
    // An empty simple bind is an anonymous one, which "succeeds".
    if (old.length === 0) return rejected("empty password, not sent");
    const password = utf8(old);
    if (password === undefined) {
      return rejected("the password is not UTF-8, which LDAP requires");
    }
    const conns: Connection[] = [];
    let over = false;
    const track = (conn: Connection) => {
      if (over) throw new Decided({ kind: "temporary", reason: "deadline" });
      conns.push(conn);
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<Outcome>((resolve) => {
      timer = setTimeout(() => {
        resolve({
          kind: "temporary",
          reason: `LDAP deadline of ${deadlineMs / 1000} s passed`,
        });
      }, deadlineMs);
    });
    const work = (async (): Promise<Outcome> => {
      try {
        const client = await connect(track);
        await bindUser(client, await findDn(client, user), password);
        return await then(client);
      } catch (error) {
        if (error instanceof Decided) return error.outcome;
        return {
          kind: "temporary",
          reason: `LDAP: ${describe(error, [old])}`,
        };
      }
    })();
    try {
      return await Promise.race([work, expired]);
    } finally {
      clearTimeout(timer);
      over = true;
      await Promise.all(conns.map((conn) => conn.close()));
      // After a deadline, `work` settles once its socket is gone.
      await work;
    }
  }

  return {
    check(user, oldPassword) {
      return asUser(user, oldPassword, () => Promise.resolve({ kind: "ok" }));
    },
    change(user, oldPassword, newPassword) {
      return asUser(user, oldPassword, async (client) => {
        if (newPassword.length === 0) return rejected("empty new password");
        if (utf8(newPassword) === undefined) {
          return rejected("the new password is not UTF-8, which LDAP requires");
        }
        const value = passwordModifyValue(oldPassword, newPassword);
        try {
          await client.exop(
            PASSWORD_MODIFY_OID,
            Buffer.from(value.buffer, value.byteOffset, value.length),
          );
          return { kind: "ok" };
        } catch (error) {
          const code = resultCode(error);
          const text = describe(error, [oldPassword, newPassword]);
          if (
            code === undefined || code === CODE.busy ||
            code === CODE.unavailable
          ) {
            return { kind: "temporary", reason: `Password Modify: ${text}` };
          }
          return {
            kind: "rejected",
            reason: `the server refused the new password: ${text}`,
          };
        } finally {
          wipe(value);
        }
      });
    },
  };
}

/**
 * The request value of Password Modify (RFC 3062): a SEQUENCE of
 * `oldPasswd [1]` and `newPasswd [2]`, no `userIdentity`, so the server
 * changes the password of the identity the connection is bound as.
 */
export function passwordModifyValue(
  oldPassword: Uint8Array,
  newPassword: Uint8Array,
): Uint8Array {
  const fields = [
    [0x81, oldPassword],
    [0x82, newPassword],
  ] as const;
  const bodyLength = fields.reduce(
    (sum, [, value]) => sum + 1 + berLength(value.length).length + value.length,
    0,
  );
  const head = [0x30, ...berLength(bodyLength)];
  const out = new Uint8Array(head.length + bodyLength);
  out.set(head, 0);
  let at = head.length;
  for (const [tag, value] of fields) {
    const length = berLength(value.length);
    out[at++] = tag;
    out.set(length, at);
    at += length.length;
    out.set(value, at);
    at += value.length;
  }
  return out;
}

/** A BER definite length: short form below 128, else long form. */
function berLength(length: number): number[] {
  if (length < 0x80) return [length];
  const octets: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) {
    octets.unshift(rest & 0xff);
  }
  return [0x80 | octets.length, ...octets];
}

function unknown(why: string): never {
  throw new Decided({ kind: "rejected", reason: `unknown user (${why})` });
}

function rejected(reason: string): Outcome {
  return { kind: "rejected", reason };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function utf8(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** The LDAP result code of a server's answer; undefined for socket errors. */
function resultCode(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "number" ? code : undefined;
}

/**
 * One log-safe line about an error: the result code and the server's
 * message, or the socket error; any given password blanked out first.
 */
function describe(error: unknown, secrets: Uint8Array[] = []): string {
  let text = error instanceof Error ? error.message : String(error);
  const code = resultCode(error);
  if (code !== undefined) {
    const name = error instanceof Error
      ? error.constructor.name.replace(/Error$/, "")
      : "error";
    const message = text.replace(/\s*Code: 0x[0-9a-f]+$/, "");
    text = `${name} (${code})${message === "" ? "" : `: ${message}`}`;
  }
  for (const secret of secrets) {
    const plain = utf8(secret);
    if (plain !== undefined && plain !== "") {
      text = text.split(plain).join("(password)");
    }
  }
  return sanitize(text, { allowSpace: true, max: LDAP_MESSAGE_MAX });
}

async function reach(client: Client): Promise<void> {
  // ldapts connects on the first operation; a search of the root DSE for
  // no attributes is the cheapest one. Any LDAP answer, even a refusal,
  // shows the server is there.
  try {
    await client.search("", { scope: "base", attributes: ["1.1"] });
  } catch (error) {
    if (resultCode(error) === undefined) throw error;
  }
}

/** An ldapts client and every socket it made, so all can be ended. */
interface Connection {
  readonly client: Client;
  /**
   * StartTLS within `ms`: ldapts bounds the request but not the TLS
   * handshake after it, and a socket closed under a handshake does not
   * always settle its promise; this one also ends when `close()` is called.
   */
  startTls(options: tls.ConnectionOptions, ms: number): Promise<void>;
  /** Unbind, then destroy any socket left (one in a TLS handshake too). */
  close(): Promise<void>;
}

function connection(
  options: ConstructorParameters<typeof Client>[0],
): Connection {
  const sockets: net.Socket[] = [];
  const handshaking = new Set<net.Socket>();
  const remember = (socket: net.Socket, secure: boolean): net.Socket => {
    sockets.push(socket);
    if (secure) {
      handshaking.add(socket);
      socket.once("secureConnect", () => handshaking.delete(socket));
    }
    return socket;
  };
  type Connect = (...args: unknown[]) => net.Socket;
  const client = new Client({
    ...options,
    createConnection: ((...args: unknown[]) =>
      remember((net.connect as Connect)(...args), false)) as typeof net.connect,
    createSecureConnection: ((...args: unknown[]) =>
      remember((tls.connect as Connect)(...args), true)) as typeof tls.connect,
  });
  let abort = (_: Error) => {};
  const closed = new Promise<never>((_, reject) => (abort = reject));
  closed.catch(() => {});
  return {
    client,
    async startTls(tlsOptions, ms) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const limit = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`StartTLS: timed out after ${ms} ms`)),
          ms,
        );
      });
      const started = client.startTLS(tlsOptions);
      started.catch(() => {});
      try {
        await Promise.race([started, limit, closed]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      abort(new Error("LDAP connection closed"));
      // A TLS socket still in its handshake: an error settles ldapts's
      // pending startTLS() (destroying the plain socket under it does not).
      for (const socket of handshaking) {
        if (socket.destroyed) continue;
        socket.on("error", () => {});
        socket.destroy(new Error("LDAP connection closed"));
      }
      try {
        await client.unbind();
      } catch {
        // The connection is gone either way.
      }
      for (const socket of sockets) {
        if (!socket.destroyed) socket.destroy();
      }
    },
  };
}

async function readConfigFile(option: string, path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    throw new UsageError(
      `cannot read ${option} ${JSON.stringify(path)}: ${
        (error as Error).message
      }`,
    );
  }
}
