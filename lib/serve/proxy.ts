/**
 * The PROXY protocol header (HAProxy's specification, versions 1 and 2)
 * that a load balancer sends before the client's own octets, naming the
 * real client. Pure: the parser sees octets, the reader gets its chunk
 * source and clock from the caller; no `Deno.*`.
 *
 * @module
 */

import type { Clock } from "../common/clock.ts";
import { PROXY_V1_MAX, PROXY_V2_MAX_DATA } from "../common/limits.ts";
import type { ChunkSource } from "../protocol/lines.ts";
import { formatIp, parseIpv4, parseIpv6 } from "./cidr.ts";

/** One end of the proxied connection. */
export interface ProxyEndpoint {
  readonly ip: string;
  readonly port: number;
}

/**
 * A valid header. `proxied`: the client is `source`, and `destination` is
 * the address it connected to. `local`: the balancer speaks for itself
 * (v2 `LOCAL`, such as a health check; v1 `UNKNOWN`; v2 with an address
 * family other than IPv4/IPv6), so the connection's own addresses apply.
 */
export type ProxyHeader =
  | {
    readonly kind: "proxied";
    readonly version: 1 | 2;
    readonly source: ProxyEndpoint;
    readonly destination: ProxyEndpoint;
  }
  | {
    readonly kind: "local";
    readonly version: 1 | 2;
    /** v2 `LOCAL`: the balancer's health checks send this. */
    readonly check: boolean;
  };

/** What the octets so far amount to; `length` is the header's size in octets. */
export type ParseResult =
  | { readonly kind: "more" }
  | {
    readonly kind: "header";
    readonly header: ProxyHeader;
    readonly length: number;
  }
  | { readonly kind: "invalid"; readonly reason: string };

/** The 12 octets that open a version 2 header. */
export const V2_SIGNATURE = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);
const V1_PREFIX = new Uint8Array([0x50, 0x52, 0x4f, 0x58, 0x59, 0x20]); // "PROXY "
const V2_FIXED = 16;
const MORE: ParseResult = { kind: "more" };

/**
 * Parse the start of a connection. Answers `more` only while the octets
 * can still become a valid header, so a wrong first octet is refused at
 * once, and never needs more than `PROXY_V1_MAX` (v1) or
 * `16 + PROXY_V2_MAX_DATA` (v2) octets.
 */
export function parseProxyHeader(data: Uint8Array): ParseResult {
  if (data.length === 0) return MORE;
  if (startsLike(data, V2_SIGNATURE)) {
    return data.length < V2_SIGNATURE.length ? MORE : parseV2(data);
  }
  if (startsLike(data, V1_PREFIX)) {
    return data.length < V1_PREFIX.length ? MORE : parseV1(data);
  }
  return invalid("not a PROXY protocol header");
}

function startsLike(data: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(data.length, prefix.length);
  for (let i = 0; i < n; i++) if (data[i] !== prefix[i]) return false;
  return true;
}

function invalid(reason: string): ParseResult {
  return { kind: "invalid", reason };
}

function parseV1(data: Uint8Array): ParseResult {
  const lf = data.subarray(0, PROXY_V1_MAX).indexOf(0x0a);
  if (lf < 0) {
    return data.length >= PROXY_V1_MAX
      ? invalid(`v1 line longer than ${PROXY_V1_MAX} octets`)
      : MORE;
  }
  if (lf === 0 || data[lf - 1] !== 0x0d) return invalid("v1 line without CRLF");
  const line = data.subarray(0, lf - 1);
  if (line.some((b) => b < 0x20 || b > 0x7e)) {
    return invalid("v1 line with a control or non-ASCII octet");
  }
  const words = String.fromCharCode(...line).split(" ");
  const length = lf + 1;
  if (words[1] === "UNKNOWN") {
    // The specification: anything after UNKNOWN is to be ignored.
    return {
      kind: "header",
      header: { kind: "local", version: 1, check: false },
      length,
    };
  }
  if (words.length !== 6 || (words[1] !== "TCP4" && words[1] !== "TCP6")) {
    return invalid(
      "v1 line is not PROXY TCP4|TCP6|UNKNOWN src dst sport dport",
    );
  }
  const parse = words[1] === "TCP4" ? parseIpv4 : parseIpv6;
  const [src, dst] = [parse(words[2]!), parse(words[3]!)];
  const [sport, dport] = [port(words[4]!), port(words[5]!)];
  if (!src || !dst) return invalid(`v1 ${words[1]} with a bad address`);
  if (sport === undefined || dport === undefined) return invalid("v1 bad port");
  return {
    kind: "header",
    header: {
      kind: "proxied",
      version: 1,
      source: { ip: formatIp(src), port: sport },
      destination: { ip: formatIp(dst), port: dport },
    },
    length,
  };
}

