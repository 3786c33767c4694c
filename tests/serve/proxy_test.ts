/**
 * The PROXY protocol header parser (lib/serve/proxy.ts): tables of exact
 * octets, each also fed in 1-octet chunks, plus the bounded reader.
 */

import assert from "node:assert/strict";
import {
  afterHeader,
  parseProxyHeader,
  type ParseResult,
  type ProxyHeader,
  readProxyHeader,
  V2_SIGNATURE,
} from "../../lib/serve/proxy.ts";
import { PROXY_V1_MAX, PROXY_V2_MAX_DATA } from "../../lib/common/limits.ts";
import { FakeClock } from "../support/fake_clock.ts";

const enc = new TextEncoder();
const ascii = (text: string) => enc.encode(text);
const join = (...parts: (Uint8Array | number[])[]) => {
  const all = parts.flatMap((p) => [...p]);
  return new Uint8Array(all);
};
/** A v2 header: ver/cmd, fam/proto, then `body`, with the right length. */
const v2 = (verCmd: number, famProto: number, body: number[]) =>
  join(
    V2_SIGNATURE,
    [verCmd, famProto, body.length >> 8, body.length & 255],
    body,
  );
const u16 = (n: number) => [n >> 8, n & 255];

const proxied = (
  version: 1 | 2,
  src: string,
  sport: number,
  dst: string,
  dport: number,
): ProxyHeader => ({
  kind: "proxied",
  version,
  source: { ip: src, port: sport },
  destination: { ip: dst, port: dport },
});

const valid: [string, Uint8Array, ProxyHeader][] = [
  [
    "v1 TCP4",
    ascii("PROXY TCP4 192.0.2.7 127.0.0.1 40000 106\r\n"),
    proxied(1, "192.0.2.7", 40000, "127.0.0.1", 106),
  ],
  [
    "v1 TCP6 written in full, read back in RFC 5952 form",
    ascii("PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 65535 0\r\n"),
    proxied(1, "2001:db8::1", 65535, "::1", 0),
  ],
  [
    "v1 TCP6 with the longest addresses and ports",
    ascii(
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    ),
    proxied(
      1,
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      65535,
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
      65535,
    ),
  ],
  [
    "v1 TCP6 with an IPv4-mapped source becomes plain IPv4",
    ascii("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"),
    proxied(1, "192.0.2.1", 1, "::1", 2),
  ],
  [
    "v1 UNKNOWN, with the rest of the line ignored",
    ascii("PROXY UNKNOWN ffff:: 1.2.3.4 9 9\r\n"),
    { kind: "local", version: 1, check: false },
  ],
  [
    "v1 UNKNOWN line of exactly 107 octets with CRLF",
    ascii("PROXY UNKNOWN " + "x".repeat(91) + "\r\n"),
    { kind: "local", version: 1, check: false },
  ],
  [
    "v1 UNKNOWN alone",
    ascii("PROXY UNKNOWN\r\n"),
    { kind: "local", version: 1, check: false },
  ],
  [
    "v2 PROXY TCP over IPv4 (what HAProxy 2.6 sent, measured)",
    v2(0x21, 0x11, [127, 0, 0, 2, 127, 0, 0, 1, 0xe8, 0x1f, 0x42, 0x68]),
    proxied(2, "127.0.0.2", 59423, "127.0.0.1", 17000),
  ],
  [
    "v2 PROXY TCP over IPv6",
    v2(0x21, 0x21, [
      ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
      ...[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34],
      ...u16(443),
      ...u16(106),
    ]),
    proxied(2, "2001:db8::1", 443, "fe80::1234", 106),
  ],
  [
    "v2 PROXY with TLVs after the addresses (ignored)",
    v2(0x21, 0x11, [
      ...[10, 0, 0, 1, 10, 0, 0, 2, 0, 80, 0, 106],
      ...[0x04, 0, 3, 0, 0, 0], // PP2_TYPE_NOOP, 3 octets
      ...[0x05, 0, 4, 1, 2, 3, 4], // PP2_TYPE_UNIQUE_ID
    ]),
    proxied(2, "10.0.0.1", 80, "10.0.0.2", 106),
  ],
  [
    "v2 LOCAL (HAProxy's check-send-proxy health check, measured)",
    v2(0x20, 0x00, []),
    { kind: "local", version: 2, check: true },
  ],
  [
    "v2 LOCAL with an address block still means LOCAL",
    v2(0x20, 0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]),
    { kind: "local", version: 2, check: true },
  ],
  [
    "v2 PROXY with family UNSPEC: the connection's own addresses",
    v2(0x21, 0x00, []),
    { kind: "local", version: 2, check: false },
  ],
  [
    "v2 PROXY with family UNIX: the connection's own addresses",
    v2(0x21, 0x31, new Array(216).fill(0)),
    { kind: "local", version: 2, check: false },
  ],
];

