/**
 * Address groups for the per-IP limits (`lib/serve/peers.ts`), the
 * refusal summaries (`lib/serve/refusals.ts`) and the order in which
 * listen addresses are bound (`dualStackFirst`).
 */

import assert from "node:assert/strict";
import { addressGroup } from "../../lib/serve/peers.ts";
import { refusalLog } from "../../lib/serve/refusals.ts";
import { dualStackFirst } from "../../lib/serve/listener.ts";
import { FakeClock } from "../support/fake_clock.ts";

Deno.test("addressGroup() keeps the prefix's bits, in canonical text", async (t) => {
  const rows: [string, number, number, string][] = [
    ["192.0.2.7", 32, 64, "192.0.2.7"],
    ["192.0.2.7", 24, 64, "192.0.2.0/24"],
    ["192.0.2.255", 23, 64, "192.0.2.0/23"],
    ["192.0.3.255", 23, 64, "192.0.2.0/23"],
    ["10.1.2.3", 1, 64, "0.0.0.0/1"],
    ["2001:db8:1:2:aaaa:bbbb:cccc:dddd", 32, 64, "2001:db8:1:2::/64"],
    ["2001:db8:1:2::1", 32, 64, "2001:db8:1:2::/64"],
    ["2001:DB8:1:2::ffff", 32, 64, "2001:db8:1:2::/64"],
    ["2001:db8:1:2::1", 32, 128, "2001:db8:1:2::1"],
    ["2001:0db8:0000:0000:0000:0000:0000:0001", 32, 128, "2001:db8::1"],
    ["2001:db8:1:2ff::1", 32, 56, "2001:db8:1:200::/56"],
    ["::1", 32, 64, "::/64"],
    ["::1", 32, 128, "::1"],
    ["fe80::1%eth0", 32, 64, "fe80::/64"],
    ["::ffff:192.0.2.7", 32, 128, "::ffff:c000:207"],
    ["unknown", 24, 64, "unknown"],
    ["1:2:3", 24, 64, "1:2:3"],
    ["1::2::3", 24, 64, "1::2::3"],
  ];
  for (const [ip, p4, p6, group] of rows) {
    await t.step(`${ip} /${p4} /${p6} → ${group}`, () => {
      assert.equal(addressGroup(ip, p4, p6), group);
    });
  }
});

Deno.test("refusalLog() logs the first refusal per limit, then one count per interval", async () => {
  const clock = new FakeClock();
  const lines: string[] = [];
  const refusals = refusalLog((m) => lines.push(m), clock, 10_000);
  const full = (what: string) => () => lines.push(`full ${what}`);
  for (let i = 0; i < 5; i++) refusals.refused("max-per-ip 2", full("a"));
  refusals.refused("max-sessions 3", full("b"));
  assert.deepEqual(lines, ["full a", "full b"]);
  await clock.advance(10_000);
  assert.deepEqual(lines.slice(2), [
    "limit reached: max-per-ip 2, 4 more connections refused in the last 10 s",
  ]);
  // A new interval starts with a full line again; flush ends it early.
  refusals.refused("max-per-ip 2", full("c"));
  refusals.refused("max-per-ip 2", full("d"));
  refusals.flush();
  assert.deepEqual(lines.slice(3), [
    "full c",
    "limit reached: max-per-ip 2, 1 more connection refused in the last 10 s",
  ]);
  refusals.flush();
  assert.equal(lines.length, 5);
});

Deno.test("dualStackFirst() binds [::]:PORT before 0.0.0.0:PORT, other orders kept", () => {
  const a = (hostname: string, port: number) => ({ hostname, port });
  assert.deepEqual(
    dualStackFirst([a("0.0.0.0", 106), a("::", 106), a("127.0.0.1", 107)]),
    [a("::", 106), a("0.0.0.0", 106), a("127.0.0.1", 107)],
  );
  assert.deepEqual(
    dualStackFirst([a("0.0.0.0", 0), a("::", 0)]),
    [a("0.0.0.0", 0), a("::", 0)],
  );
  assert.deepEqual(
    dualStackFirst([a("0.0.0.0", 106), a("::1", 106), a("::", 107)]),
    [a("0.0.0.0", 106), a("::1", 106), a("::", 107)],
  );
});
