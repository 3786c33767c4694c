/**
 * Every number that bounds qmail-poppass, in one place, each with its
 * reason. Options and `POPPASS_*` variables override the configurable ones
 * (see `lib/config/config.ts`); the rest are fixed by the protocol or the programs.
 *
 * @module
 */

/** The configurable limits, all times in milliseconds. */
export interface Limits {
  /** Wait after a failed `pass` or `newpass`, measured from the line's arrival. */
  readonly failDelayMs: number;
  /** Longest accepted line in octets, not counting the LF or CRLF that ends it. */
  readonly maxLine: number;
  /** Deadline for each line, from when the server starts waiting for it. */
  readonly idleTimeoutMs: number;
  /** Deadline for the whole session, from connect. */
  readonly sessionTimeoutMs: number;
  /** Deadline for one child program, payload write included; then SIGKILL to its group. */
  readonly childTimeoutMs: number;
  /** Listen mode: sessions served at once. */
  readonly maxSessions: number;
  /** Listen mode: sessions served at once per client IP; 0 means no limit. */
  readonly maxPerIp: number;
}

/** The defaults of `doc/protocol.md` §5. */
export const DEFAULT_LIMITS: Limits = {
  // The C original sleeps 5 s after a failed check; a guess costs that much.
  failDelayMs: 5_000,
  // fd-3 payloads are capped at 512 octets, so no valid line needs more.
  maxLine: 512,
  // Webmail clients give up after 30-60 s; an idle slot is released by then.
  idleTimeoutMs: 60_000,
  // Three full dialogues with slow back ends fit; slow-drip clients do not.
  sessionTimeoutMs: 180_000,
  // Clients time out at 60 s; a hung back end must be answered before that.
  childTimeoutMs: 30_000,
  // tcpserver's default -c 40.
  maxSessions: 40,
  // Webmail connects from one IP; 10 keeps a single host from taking all 40.
  maxPerIp: 10,
};

/** checkpassword programs refuse more than 512 octets on fd 3. */
export const PAYLOAD_MAX = 512;

/** Longest user name accepted (octets). */
export const USER_MAX = 255;

/** Client-supplied text in the log is cut to this many characters. */
export const LOG_TEXT_MAX = 100;

/**
 * The values `--max-line` accepts. Below 16 octets a keyword with a short
 * argument no longer fits; above 64 KiB a "line" is a memory bound, not a
 * line (no valid dialogue line exceeds `PAYLOAD_MAX` anyway).
 */
export const MAX_LINE_RANGE = { min: 16, max: 65_536 } as const;

/**
 * Highest `--max-sessions` and `--max-per-ip`: far more connections than
 * one process gets descriptors for, so only typos are refused.
 */
export const MAX_SESSIONS_CEILING = 100_000;

/**
 * passwd-file store: the shortest new password unless
 * `--min-password-length` says otherwise (NIST SP 800-63B's minimum for a
 * password the user chooses). It can be set from 1 to `PAYLOAD_MAX`.
 */
export const MIN_PASSWORD_LENGTH = 8;

/** Octets of a child's stdout and of its stderr copied into the log, each. */
export const CHILD_LOG_MAX = 4_096;

/** Lines of a child's stdout and of its stderr copied into the log, each. */
export const CHILD_LOG_LINES = 20;

/** A logged child line is cut at this many characters. */
export const CHILD_LINE_MAX = 200;

/**
 * Octets asked for in each read from a client (stdio and listen mode): a
 * line is at most `maxLine` (512 by default) and the LineReader joins a
 * line split across reads, while a pending read holds its buffer, so
 * smaller means less memory per idle listen-mode connection.
 */
export const CLIENT_READ_SIZE = 512;

/**
 * Read sizes for child output. Most children print nothing or a line, so
 * a stream starts with a small buffer; once the log's share is full, the
 * rest is only drained, with one big reused buffer so a flood takes few
 * reads. (Two 64 KiB buffers for every child made V8 collect garbage
 * about every 40 sessions in listen mode: external memory pressure.)
 */
