/**
 * The fd-3 payloads octet for octet (`doc/protocol.md` §4,
 * `doc/test-plan.md` cases 8 and 9): each row gives the expected payload
 * as literal hex, so a layout change cannot hide behind a helper that
 * builds the expectation the same way the code does.
 */

import assert from "node:assert/strict";
import {
  changePayload,
  checkPayload,
  payloadFits,
} from "../../../lib/stores/programs/fd3.ts";
import { bytes, hex } from "../../support/bytes.ts";

const CHECK_ROWS: readonly [string, Uint8Array, Uint8Array, string][] = [
  ["plain", bytes("bob"), bytes("old"), "626f62 00 6f6c64 00 00 00"],
  ["one-octet fields", bytes("a"), bytes("b"), "61 00 62 00 00 00"],
  ["spaces kept", bytes("u"), bytes(" a b "), "75 00 2061206220 00 00 00"],
  ["UTF-8 kept", bytes("u"), bytes("é"), "75 00 c3a9 00 00 00"],
  ["8-bit octets", bytes("u"), bytes(0xff, 0x80), "75 00 ff80 00 00 00"],
];

const CHANGE_ROWS: readonly [
  string,
  Uint8Array,
  Uint8Array,
  Uint8Array,
  string,
][] = [
  [
    "plain",
    bytes("bob"),
    bytes("old"),
    bytes("new"),
    "626f62 00 6f6c64 00 00 6e6577 00",
  ],
  [
    "one-octet fields",
    bytes("a"),
    bytes("b"),
    bytes("c"),
    "61 00 62 00 00 63 00",
  ],
  [
    "spaces kept",
    bytes("u"),
    bytes(" o"),
    bytes("n "),
    "75 00 206f 00 00 6e20 00",
  ],
  ["UTF-8 kept", bytes("u"), bytes("o"), bytes("ü"), "75 00 6f 00 00 c3bc 00"],
];

const flat = (spaced: string) => spaced.replaceAll(" ", "");

Deno.test("checkPayload is user NUL old NUL NUL NUL", async (t) => {
  for (const [name, user, old, expected] of CHECK_ROWS) {
    await t.step(name, () => {
      const payload = checkPayload(user, old);
      assert.equal(hex(payload), flat(expected));
      assert.equal(payload.length, user.length + old.length + 4);
    });
  }
});

Deno.test("changePayload is user NUL old NUL NUL new NUL", async (t) => {
  for (const [name, user, old, next, expected] of CHANGE_ROWS) {
    await t.step(name, () => {
      const payload = changePayload(user, old, next);
      assert.equal(hex(payload), flat(expected));
      assert.equal(payload.length, user.length + old.length + next.length + 4);
    });
  }
});

Deno.test("payloadFits allows 512 octets and refuses 513", async (t) => {
  const rows: readonly [string, Uint8Array, boolean][] = [
    ["check at 512", checkPayload(bytes("u"), bytes("p".repeat(507))), true],
    ["check at 513", checkPayload(bytes("u"), bytes("p".repeat(508))), false],
    [
      "change at 512",
      changePayload(bytes("u"), bytes("o"), bytes("n".repeat(506))),
      true,
    ],
    [
      "change at 513",
      changePayload(bytes("u"), bytes("o"), bytes("n".repeat(507))),
      false,
    ],
  ];
  for (const [name, payload, fits] of rows) {
    await t.step(name, () => assert.equal(payloadFits(payload), fits));
  }
});