const bad: [string, Uint8Array, string][] = [
  [
    "a poppassd command",
    ascii("user alice\r\n"),
    "not a PROXY protocol header",
  ],
  [
    "lower-case proxy",
    ascii("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"),
    "not a PROXY",
  ],
  [
    "an empty line, then a command",
    ascii("\r\nuser alice\r\n"),
    "not a PROXY",
  ],
  ["TLS ClientHello", new Uint8Array([0x16, 3, 1, 0, 0xa5]), "not a PROXY"],
  [
    "v1 with LF only",
    ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
    "without CRLF",
  ],
  ["v1 TCP5", ascii("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), "is not PROXY"],
  [
    "v1 missing port",
    ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
    "is not PROXY",
  ],
  ["v1 double space", ascii("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), "is not"],
  ["v1 trailing space", ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), "is not"],
  [
    "v1 octet 256",
    ascii("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),
    "bad address",
  ],
  [
    "v1 leading zero",
    ascii("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n"),
    "bad address",
  ],
  ["v1 IPv6 in TCP4", ascii("PROXY TCP4 ::1 ::1 1 2\r\n"), "bad address"],
  ["v1 IPv4 in TCP6", ascii("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), "bad address"],
  ["v1 IPv6 zone", ascii("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), "bad address"],
  [
    "v1 port 65536",
    ascii("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
    "bad port",
  ],
  ["v1 port -1", ascii("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), "bad port"],
  ["v1 NUL inside", ascii("PROXY TCP4 1.2.3.4\x005.6.7.8 1 2\r\n"), "control"],
  [
    "v1 without LF in 107 octets",
    ascii("PROXY UNKNOWN " + "x".repeat(PROXY_V1_MAX)),
    "longer than 107",
  ],
  [
    "v1 of 108 octets with CRLF",
    ascii("PROXY UNKNOWN " + "x".repeat(92) + "\r\n"),
    "longer than 107",
  ],
  [
    "v2 signature with a wrong last octet",
    join(V2_SIGNATURE.subarray(0, 11), [0x0b]),
    "not a PROXY",
  ],
  ["v2 version 1", v2(0x11, 0x11, []), "version other than 2"],
  ["v2 command 2", v2(0x22, 0x11, []), "unknown command"],
  ["v2 family 4", v2(0x21, 0x41, []), "unknown address family"],
  ["v2 UDP", v2(0x21, 0x12, new Array(12).fill(1)), "other than STREAM"],
  ["v2 IPv4 block short", v2(0x21, 0x11, new Array(11).fill(1)), "too short"],
  ["v2 IPv6 block short", v2(0x21, 0x21, new Array(35).fill(1)), "too short"],
  [
    "v2 longer than the limit",
    join(V2_SIGNATURE, [0x21, 0x11, ...u16(PROXY_V2_MAX_DATA + 1)]),
    "longer than 1040 octets",
  ],
  [
    "v2 the 16-bit maximum",
    join(V2_SIGNATURE, [0x21, 0x11, 0xff, 0xff]),
    "longer than 1040",
  ],
];

/** Feed `data` one octet at a time: `more` until the last, then the result. */
function byOctets(data: Uint8Array): ParseResult {
  for (let n = 1; n < data.length; n++) {
    const partial = parseProxyHeader(data.subarray(0, n));
    if (partial.kind !== "more") return partial;
  }
  return parseProxyHeader(data);
}

Deno.test("parseProxyHeader() accepts valid headers, whole and octet by octet", async (t) => {
  for (const [name, data, header] of valid) {
    await t.step(name, () => {
      const whole = parseProxyHeader(data);
      assert.deepEqual(whole, { kind: "header", header, length: data.length });
      assert.deepEqual(byOctets(data), whole);
      // What follows the header is not part of it.
      const more = join(data, ascii("user alice\r\n"));
      assert.deepEqual(parseProxyHeader(more), whole);
    });
  }
});

Deno.test("parseProxyHeader() refuses bad headers as early as it can", async (t) => {
  for (const [name, data, reason] of bad) {
    await t.step(name, () => {
      const whole = parseProxyHeader(data);
      assert.equal(whole.kind, "invalid");
      assert.match((whole as { reason: string }).reason, new RegExp(reason));
      assert.deepEqual(byOctets(data), whole);
    });
  }
});

Deno.test("parseProxyHeader() asks for more only while a header is still possible", async (t) => {
  const cases: [string, Uint8Array, ParseResult["kind"]][] = [
    ["nothing yet", new Uint8Array(0), "more"],
    ["P", ascii("P"), "more"],
    ["PROXY TCP4 without LF", ascii("PROXY TCP4 1.2.3.4"), "more"],
    ["106 octets without LF", ascii("PROXY " + "x".repeat(100)), "more"],
    ["107 octets without LF", ascii("PROXY " + "x".repeat(101)), "invalid"],
    ["CR first: a v2 signature start", new Uint8Array([0x0d]), "more"],
    [
      "v2 fixed part, no body yet",
      join(V2_SIGNATURE, [0x21, 0x11, 0, 12]),
      "more",
    ],
    ["X", ascii("X"), "invalid"],
    ["PROXYX", ascii("PROXYX"), "invalid"],
  ];
  for (const [name, data, kind] of cases) {
    await t.step(name, () => assert.equal(parseProxyHeader(data).kind, kind));
  }
});

/** A chunk source over fixed chunks; after them, `end` (null = EOF, or never). */
function chunks(list: Uint8Array[], end: "eof" | "hang") {
  let reads = 0;
  return {
    read: () => {
      reads++;
      const next = list.shift();
      if (next !== undefined) return Promise.resolve(next);
      return end === "eof"
        ? Promise.resolve(null)
        : new Promise<null>(() => {});
    },
    reads: () => reads,
  };
}

Deno.test("readProxyHeader() hands back the octets after the header, in 1-octet chunks too", async (t) => {
  const header = ascii("PROXY TCP4 192.0.2.7 127.0.0.1 40000 106\r\n");
  const data = join(header, ascii("user alice\r\n"));
  for (
    const [name, split] of [["one chunk", [data]], [
      "1-octet chunks",
      [...data].map((b) => new Uint8Array([b])),
    ]] as const
  ) {
    await t.step(name, async () => {
      const source = chunks([...split], "eof");
      const got = await readProxyHeader(source.read, new FakeClock(), 5_000);
      assert.equal(got.kind, "header");
      if (got.kind !== "header") return;
      // One-octet chunks: the reader stops at the header's last octet.
      const rest = split.length === 1 ? "user alice\r\n" : "";
      assert.equal(new TextDecoder().decode(got.rest), rest);
      assert.equal(source.reads(), split.length === 1 ? 1 : header.length);
      const after = afterHeader(source.read, got.rest);
      let text = "";
      for (let c = await after.read(); c; c = await after.read()) {
        text += new TextDecoder().decode(c);
      }
      assert.equal(text, "user alice\r\n");
      assert.equal(after.sawInput(), true);
    });
  }
});

Deno.test("readProxyHeader() ends at the deadline, at EOF and at a bad octet", async (t) => {
  await t.step("deadline", async () => {
    const clock = new FakeClock();
    const pending = readProxyHeader(
      chunks([ascii("PROXY TCP4")], "hang").read,
      clock,
      5_000,
    );
    await clock.advance(4_999);
    assert.equal(clock.pending, 1);
    await clock.advance(1);
    assert.deepEqual(await pending, { kind: "timeout", octets: 10 });
  });
  await t.step("EOF before any octet (a TCP health check)", async () => {
    const got = await readProxyHeader(
      chunks([], "eof").read,
      new FakeClock(),
      5_000,
    );
    assert.deepEqual(got, { kind: "closed", octets: 0 });
  });
  await t.step("EOF inside the header", async () => {
    const got = await readProxyHeader(
      chunks([ascii("PROXY ")], "eof").read,
      new FakeClock(),
      5_000,
    );
    assert.deepEqual(got, { kind: "closed", octets: 6 });
  });
  await t.step("a read error counts as EOF", async () => {
    const got = await readProxyHeader(
      () => Promise.reject(new Error("reset")),
      new FakeClock(),
      5_000,
    );
    assert.deepEqual(got, { kind: "closed", octets: 0 });
  });
  await t.step("a bad first octet, without waiting for more", async () => {
    const source = chunks([ascii("u")], "hang");
    const got = await readProxyHeader(source.read, new FakeClock(), 5_000);
    assert.equal(got.kind, "invalid");
    assert.equal(source.reads(), 1);
  });
  await t.step("an oversized v1 line stops at 107 octets", async () => {
    const source = chunks(
      [...ascii("PROXY " + "y".repeat(500))].map((b) => new Uint8Array([b])),
      "hang",
    );
    const got = await readProxyHeader(source.read, new FakeClock(), 5_000);
    assert.equal(got.kind, "invalid");
    assert.equal(source.reads(), PROXY_V1_MAX);
  });
});

Deno.test("afterHeader() without rest: sawInput only once an octet arrives", async () => {
  const source = chunks([new Uint8Array(0), ascii("q")], "eof");
  const after = afterHeader(source.read, new Uint8Array(0));
  assert.equal(after.sawInput(), false);
  await after.read();
  assert.equal(after.sawInput(), false);
  await after.read();
  assert.equal(after.sawInput(), true);
});
