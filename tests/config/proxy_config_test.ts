/**
 * `--proxy-protocol` / `POPPASS_PROXY_PROTOCOL` in the configuration, and
 * its startup errors (exit 100) through `main.ts`.
 */

import assert from "node:assert/strict";
import {
  type FileProbe,
  parseInvocation,
  UsageError,
} from "../../lib/config/config.ts";
import { formatNetwork } from "../../lib/serve/cidr.ts";
import { Server } from "../support/listen_server.ts";

const probe: FileProbe = { executable: () => "ok" };
const BASE = { PASSWORD_COMMAND: "/bin/set", PATH: "/bin" };

function parse(args: string[], vars: Record<string, string> = {}) {
  const env = (name: string) =>
    ({ ...BASE, ...vars } as Record<string, string>)[name];
  const invocation = parseInvocation(args, env, probe);
  assert.equal(invocation.kind, "run");
  return invocation.kind === "run" ? invocation.config : assert.fail();
}

const trusted = (args: string[], vars: Record<string, string> = {}) =>
  parse(args, vars).proxy?.map(formatNetwork);

Deno.test("--proxy-protocol takes a list of networks, in both modes", async (t) => {
  await t.step("absent: no PROXY headers are expected", () => {
    assert.equal(trusted(["host", "/bin/check"]), undefined);
  });
  await t.step("stdio mode, one network", () => {
    assert.deepEqual(
      trusted(["--proxy-protocol", "127.0.0.1/32", "host", "/bin/check"]),
      ["127.0.0.1/32"],
    );
  });
  await t.step("listen mode, a list with IPv6", () => {
    assert.deepEqual(
      trusted([
        "--listen",
        "127.0.0.1:106",
        "--proxy-protocol=10.0.0.0/8,::1",
        "host",
        "/bin/check",
      ]),
      ["10.0.0.0/8", "::1/128"],
    );
  });
  await t.step(
    "listen mode with --tls-cert: the header comes before TLS",
    () => {
      const config = parse([
        "--listen",
        "127.0.0.1:106",
        "--tls-cert",
        "/c",
        "--tls-key",
        "/k",
        "--proxy-protocol",
        "127.0.0.1",
        "host",
        "/bin/check",
      ]);
      assert.deepEqual(config.proxy?.map(formatNetwork), ["127.0.0.1/32"]);
      assert.ok(config.mode.kind === "listen" && config.mode.tls);
    },
  );
  await t.step("POPPASS_PROXY_PROTOCOL, and the command line wins", () => {
    const vars = { POPPASS_PROXY_PROTOCOL: "192.0.2.0/24" };
    assert.deepEqual(trusted(["host", "/bin/check"], vars), ["192.0.2.0/24"]);
    assert.deepEqual(
      trusted(["--proxy-protocol", "::1", "host", "/bin/check"], vars),
      ["::1/128"],
    );
  });
});

Deno.test("--proxy-protocol refuses bad networks with a UsageError", async (t) => {
  const rows: [string, string[], RegExp][] = [
    [
      "a host name",
      ["--proxy-protocol", "haproxy.example"],
      /not an IP network/,
    ],
    [
      "a prefix too long",
      ["--proxy-protocol", "127.0.0.1/33"],
      /prefix length/,
    ],
    ["an empty list", ["--proxy-protocol", ","], /no network/],
  ];
  for (const [name, options, message] of rows) {
    await t.step(name, () => {
      assert.throws(
        () => parse([...options, "host", "/bin/check"]),
        (error: unknown) =>
          error instanceof UsageError && message.test(error.message),
      );
    });
  }
});

Deno.test("an invalid --proxy-protocol exits 100 with one line naming it", async () => {
  const { code, logs, stdout } = await Server.run({
    options: ["--listen", "127.0.0.1:0", "--proxy-protocol", "127.0.0.1/40"],
    check: ["/bin/true"],
    password: "/bin/true",
  });
  assert.equal(code, 100);
  assert.equal(stdout, "");
  assert.equal(logs.length, 1);
  assert.match(
    logs[0]!,
    /fatal: --proxy-protocol: "127\.0\.0\.1\/40": the prefix length must be 0 to 32$/,
  );
});