export const CHILD_READ_SMALL = 4 * 1024;
/** See `CHILD_READ_SMALL`. */
export const CHILD_READ_SIZE = 64 * 1024;

/**
 * After a session's last reply, input the client has already sent is read
 * and dropped before the socket is closed (`lib/serve/linger.ts`), so the close
 * is a FIN and not an RST that could destroy the reply: until EOF, or this
 * long without input (a client that sent nothing more)…
 */
export const LINGER_IDLE_MS = 50;
/** …or this long in all (a client that keeps sending)… */
export const LINGER_MAX_MS = 1_000;
/** …or this many octets. */
export const LINGER_MAX_OCTETS = 64 * 1024;

/** After a child has exited, how long its output pipes may stay open. */
export const CHILD_DRAIN_MS = 1_000;

/**
 * Every program run ends on the server's side at most this long after its
 * own deadline (`--child-timeout`), whatever its starter does: a stopped or
 * wedged fd3spawn cannot hold a session longer. The starter's deadline is
 * followed by up to CHILD_DRAIN_MS for the output pipes; one more second
 * absorbs a loaded machine.
 */
export const CHILD_DEADLINE_MARGIN_MS = CHILD_DRAIN_MS + 1_000;

/**
 * On SIGTERM, how long sessions may go on: a child program started just
 * before the signal, then its failure delay, plus time to send the reply.
 */
export function shutdownGraceMs(limits: Limits): number {
  return limits.childTimeoutMs + limits.failDelayMs + 5_000;
}

/** Listen mode with TLS: deadline for the TLS handshake. */
export const TLS_HANDSHAKE_MS = 10_000;

/** Listen mode with TLS: how long a closing connection may take to flush its last reply. */
export const TLS_CLOSE_MS = 2_000;

/** Upper bound for any configurable time, so typos cannot disable a deadline. */
export const MAX_SECONDS = 86_400;

/**
 * PROXY protocol (`--proxy-protocol`): deadline for the header from a
 * trusted peer, from accept. HAProxy sends it with the connection's first
 * packet, so this only ever passes for a broken or hostile sender; short,
 * so such connections do not hold a slot for long.
 */
export const PROXY_HEADER_MS = 5_000;

/**
 * PROXY protocol version 1: the longest header line, CRLF included; the
 * specification's own bound (`PROXY TCP6` with two full IPv6 addresses
 * and two ports).
 */
export const PROXY_V1_MAX = 107;

/**
 * PROXY protocol version 2: the most octets after the 16-octet fixed part.
 * Addresses need at most 216 (AF_UNIX); the TLVs HAProxy may add (ALPN,
 * authority, a unique ID of at most 128 octets, SSL facts, CRC32C) fit in
 * the rest. A longer header is refused, so no sender can make a
 * connection buffer the 64 KiB the 16-bit length field allows.
 */
export const PROXY_V2_MAX_DATA = 1_024;

/**
 * LDAP store: deadline for a TCP (and ldaps:// TLS) connection to one
 * server URL. A directory server on the LAN answers within milliseconds;
 * 5 s still lets the next URL be tried well within a client's 60 s.
 */
export const LDAP_CONNECT_TIMEOUT_MS = 5_000;

/**
 * LDAP store: deadline for each operation (bind, search, StartTLS,
 * Password Modify). A server hashing with a slow scheme under load takes
 * a second or two; 10 s means it is stuck.
 */
export const LDAP_OPERATION_TIMEOUT_MS = 10_000;

/**
 * LDAP store: deadline for a whole check or change (every URL, StartTLS
 * handshake, search and binds), after which its connection is destroyed:
 * below the 30 s a child program gets, so the client is answered before
 * its own 60 s timeout.
 */
export const LDAP_DEADLINE_MS = 25_000;

/** LDAP store: a server's diagnostic message is cut to this many characters in the log. */
export const LDAP_MESSAGE_MAX = 200;
