/**
 * `--pam SERVICE` / `POPPASS_PAM` and `--pam-min-uid`: parsing, defaults,
 * and the refusal to mix stores (a `UsageError`, exit 100).
 */

import assert from "node:assert/strict";
import {
  type FileProbe,
  parseInvocation,
  UsageError,
} from "../../../lib/config/config.ts";

const probe: FileProbe = { executable: () => "ok" };
const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

function parse(args: string[], vars: Record<string, string> = {}) {
  const invocation = parseInvocation(args, envOf(vars), probe);
  if (invocation.kind !== "run") throw new Error(invocation.kind);
  return invocation.config;
}

Deno.test("parseInvocation() takes the PAM store from --pam or POPPASS_PAM", async (t) => {
  const rows: [string, string[], Record<string, string>, object][] = [
    ["--pam", ["--pam", "qmail-poppass", "host"], {}, {
      kind: "pam",
      service: "qmail-poppass",
      minUid: 1000,
    }],
    ["POPPASS_PAM and POPPASS_PAM_MIN_UID", ["host"], {
      POPPASS_PAM: "other-svc",
      POPPASS_PAM_MIN_UID: "500",
    }, { kind: "pam", service: "other-svc", minUid: 500 }],
    ["the command line wins", ["--pam=a", "--pam-min-uid", "2000", "host"], {
      POPPASS_PAM: "b",
      POPPASS_PAM_MIN_UID: "500",
    }, { kind: "pam", service: "a", minUid: 2000 }],
    ["PASSWORD_COMMAND is not needed", ["--pam", "p", "host"], {
      PASSWORD_COMMAND: "/x/y",
    }, { kind: "pam", service: "p", minUid: 1000 }],
  ];
  for (const [name, args, vars, backend] of rows) {
    await t.step(
      name,
      () => assert.deepEqual(parse(args, vars).backend, backend),
    );
  }
});

Deno.test("parseInvocation() refuses --pam mixed with another store or wrong values", async (t) => {
  const rows: [string, string[], Record<string, string>, RegExp][] = [
    [
      "--passwd-file",
      ["--pam", "p", "--passwd-file", "/x", "host"],
      {},
      /^--pam and --passwd-file are two stores: choose one$/,
    ],
    [
      "--ldap-url",
      ["--pam", "p", "--ldap-url", "ldap://127.0.0.1", "host"],
      {},
      /^--ldap-url and --pam are two stores: choose one$/,
    ],
    ["POPPASS_PASSWD_FILE", ["--pam", "p", "host"], {
      POPPASS_PASSWD_FILE: "/x",
    }, /^--pam and --passwd-file are two stores: choose one$/],
    [
      "--fd3-helper",
      ["--fd3-helper", "/bin/x", "--pam", "p", "host"],
      {},
      /^--pam and --fd3-helper exclude each other$/,
    ],
    [
      "a checkpassword chain",
      ["--pam", "p", "host", "/bin/checkpassword"],
      {},
      /^--pam replaces the checkpassword chain: give only the hostname$/,
    ],
    [
      "a path for a service",
      ["--pam", "../etc/x", "host"],
      {},
      /^--pam "..\/etc\/x": expected a service name like qmail-poppass$/,
    ],
    [
      "uid 0",
      ["--pam", "p", "--pam-min-uid", "0", "host"],
      {},
      /^--pam-min-uid: expected a whole number from 1 to 4294967295, got "0"$/,
    ],
  ];
  for (const [name, args, vars, pattern] of rows) {
    await t.step(name, () => {
      assert.throws(
        () => parseInvocation(args, envOf(vars), probe),
        (error: unknown) =>
          error instanceof UsageError && pattern.test(error.message),
      );
    });
  }
});
