/**
 * Password schemes against independent tools: hashes made by doveadm,
 * openssl and mkpasswd must verify, and hashes we write must pass
 * `doveadm pw -t`. A step whose tool is missing is ignored, and says so.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  burnTime,
  constantTimeEqual,
  costClass,
  DUMMY_HASHES,
  hashPassword,
  isClearText,
  splitScheme,
  verifyPassword,
  WRITE_SCHEMES,
} from "../../lib/hash/schemes.ts";
import { needs } from "../support/tools.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

const DOVEADM = !needs(import.meta.url, "doveadm").ignore;
const OPENSSL = !needs(import.meta.url, "openssl").ignore;
const MKPASSWD = !needs(import.meta.url, "mkpasswd").ignore;

/**
 * Run a shell line with the password as raw octets in "$PW_FILE"'s content,
 * so that non-UTF-8 passwords reach the tool unchanged. Returns exit code
 * and stdout (latin1) without the final newline.
 */
async function tool(
  line: string,
  password: Uint8Array,
): Promise<{ code: number; out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "pwtool" });
  try {
    await Deno.writeFile(`${dir}/pw`, password);
    const { code, stdout } = await new Deno.Command("/bin/sh", {
      args: ["-c", `PW="$(cat "$1")"; ${line}`, "sh", `${dir}/pw`],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    // latin1, one char per octet, is how the passwd-file reader sees a field.
    return {
      code,
      out: Buffer.from(stdout).toString("latin1").replace(/\n$/, ""),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const PASSWORDS: ReadonlyArray<readonly [string, Uint8Array]> = [
  ["an ASCII", utf8("correct horse battery")],
  ["a UTF-8", utf8("pässwörd ☃")],
  ["a non-UTF-8", new Uint8Array([0xff, 0xfe, 0x61, 0xe9, 0x7a])],
];

// [description, tool, shell line using "$PW"]
const FOREIGN: ReadonlyArray<readonly [string, boolean, string]> = [
  ["doveadm SHA512-CRYPT", DOVEADM, `doveadm pw -s SHA512-CRYPT -p "$PW"`],
  [
    "doveadm SHA512-CRYPT rounds=10000",
    DOVEADM,
    `doveadm pw -s SHA512-CRYPT -r 10000 -p "$PW"`,
  ],
  ["doveadm SHA256-CRYPT", DOVEADM, `doveadm pw -s SHA256-CRYPT -p "$PW"`],
  ["doveadm BLF-CRYPT ($2y$)", DOVEADM, `doveadm pw -s BLF-CRYPT -p "$PW"`],
  ["doveadm ARGON2I", DOVEADM, `doveadm pw -s ARGON2I -p "$PW"`],
  ["doveadm ARGON2ID", DOVEADM, `doveadm pw -s ARGON2ID -p "$PW"`],
  ["doveadm PLAIN", DOVEADM, `doveadm pw -s PLAIN -p "$PW"`],
  [
    "openssl passwd -6 (bare)",
    OPENSSL,
    `printf %s "$PW" | openssl passwd -6 -stdin`,
  ],
  [
    "openssl passwd -5 (bare)",
    OPENSSL,
    `printf %s "$PW" | openssl passwd -5 -stdin`,
  ],
  [
    "openssl passwd -6 as {SHA512-CRYPT}",
    OPENSSL,
    `printf {SHA512-CRYPT}; printf %s "$PW" | openssl passwd -6 -stdin`,
  ],
  ["mkpasswd sha-512 (bare)", MKPASSWD, `mkpasswd -m sha-512 "$PW"`],
  ["mkpasswd bcrypt ($2b$)", MKPASSWD, `mkpasswd -m bcrypt -R 5 "$PW"`],
  [
    "mkpasswd bcrypt-a ($2a$) as {BLF-CRYPT}",
    MKPASSWD,
    `printf {BLF-CRYPT}; mkpasswd -m bcrypt-a -R 5 "$PW"`,
  ],
];

const EXPECTED_SHAPE: Record<string, RegExp> = {
  "ARGON2ID":
    /^\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/,
  "SHA512-CRYPT": /^\{SHA512-CRYPT\}\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}$/,
  "BLF-CRYPT": /^\{BLF-CRYPT\}\$2y\$10\$[./0-9A-Za-z]{53}$/,
};

Deno.test("verifyPassword() accepts hashes made by independent tools", async (t) => {
  for (const [what, present, line] of FOREIGN) {
    // Argon2 costs ~0.5 s per verify here: one password kind is enough.
    const passwords = /ARGON2/.test(what) ? PASSWORDS.slice(1, 2) : PASSWORDS;
    for (const [kind, password] of passwords) {
      await t.step({
        name: `${what} with ${kind} password${
          present ? "" : " (ignored: tool not installed)"
        }`,
        ignore: !present,
        fn: async () => {
          const { code, out } = await tool(line, password);
          assert.equal(code, 0);
          assert.deepEqual(await verifyPassword(password, out), {
            kind: "match",
          });
          const wrong = Uint8Array.from([...password, 0x21]);
          assert.deepEqual(await verifyPassword(wrong, out), {
            kind: "mismatch",
          });
        },
      });
    }
  }
});

Deno.test("hashPassword() writes hashes that doveadm accepts", async (t) => {
  for (const scheme of WRITE_SCHEMES) {
    const cases = scheme === "ARGON2ID" ? PASSWORDS.slice(1, 2) : PASSWORDS;
    for (const [kind, password] of cases) {
      const stored = await hashPassword(password, scheme);
      await t.step(
        `${scheme} with ${kind} password: shape, own verify`,
        async () => {
          assert.match(stored, EXPECTED_SHAPE[scheme]!);
          assert.deepEqual(await verifyPassword(password, stored), {
            kind: "match",
          });
        },
      );
      await t.step({
        name:
          `${scheme} with ${kind} password: doveadm pw -t accepts it, and not a wrong one${
            DOVEADM ? "" : " (ignored: doveadm not installed)"
          }`,
        ignore: !DOVEADM,
        fn: async () => {
          const check = `doveadm pw -t '${stored}' -p "$PW"`;
          assert.equal((await tool(check, password)).code, 0);
          assert.notEqual((await tool(check, utf8("wrong password"))).code, 0);
        },
      });
    }
  }
});

Deno.test("verifyPassword() knows the clear-text and bare crypt forms", async (t) => {
  const table: ReadonlyArray<readonly [string, string, string]> = [
    ["{PLAIN}pw", "pw", "match"],
    ["{plain}pw", "pw", "match"],
    ["{CLEAR}pw", "pw", "match"],
    ["{CLEARTEXT}pw", "pw", "match"],
    ["{PLAIN}pw", "pw ", "mismatch"],
    ["{PLAIN}pw", "PW", "mismatch"],
    ["{PLAIN}", "", "match"],
    [
      "$6$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5.",
      "pw",
      "match",
    ],
    [
      "{CRYPT}$6$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5.",
      "pw",
      "match",
    ],
    [
      "$6$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5.",
      "pX",
      "mismatch",
    ],
  ];
  for (const [stored, password, kind] of table) {
    await t.step(
      `${stored.slice(0, 24)}… with ${JSON.stringify(password)} is a ${kind}`,
      async () => {
        assert.deepEqual(await verifyPassword(utf8(password), stored), {
          kind,
        });
      },
    );
  }
  await t.step("a latin1 {PLAIN} field matches the same octets", async () => {
    assert.deepEqual(
      await verifyPassword(new Uint8Array([0xe9, 0xff]), "{PLAIN}\u00e9\u00ff"),
      { kind: "match" },
    );
  });
});

Deno.test("verifyPassword() on the main thread calls what it cannot judge unsupported", async (t) => {
  const table: ReadonlyArray<readonly [string, string]> = [
    ["{SSHA512}abcd", "malformed digest hash"],
    ["{CRAM-MD5}abcd", "unsupported scheme {CRAM-MD5}"],
    ["{SHA.HEX}abcd", "malformed digest hash"],
    ["{PLAIN.B64}a?b", "{PLAIN.B64} hash is not B64"],
    // On the main thread there is no libcrypt (FFI runs in hash workers).
    [
      "$1$abc$9oLCymqkbyGdLDqaXNrQa/",
      "$1$ hashes need the system's libcrypt (--allow-ffi)",
    ],
    ["$y$j9T$abc$def", "$y$ hashes need the system's libcrypt (--allow-ffi)"],
    [
      "no-hash-here",
      "(no $id$) hashes need the system's libcrypt (--allow-ffi)",
    ],
    ["$y$jHU$abc$def", "yescrypt memory too high"],
    ["{PBKDF2}$1$salt$9999999$" + "0".repeat(40), "PBKDF2 rounds too high"],
    ["{SHA512-CRYPT}$6$abc$short", "malformed SHA-crypt hash"],
    ["$6$rounds=9999999$abc$" + "a".repeat(86), "SHA-crypt rounds too high"],
    ["$2y$31$" + "a".repeat(53), "bcrypt cost too high"],
    ["$2y$03$" + "a".repeat(53), "malformed bcrypt hash"],
    [
      "{ARGON2ID}$argon2id$v=16$m=65536,t=3,p=1$" + "a".repeat(22) + "$" +
      "b".repeat(43),
      "malformed or unsupported argon2 hash",
    ],
    [
      "{ARGON2ID}$argon2id$v=19$m=4194304,t=3,p=1$" + "a".repeat(22) + "$" +
      "b".repeat(43),
      "argon2 parameters too high",
    ],
  ];
  for (const [stored, reason] of table) {
    await t.step(`${stored.slice(0, 30)}… → ${reason}`, async () => {
      assert.deepEqual(await verifyPassword(utf8("pw"), stored), {
        kind: "unsupported",
        reason,
      });
    });
  }
});

Deno.test("bcrypt uses only the first 72 octets, like crypt_blowfish", {
  ignore: !MKPASSWD,
}, async () => {
  const long = utf8("x".repeat(80));
  const { out } = await tool(`mkpasswd -m bcrypt -R 5 "$PW"`, long);
  assert.deepEqual(await verifyPassword(long, out), { kind: "match" });
  assert.deepEqual(await verifyPassword(long.subarray(0, 72), out), {
    kind: "match",
  });
  assert.deepEqual(await verifyPassword(long.subarray(0, 71), out), {
    kind: "mismatch",
  });
});

Deno.test("small helpers", async (t) => {
  await t.step(
    "splitScheme() upper-cases the scheme and defaults to CRYPT",
    () => {
      assert.deepEqual(splitScheme("{blf-crypt}$2y$x"), {
        scheme: "BLF-CRYPT",
        hash: "$2y$x",
      });
      assert.deepEqual(splitScheme("$6$a$b"), {
        scheme: "CRYPT",
        hash: "$6$a$b",
      });
      assert.deepEqual(splitScheme("{unclosed"), {
        scheme: "CRYPT",
        hash: "{unclosed",
      });
    },
  );
  await t.step("isClearText() names PLAIN, CLEAR and CLEARTEXT only", () => {
    assert.deepEqual(
      ["{PLAIN}a", "{clear}a", "{CLEARTEXT}a", "{SHA512-CRYPT}$6$", "plain"]
        .map(isClearText),
      [true, true, true, false, false],
    );
  });
  await t.step("constantTimeEqual() compares length and every octet", () => {
    const eq = (a: number[], b: number[]) =>
      constantTimeEqual(new Uint8Array(a), new Uint8Array(b));
    assert.deepEqual([
      eq([], []),
      eq([1, 2], [1, 2]),
      eq([1, 2], [1, 3]),
      eq([1], [1, 1]),
      eq([1], []),
    ], [
      true,
      true,
      false,
      false,
      false,
    ]);
  });
  await t.step("hashPassword() refuses an empty password", async () => {
    await assert.rejects(
      hashPassword(new Uint8Array(), "SHA512-CRYPT"),
      RangeError,
    );
  });
});

Deno.test("dummy hashes cost what a real hash of the same scheme costs", async (t) => {
  const prefix: Record<string, string> = {
    "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$",
    "SHA512-CRYPT": "{SHA512-CRYPT}$6$",
    "BLF-CRYPT": "{BLF-CRYPT}$2y$10$",
  };
  for (const scheme of WRITE_SCHEMES) {
    await t.step(
      `${scheme}: same parameters as hashPassword(), never matches`,
      async () => {
        const dummy = DUMMY_HASHES[scheme];
        assert.match(dummy, EXPECTED_SHAPE[scheme]!);
        assert.ok(dummy.startsWith(prefix[scheme]!));
        if (scheme !== "ARGON2ID") {
          assert.deepEqual(await verifyPassword(utf8("guess"), dummy), {
            kind: "mismatch",
          });
        }
        await burnTime(utf8("guess"), scheme);
      },
    );
  }
});

Deno.test("costClass() keeps the scheme and cost parameters, never salt or hash", () => {
  const table: ReadonlyArray<readonly [string, string]> = [
    [
      "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA",
      "ARGON2ID $argon2id$v=19$m=65536,t=3,p=1",
    ],
    ["{SHA512-CRYPT}$6$salt$hash", "SHA512-CRYPT $6"],
    ["$6$rounds=9000$salt$hash", "CRYPT $6$rounds=9000"],
    ["{BLF-CRYPT}$2y$10$saltandhash", "BLF-CRYPT $2y$10"],
    ["$y$j9T$salt$hash", "CRYPT $y$j9T"],
    ["{PBKDF2}$1$salt$5000$hex", "PBKDF2 $1$5000"],
    ["{SSHA}abcd", "SSHA"],
    ["{plain}secret", "PLAIN"],
  ];
  for (const [stored, key] of table) assert.equal(costClass(stored), key);
});

// Dovecot reads a digest of the wrong length in the default encoding in
// the other one: hex where base64 is the default, and the reverse.
Deno.test("digests in the other encoding verify as Dovecot reads them", async () => {
  const sha1Hex = "1a91d62f7ca67399625a4368a6ab5d4a3baa6073"; // SHA1("pw")
  const md5B64 = "j+TBFFEoHAlKZXjm3b9e7Q=="; // MD5("pw")
  for (
    const stored of [
      `{SHA}${sha1Hex}`,
      `{SHA.HEX}${sha1Hex}`,
      `{PLAIN-MD5}${md5B64}`,
      `{PLAIN-MD5.B64}${md5B64}`,
      `{LDAP-MD5}${md5B64}`,
      `{MD5}${md5B64}`,
    ]
  ) {
    assert.deepEqual(await verifyPassword(utf8("pw"), stored), {
      kind: "match",
    }, stored);
    assert.deepEqual(await verifyPassword(utf8("pW"), stored), {
      kind: "mismatch",
    }, stored);
  }
});
