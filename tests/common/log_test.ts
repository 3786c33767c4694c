/**
 * Log forgery (`doc/protocol.md` §6): client text goes through `sanitize`
 * before it reaches a log line, so no CR, LF, control octet, non-ASCII or
 * overlong text can start a new line, fake a field (` ip=…`) or flood the
 * log. Tables of input → exact output.
 */

import assert from "node:assert/strict";
import { processLog, sanitize, sessionLog } from "../../lib/common/log.ts";
import { LOG_TEXT_MAX } from "../../lib/common/limits.ts";
import { bytes } from "../support/bytes.ts";

const ROWS: readonly [string, Uint8Array | string, string][] = [
  [
    "printable ASCII unchanged",
    "bob.smith@example.org",
    "bob.smith@example.org",
  ],
  [
    "LF",
    "bob\nqmail-poppass[1] ip=6.6.6.6: x",
    "bob?qmail-poppass[1]?ip=6.6.6.6:?x",
  ],
  ["CR", "bob\rfake", "bob?fake"],
  ["CRLF", "a\r\nb", "a??b"],
  ["NUL", bytes("a", 0, "b"), "a?b"],
  ["tab and other controls", bytes("a", 0x09, 0x01, 0x1b, "[31m"), "a???[31m"],
  ["DEL", bytes("a", 0x7f), "a?"],
  ["space (a field separator)", "x ip=1.2.3.4", "x?ip=1.2.3.4"],
  ["UTF-8: each octet", "é", "??"],
  ["non-UTF-8 octets", bytes(0xff, 0xfe, 0x80, "z"), "???z"],
  ["lone surrogate from a string", "\ud800", "???"],
  ["empty", "", ""],
];

Deno.test("sanitize replaces every octet outside 0x21..0x7E with ?", async (t) => {
  for (const [name, input, expected] of ROWS) {
    await t.step(name, () => assert.equal(sanitize(input), expected));
  }
});

Deno.test("sanitize keeps spaces only with allowSpace, and never CR or LF", async (t) => {
  const rows: readonly [string, string, string][] = [
    ["space kept", "exit 3: bad password", "exit 3: bad password"],
    ["LF still replaced", "line one\nline two", "line one?line two"],
    ["tab still replaced", "a\tb", "a?b"],
  ];
  for (const [name, input, expected] of rows) {
    await t.step(
      name,
      () => assert.equal(sanitize(input, { allowSpace: true }), expected),
    );
  }
});

Deno.test("sanitize cuts long text", async (t) => {
  const rows: readonly [
    string,
    Uint8Array | string,
    number | undefined,
    number,
  ][] = [
    ["at the default limit", "x".repeat(LOG_TEXT_MAX), undefined, LOG_TEXT_MAX],
    ["over the default limit", "x".repeat(5_000), undefined, LOG_TEXT_MAX],
    [
      "1 MiB of octets",
      new Uint8Array(1 << 20).fill(0x41),
      undefined,
      LOG_TEXT_MAX,
    ],
    ["with max", "y".repeat(300), 200, 200],
    ["replaced octets count too", "\n".repeat(300), undefined, LOG_TEXT_MAX],
  ];
  for (const [name, input, max, length] of rows) {
    await t.step(name, () => {
      const out = sanitize(input, max === undefined ? {} : { max });
      assert.equal(out.length, length);
    });
  }
});

Deno.test("log line prefixes sanitise the id and the IP too", () => {
  const lines: string[] = [];
  sessionLog((l) => lines.push(l), "7\n", "::1 ip=9.9.9.9")("hello");
  processLog((l) => lines.push(l), "8\r")("started");
  assert.deepEqual(lines, [
    "qmail-poppass[7?] ip=::1?ip=9.9.9.9: hello",
    "qmail-poppass[8?]: started",
  ]);
});
