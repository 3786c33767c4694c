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
  /**
   * Listen mode: sessions served at once per client address group, and
   * TLS handshakes in progress per group; 0 means no limit.
   */
  readonly maxPerIp: number;
  /** IPv4 clients count against `maxPerIp` per network of this prefix length. */
  readonly perIpPrefix4: number;
  /** IPv6 clients count against `maxPerIp` per network of this prefix length. */
  readonly perIpPrefix6: number;
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
  // One IPv4 address is one host (NAT aside).
  perIpPrefix4: 32,
  // One IPv6 host is usually given a whole /64 (SLAAC, RFC 6177): per /128
  // it could take every slot with addresses it owns (Dovecot and OpenSSH
  // group the same way).
  perIpPrefix6: 64,
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

/**
 * Refused connections: the first refusal for a limit is logged, later ones
 * within this interval are counted into one summary line, so a flood of
 * connections (5,000 in 0.5 s were measured) costs two lines per interval
 * instead of rotating a multilog history away in seconds.
 */
export const REFUSAL_LOG_INTERVAL_MS = 10_000;

/**
 * Listen mode: V8 heap (old space) per session, for the startup check of
 * `--max-sessions` against the heap limit and for the packaged launcher,
 * which derives `--max-old-space-size` from `--max-sessions`. Measured
 * with `bench/heap.ts` (live heap after a full GC, 1,000 sessions): plain
 * 8.8 KiB waiting for `user`, 6.0 KiB with a check running; TLS 12.9 KiB
 * waiting. Twice the largest, so that garbage has room between
 * collections (64 MiB died at 7,000-8,000 plain sessions: 8-9 KiB each
 * with no room).
 */
export const HEAP_PER_SESSION_KIB = 24;

/**
 * Listen mode: old space needed with no session: about 6 MiB live after
 * a warm-up (measured), with room. (The leak soak test runs 200 sessions
 * in a 32 MiB old space on purpose: that must stay possible.)
 */
export const HEAP_BASE_MIB = 16;

/**
 * What V8 adds to `--max-old-space-size` in the heap limit it reports
 * (`heap_size_limit`): the young generation, 96 MiB with Deno 2.9.6 on
 * x86-64 (measured: 64 → 160 MiB, 2400 → 2496, default 4096 → 4192).
 */
export const V8_YOUNG_MIB = 96;

/** Old space, in MiB, that `maxSessions` listen-mode sessions need. */
export function heapNeedMib(maxSessions: number): number {
  return HEAP_BASE_MIB + Math.ceil(maxSessions * HEAP_PER_SESSION_KIB / 1024);
}

/**
 * SQL store: deadline for opening one database connection. A database on
 * the same LAN answers in milliseconds; one that has not answered in 5 s
 * is down or unreachable, and the session must still be answered well
 * before a webmail client gives up (30-60 s).
 */
export const SQL_CONNECT_TIMEOUT_MS = 5_000;

/**
 * SQL store: deadline for one database step (waiting for a pooled
 * connection, connecting, and the statement). The lookup and the update
 * touch one indexed row and take milliseconds; 10 s covers a loaded
 * server or a short lock wait, and still answers before clients give up.
 * On expiry the pool is closed and the next session connects afresh.
 */
export const SQL_QUERY_TIMEOUT_MS = 10_000;

/**
 * SQL store, listen mode: connections in the pool. Each session holds one
 * only for a lookup or an update (milliseconds) while hashing (hundreds of
 * milliseconds, at most two at once) dominates, so four serve the default
 * 40 sessions; many server instances then cost a database little.
 */
export const SQL_POOL_SIZE = 4;

/**
 * SQL store, SQLite: how long a statement waits for another writer's lock.
 * node:sqlite waits synchronously, which stalls every session of a listen
 * server; a change commits in milliseconds, so 2 s only runs out when
 * something holds the file locked, and then a temporary failure is right.
 */
export const SQLITE_BUSY_MS = 2_000;

/**
 * SQL store: cost classes (scheme and parameters) of stored hashes it
 * remembers to choose an unknown user's dummy check from. A database holds
 * a handful (a legacy scheme, the current one, perhaps two cost settings);
 * the bound only keeps odd data from growing the map.
 */
export const SQL_COST_CLASSES_MAX = 64;

/**
 * Hash workers (lib/hash/pool.ts): hashes computed at once. One per core of
 * the 2-core machines we measure on; each Argon2id check holds 64 MiB while
 * it runs, so this also bounds hashing memory (2 × 64 MiB).
 */
export const HASH_WORKERS = 2;

/**
 * Hash jobs waiting behind the running ones; one more is refused at once as
 * a temporary failure. 32 × ~80 ms (native Argon2id) is under 2 s of
 * waiting, well within a client's patience, and a queued job holds only
 * its copy of the password.
 */
export const HASH_QUEUE = 32;

/**
 * passwd-file store: octets read at a time when a check scans the file for
 * one user's line; with `PASSWD_LINE_MAX` this is all a check holds of the
 * file, whatever its size (a 35 MB file of 200,000 users used to be read
 * and parsed whole).
 */
export const PASSWD_READ_SIZE = 64 * 1024;

/**
 * passwd-file store: longest line a scan accepts; a longer one is a
 * temporary failure naming the line. Dovecot's longest hashes are under
 * 200 octets, and home, shell and extra fields fit many times over.
 */
export const PASSWD_LINE_MAX = 64 * 1024;

/**
 * passwd-file store: password fields sampled (spread over the file) to find
 * its most common cost class, in which an unknown user's dummy check runs.
 * Classifying all 200,000 fields of a large file cost ~1 s of CPU; a sample
 * of this size finds any class held by more than a few percent of users.
 */
export const PROFILE_SAMPLES = 2_000;

/**
 * At exit, how long a store may take to close its connections (say goodbye
 * to the database, so its log does not count an aborted connection per
 * session); a hung database must not keep the process alive.
 */
export const BACKEND_CLOSE_MS = 1_000;
