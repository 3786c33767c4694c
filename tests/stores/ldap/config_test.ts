/**
 * The LDAP store's options and escaping: what `parseInvocation` makes of
 * `--ldap-*` and `POPPASS_LDAP_*`, every startup error (exit 100 through
 * main.ts), RFC 4514/4515 escaping and the Password Modify request value.
 */

import assert from "node:assert/strict";
import {
  type Config,
  type FileProbe,
  parseInvocation,
  UsageError,
} from "../../../lib/config/config.ts";
import {
  escapeDnValue,
  escapeFilterValue,
  fillTemplate,
  nameParts,
  templateProblem,
} from "../../../lib/stores/ldap/escape.ts";
import { passwordModifyValue } from "../../../lib/stores/ldap/backend.ts";
import { baseEnv, MAIN, ROOT } from "../../support/sandbox.ts";

const probe: FileProbe = { executable: () => "ok" };
const DN = "uid=%n,ou=people,dc=example,dc=org";
const enc = (text: string) => new TextEncoder().encode(text);

function parse(args: string[], vars: Record<string, string> = {}): Config {
  const invocation = parseInvocation(args, (name) => vars[name], probe);
  if (invocation.kind !== "run") throw new Error(invocation.kind);
  return invocation.config;
}

Deno.test("--ldap-url with --ldap-user-dn: the template form", () => {
  const config = parse([
    "--ldap-url",
    "ldap://127.0.0.1:389/ ldaps://ldap2.example:636",
    "--ldap-user-dn",
    DN,
    "pop.example",
  ]);
  assert.deepEqual(config.backend, {
    kind: "ldap",
    urls: ["ldap://127.0.0.1:389", "ldaps://ldap2.example:636"],
    userDn: { kind: "template", template: DN },
    startTls: false,
  });
  assert.deepEqual(config.warnings, []);
});

Deno.test("the search form from the environment, bind password from POPPASS_LDAP_BIND_PASSWORD", () => {
  const config = parse(["pop.example"], {
    POPPASS_LDAP_URL: "ldap://ldap.example",
    POPPASS_LDAP_BASE: "dc=example,dc=org",
    POPPASS_LDAP_BIND_DN: "cn=search,dc=example,dc=org",
    POPPASS_LDAP_BIND_PASSWORD: "s3cret",
    POPPASS_LDAP_STARTTLS: "1",
    POPPASS_LDAP_CA: "/etc/ssl/ca.pem",
  });
  assert.deepEqual(config.backend, {
    kind: "ldap",
    urls: ["ldap://ldap.example"],
    userDn: {
      kind: "search",
      base: "dc=example,dc=org",
      filter: "(uid=%n)",
      bindDn: "cn=search,dc=example,dc=org",
      bindPassword: { kind: "env", value: "s3cret" },
    },
    startTls: true,
    caFile: "/etc/ssl/ca.pem",
  });
  assert.deepEqual(config.warnings, []);
});

Deno.test("a password file, an anonymous search, and the clear-text warning", () => {
  const withFile = parse([
    "--ldap-url=ldap://127.0.0.1",
    "--ldap-base=dc=x",
    "--ldap-filter=(mail=%u)",
    "--ldap-bind-dn=cn=s,dc=x",
    "--ldap-bind-password-file=/etc/pw",
    "host",
  ]);
  assert.deepEqual(
    withFile.backend.kind === "ldap" && withFile.backend.userDn,
    {
      kind: "search",
      base: "dc=x",
      filter: "(mail=%u)",
      bindDn: "cn=s,dc=x",
      bindPassword: { kind: "file", path: "/etc/pw" },
    },
  );
  const anonymous = parse([
    "--ldap-url",
    "ldap://ldap.example",
    "--ldap-base",
    "dc=x",
    "host",
  ]);
  assert.deepEqual(
    anonymous.backend.kind === "ldap" && anonymous.backend.userDn,
    { kind: "search", base: "dc=x", filter: "(uid=%n)" },
  );
  assert.deepEqual(anonymous.warnings, [
    "ldap://ldap.example without --ldap-starttls: passwords cross the network in clear",
  ]);
});

