/**
 * Addresses and networks for `--proxy-protocol` (lib/serve/cidr.ts).
 */

import assert from "node:assert/strict";
import {
  formatIp,
  formatNetwork,
  inNetworks,
  parseIp,
  parseNetwork,
  parseNetworks,
} from "../../lib/serve/cidr.ts";

Deno.test("parseIp() and formatIp() round-trip to the canonical text", async (t) => {
  const rows: [string, string][] = [
    ["127.0.0.1", "127.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    ["::", "::"],
    ["::1", "::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:db8::0:1", "2001:db8::1"],
    ["2001:0db8:0000:0001:0000:0000:0000:0001", "2001:db8:0:1::1"],
    ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ["fe80::", "fe80::"],
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["::192.0.2.1", "::c000:201"],
    ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
  ];
  for (const [text, canonical] of rows) {
    await t.step(text, () => {
      const octets = parseIp(text);
      assert.ok(octets, text);
      assert.equal(formatIp(octets), canonical);
    });
  }
});

Deno.test("parseIp() refuses what is not an address", async (t) => {
  const rows = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "1.2.3.256",
    "01.2.3.4",
    "1.2.3.-1",
    " 1.2.3.4",
    "localhost",
    ":::",
    "1::2::3",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::8",
    "12345::",
    "fe80::1%eth0",
    "::1.2.3",
    "1.2.3.4::",
    "g::1",
  ];
  for (const text of rows) {
    await t.step(
      JSON.stringify(text),
      () => assert.equal(parseIp(text), undefined),
    );
  }
});

Deno.test("parseNetwork() reads ADDRESS/PREFIX and bare addresses", async (t) => {
  const rows: [string, string][] = [
    ["127.0.0.1/32", "127.0.0.1/32"],
    ["127.0.0.1", "127.0.0.1/32"],
    ["10.1.2.3/8", "10.0.0.0/8"],
    ["0.0.0.0/0", "0.0.0.0/0"],
    ["192.168.7.255/23", "192.168.6.0/23"],
    ["::1", "::1/128"],
    ["2001:db8::ffff/32", "2001:db8::/32"],
    ["::ffff:0:0/96", "::ffff:0:0/96"],
    ["fe80::1/10", "fe80::/10"],
  ];
  for (const [text, canonical] of rows) {
    await t.step(
      text,
      () => assert.equal(formatNetwork(parseNetwork(text)), canonical),
    );
  }
});

Deno.test("parseNetwork() refuses bad networks with a RangeError", async (t) => {
  const rows = [
    "",
    "/8",
    "10.0.0.0/",
    "10.0.0.0/33",
    "10.0.0.0/08",
    "10.0.0.0/-1",
    "10.0.0.0/8/8",
    "::/129",
    "10.0.0.0 /8",
    "example.net/24",
  ];
  for (const text of rows) {
    await t.step(
      JSON.stringify(text),
      () => assert.throws(() => parseNetwork(text), RangeError),
    );
  }
});

Deno.test("parseNetworks() splits at commas and white space; empty is an error", () => {
  const list = parseNetworks("127.0.0.1/32, 10.0.0.0/8 ::1");
  assert.deepEqual(list.map(formatNetwork), [
    "127.0.0.1/32",
    "10.0.0.0/8",
    "::1/128",
  ]);
  assert.throws(() => parseNetworks(" , "), /no network/);
  assert.throws(() => parseNetworks("127.0.0.1/32,bogus"), /bogus/);
});

Deno.test("inNetworks() matches by prefix, per family", async (t) => {
  const nets = parseNetworks("127.0.0.1/32,10.0.0.0/8,2001:db8::/32");
  const rows: [string, boolean][] = [
    ["127.0.0.1", true],
    ["127.0.0.2", false],
    ["10.255.255.255", true],
    ["11.0.0.0", false],
    ["2001:db8:ffff::1", true],
    ["2001:db9::1", false],
    ["::ffff:127.0.0.1", true],
    ["::ffff:127.0.0.2", false],
    ["::1", false],
    ["unknown", false],
    ["", false],
  ];
  for (const [ip, inside] of rows) {
    await t.step(
      `${ip || "(empty)"} → ${inside}`,
      () => assert.equal(inNetworks(ip, nets), inside),
    );
  }
  await t.step("0.0.0.0/0 holds every IPv4 address and no IPv6 one", () => {
    const all = parseNetworks("0.0.0.0/0");
    assert.equal(inNetworks("203.0.113.9", all), true);
    assert.equal(inNetworks("2001:db8::1", all), false);
  });
});