function port(text: string): number | undefined {
  return /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65_535
    ? Number(text)
    : undefined;
}

function parseV2(data: Uint8Array): ParseResult {
  if (data.length >= 13) {
    if (data[12]! >> 4 !== 2) return invalid("v2 with a version other than 2");
    if ((data[12]! & 0x0f) > 1) return invalid("v2 with an unknown command");
  }
  if (data.length >= 14 && data[13]! >> 4 > 3) {
    return invalid("v2 with an unknown address family");
  }
  if (data.length < V2_FIXED) return MORE;
  const size = (data[14]! << 8) | data[15]!;
  if (size > PROXY_V2_MAX_DATA) {
    return invalid(
      `v2 header longer than ${V2_FIXED + PROXY_V2_MAX_DATA} octets`,
    );
  }
  if (data.length < V2_FIXED + size) return MORE;
  const length = V2_FIXED + size;
  const local = (check: boolean): ParseResult => ({
    kind: "header",
    header: { kind: "local", version: 2, check },
    length,
  });
  if ((data[12]! & 0x0f) === 0) return local(true);
  const family = data[13]! >> 4;
  // UNSPEC and UNIX say nothing about a TCP client: use the connection's own.
  if (family === 0 || family === 3) return local(false);
  if ((data[13]! & 0x0f) !== 1) {
    return invalid("v2 with a transport other than STREAM");
  }
  const width = family === 1 ? 4 : 16;
  if (size < 2 * width + 4) return invalid("v2 address block too short");
  const body = data.subarray(V2_FIXED);
  const at = 2 * width;
  return {
    kind: "header",
    header: {
      kind: "proxied",
      version: 2,
      source: {
        ip: formatIp(body.slice(0, width)),
        port: (body[at]! << 8) | body[at + 1]!,
      },
      destination: {
        ip: formatIp(body.slice(width, at)),
        port: (body[at + 2]! << 8) | body[at + 3]!,
      },
    },
    length,
  };
}

/** What came of waiting for a header on a connection. */
export type HeaderRead =
  | {
    readonly kind: "header";
    readonly header: ProxyHeader;
    /** Octets after the header: the client's own, for the session. */
    readonly rest: Uint8Array;
  }
  | { readonly kind: "invalid"; readonly reason: string }
  | { readonly kind: "timeout"; readonly octets: number }
  | { readonly kind: "closed"; readonly octets: number };

/**
 * Read chunks until they hold a complete header, the header turns out
 * invalid, the input ends, or `ms` pass. What the connection sent after
 * the header comes back as `rest`; a read still pending at a timeout is
 * left to the caller's close.
 */
export async function readProxyHeader(
  read: ChunkSource,
  clock: Clock,
  ms: number,
): Promise<HeaderRead> {
  const deadline = clock.timer(ms);
  const expired = deadline.done.then(() => "timeout" as const);
  let data = new Uint8Array(0);
  try {
    for (;;) {
      const chunk = await Promise.race([read().catch(() => null), expired]);
      if (chunk === "timeout") return { kind: "timeout", octets: data.length };
      if (chunk === null) return { kind: "closed", octets: data.length };
      const joined = new Uint8Array(data.length + chunk.length);
      joined.set(data);
      joined.set(chunk, data.length);
      chunk.fill(0);
      data = joined;
      const result = parseProxyHeader(data);
      if (result.kind === "invalid") return result;
      if (result.kind === "header") {
        return {
          kind: "header",
          header: result.header,
          rest: data.slice(result.length),
        };
      }
    }
  } finally {
    deadline.cancel();
    // The client's first octets (maybe a password line) may be in here.
    data.fill(0);
  }
}

/**
 * A chunk source that first hands out `rest` (the client's octets that
 * arrived with the header), then reads on; `sawInput` tells whether any
 * octet came after the header.
 */
export function afterHeader(
  read: ChunkSource,
  rest: Uint8Array,
): { read: ChunkSource; sawInput: () => boolean } {
  let pending: Uint8Array | undefined = rest.length > 0 ? rest : undefined;
  let saw = pending !== undefined;
  return {
    read: async () => {
      if (pending) {
        const first = pending;
        pending = undefined;
        return first;
      }
      const chunk = await read();
      if (chunk && chunk.length > 0) saw = true;
      return chunk;
    },
    sawInput: () => saw,
  };
}