Deno.test("LDAP startup errors", () => {
  const rows: [string, string[], Record<string, string>, RegExp][] = [
    [
      "with --passwd-file",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        DN,
        "--passwd-file",
        "/x",
        "host",
      ],
      {},
      /^--ldap-url and --passwd-file are two stores: choose one/,
    ],
    [
      "with a checkpassword chain",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        DN,
        "host",
        "/bin/check",
      ],
      {},
      /^--ldap-url and a checkpassword chain are two stores/,
    ],
    [
      "with --fd3-helper",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        DN,
        "--fd3-helper",
        "/bin/x",
        "host",
      ],
      {},
      /^--ldap-url and --fd3-helper\/--fd3-spawner are two stores/,
    ],
    ["POPPASS_PASSWD_FILE with POPPASS_LDAP_URL", ["host"], {
      POPPASS_LDAP_URL: "ldap://h",
      POPPASS_LDAP_USER_DN: DN,
      POPPASS_PASSWD_FILE: "/x",
    }, /two stores/],
    [
      "an --ldap option without --ldap-url",
      [
        "--ldap-user-dn",
        DN,
        "--passwd-file",
        "/x",
        "host",
      ],
      {},
      /^--ldap-user-dn needs --ldap-url$/,
    ],
    [
      "no way to find the user",
      ["--ldap-url", "ldap://h", "host"],
      {},
      /needs --ldap-user-dn TEMPLATE or --ldap-base DN/,
    ],
    [
      "both ways",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        DN,
        "--ldap-base",
        "dc=x",
        "host",
      ],
      {},
      /two ways to find the user/,
    ],
    [
      "a filter with the template",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        DN,
        "--ldap-filter",
        "(uid=%u)",
        "host",
      ],
      {},
      /^--ldap-filter goes with --ldap-base/,
    ],
    [
      "http URL",
      [
        "--ldap-url",
        "http://h",
        "--ldap-user-dn",
        DN,
        "host",
      ],
      {},
      /expected ldap:\/\/ or ldaps:\/\//,
    ],
    [
      "URL with a DN",
      [
        "--ldap-url",
        "ldap://h/dc=x",
        "--ldap-user-dn",
        DN,
        "host",
      ],
      {},
      /expected ldap\[s\]:\/\/HOST\[:PORT\] and nothing more/,
    ],
    [
      "empty URL list",
      ["--ldap-url", " ", "--ldap-user-dn", DN, "host"],
      {},
      /no URL given/,
    ],
    [
      "StartTLS on ldaps",
      [
        "--ldap-url",
        "ldaps://h",
        "--ldap-starttls",
        "--ldap-user-dn",
        DN,
        "host",
      ],
      {},
      /ldaps:\/\/ is TLS already/,
    ],
    [
      "a CA without TLS",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-ca",
        "/ca",
        "--ldap-user-dn",
        DN,
        "host",
      ],
      {},
      /--ldap-ca needs ldaps:\/\/ or --ldap-starttls/,
    ],
    [
      "a template without a name",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        "uid=bob,dc=x",
        "host",
      ],
      {},
      /must contain %u, %n or %d/,
    ],
    [
      "an unknown % sequence",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-user-dn",
        "uid=%s,dc=x",
        "host",
      ],
      {},
      /only %u, %n, %d and %% may follow a %/,
    ],
    [
      "a filter without parentheses",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-base",
        "dc=x",
        "--ldap-filter",
        "uid=%n",
        "host",
      ],
      {},
      /enclosed in parentheses/,
    ],
    [
      "a bind DN without a password",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-base",
        "dc=x",
        "--ldap-bind-dn",
        "cn=s",
        "host",
      ],
      {},
      /needs its password in POPPASS_LDAP_BIND_PASSWORD or --ldap-bind-password-file \(never on the command line\)/,
    ],
    [
      "a password without a bind DN",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-base",
        "dc=x",
        "host",
      ],
      { POPPASS_LDAP_BIND_PASSWORD: "x" },
      /a bind password needs --ldap-bind-dn/,
    ],
    [
      "the password twice",
      [
        "--ldap-url",
        "ldap://h",
        "--ldap-base",
        "dc=x",
        "--ldap-bind-dn",
        "cn=s",
        "--ldap-bind-password-file",
        "/pw",
        "host",
      ],
      { POPPASS_LDAP_BIND_PASSWORD: "x" },
      /give the password once/,
    ],
  ];
  for (const [name, args, vars, message] of rows) {
    assert.throws(
      () => parse(args, vars),
      (e) => e instanceof UsageError && message.test(e.message),
      name,
    );
  }
});

Deno.test("main.ts: LDAP configuration errors exit 100 with one log line; unreadable files too", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ldap-config-" });
  try {
    const cases: [string[], RegExp][] = [
      [
        ["--ldap-url", "ldap://127.0.0.1:1", "--passwd-file", "/x", "h"],
        /two stores/,
      ],
      [[
        "--ldap-url",
        "ldaps://127.0.0.1:1",
        "--ldap-ca",
        `${dir}/missing.pem`,
        "--ldap-user-dn",
        DN,
        "h",
      ], /cannot read --ldap-ca ".*missing\.pem"/],
      [[
        "--ldap-url",
        "ldap://127.0.0.1:1",
        "--ldap-base",
        "dc=x",
        "--ldap-bind-dn",
        "cn=s",
        "--ldap-bind-password-file",
        `${dir}/missing`,
        "h",
      ], /cannot read --ldap-bind-password-file/],
    ];
    cases.push([[
      "--ldap-url",
      "ldap://127.0.0.1:1",
      "--ldap-user-dn",
      DN,
      "h",
    ], /NODE_DEBUG names ldapts: its debug log would print passwords/]);
    for (const [args, message] of cases) {
      const nodeDebug = /NODE_DEBUG/.test(message.source)
        ? { NODE_DEBUG: "net,ldapts" }
        : {};
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", MAIN, ...args],
        cwd: ROOT,
        env: { ...baseEnv(), ...nodeDebug },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(30_000),
      }).output();
      const log = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 100, log);
      assert.match(log, message);
      assert.equal(
        new TextDecoder().decode(out.stdout),
        "500 Server configuration error, see the server log.\r\n",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RFC 4514 DN values and RFC 4515 filter values are escaped octet by octet", () => {
  const rows: [string | Uint8Array, string, string][] = [
    ["alice", "alice", "alice"],
    ["a,ou=x", "a\\,ou\\=x", "a,ou=x"],
    ['a+b"c;d<e>f\\g', 'a\\+b\\"c\\;d\\<e\\>f\\\\g', 'a+b"c;d<e>f\\5cg'],
    ["#lead", "\\#lead", "#lead"],
    [" both ", "\\ both\\ ", " both "],
    ["in side", "in side", "in side"],
    ["*)(uid=*", "*)(uid\\=*", "\\2a\\29\\28uid=\\2a"],
    ["nul\0", "nul\\00", "nul\\00"],
    ["é", "\\c3\\a9", "é"],
    [new Uint8Array([0xff, 0x0a, 0x7f]), "\\ff\\0a\\7f", "\\ff\\0a\\7f"],
  ];
  for (const [input, dn, filter] of rows) {
    const bytes = typeof input === "string" ? enc(input) : input;
    assert.equal(escapeDnValue(bytes), dn, String(input));
    assert.equal(escapeFilterValue(bytes), filter, String(input));
  }
});

Deno.test("templates: %u %n %d %%, empty parts refuse the name", () => {
  const parts = nameParts(enc("bob@example.org"));
  assert.equal(
    fillTemplate("uid=%n,ou=%d,x=%u,p=%%", parts, escapeDnValue),
    "uid=bob,ou=example.org,x=bob@example.org,p=%",
  );
  assert.equal(
    fillTemplate("(mail=%u)", nameParts(enc("a@b@c")), escapeFilterValue),
    "(mail=a@b@c)",
  );
  assert.equal(
    fillTemplate("uid=%n", nameParts(enc("a@b@c")), escapeDnValue),
    "uid=a",
  );
  assert.equal(
    fillTemplate("uid=%n", nameParts(enc("@x")), escapeDnValue),
    undefined,
  );
  assert.equal(
    fillTemplate("dc=%d", nameParts(enc("bob")), escapeDnValue),
    undefined,
  );
  assert.equal(templateProblem("uid=%n"), undefined);
  assert.equal(templateProblem("uid=%%n"), "it must contain %u, %n or %d");
  assert.equal(
    templateProblem("uid=%x%n"),
    "only %u, %n, %d and %% may follow a %",
  );
});

Deno.test("the Password Modify request value is the RFC 3062 SEQUENCE", () => {
  assert.deepEqual(
    [...passwordModifyValue(enc("old"), enc("new!"))],
    [0x30, 11, 0x81, 3, ...enc("old"), 0x82, 4, ...enc("new!")],
  );
  // Long forms: 200 octets (0x81 0xc8) and a body over 255 (0x82).
  const old = new Uint8Array(200).fill(0x61);
  const value = passwordModifyValue(old, old);
  assert.deepEqual([...value.subarray(0, 7)], [
    0x30,
    0x82,
    0x01,
    0x96,
    0x81,
    0x81,
    0xc8,
  ]);
  assert.equal(value.length, 4 + 2 * (3 + 200));
});
