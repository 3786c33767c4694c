/**
 * SHA-crypt (lib/hash/shacrypt.ts): the test vectors published with
 * Drepper's specification, exact; then random passwords, non-UTF-8 octets
 * included, against openssl, mkpasswd and doveadm. A step whose tool is
 * missing is ignored, and says so.
 */

import assert from "node:assert/strict";
import {
  parseShaCrypt,
  shaCrypt,
  type ShaVariant,
} from "../../lib/hash/shacrypt.ts";
import { verifyPassword } from "../../lib/hash/schemes.ts";
import { hex } from "../support/bytes.ts";
import { needs } from "../support/tools.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
/** One char per octet, as the passwd-file reader and the tools see them. */
const latin1 = (bytes: Uint8Array) => String.fromCharCode(...bytes);

const OPENSSL = !needs(import.meta.url, "openssl").ignore;
const MKPASSWD = !needs(import.meta.url, "mkpasswd").ignore;
const DOVEADM = !needs(import.meta.url, "doveadm").ignore;
const missing = (present: boolean, tool: string) =>
  present ? "" : ` (ignored: ${tool} not installed)`;

/**
 * Take a crypt(3) setting apart as the specification does: `$5$` or `$6$`,
 * an optional `rounds=N$`, then the salt up to the next `$` or the end.
 */
function setting(text: string) {
  const m = /^\$([56])\$(?:rounds=(\d+)\$)?([^$]*)/.exec(text)!;
  const variant: ShaVariant = m[1] === "5" ? 256 : 512;
  return { variant, rounds: m[2] ? Number(m[2]) : undefined, salt: m[3]! };
}

// [setting, password, expected]: the specification's own test vectors.
const LONG_TEXT = "a very much longer text to encrypt.  This one even " +
  "stretches over morethan one line.";
const VECTORS: ReadonlyArray<readonly [string, string, string]> = [
  [
    "$5$saltstring",
    "Hello world!",
    "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
  ],
  [
    "$5$rounds=10000$saltstringsaltstring",
    "Hello world!",
    "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2." +
    "opqey6IcA",
  ],
  [
    "$5$rounds=5000$toolongsaltstring",
    "This is just a test",
    "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8" +
    "mGRcvxa5",
  ],
  [
    "$5$rounds=1400$anotherlongsaltstring",
    LONG_TEXT,
    "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12" +
    "oP84Bnq1",
  ],
  [
    "$5$rounds=77777$short",
    "we have a short salt string but not a short password",
    "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
  ],
  [
    "$5$rounds=123456$asaltof16chars..",
    "a short string",
    "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/" +
    "cZKmF/wJvD",
  ],
  [
    "$5$rounds=10$roundstoolow",
    "the minimum number is still observed",
    "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL97" +
    "2bIC",
  ],
  [
    "$6$saltstring",
    "Hello world!",
    "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu" +
    "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
  ],
  [
    "$6$rounds=10000$saltstringsaltstring",
    "Hello world!",
    "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sb" +
    "HbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
  ],
  [
    "$6$rounds=5000$toolongsaltstring",
    "This is just a test",
    "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQ" +
    "zQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
  ],
  [
    "$6$rounds=1400$anotherlongsaltstring",
    LONG_TEXT,
    "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wP" +
    "vMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
  ],
  [
    "$6$rounds=77777$short",
    "we have a short salt string but not a short password",
    "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0g" +
    "ge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
  ],
  [
    "$6$rounds=123456$asaltof16chars..",
    "a short string",
    "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwc" +
    "elCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
  ],
  [
    "$6$rounds=10$roundstoolow",
    "the minimum number is still observed",
    "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1x" +
    "hLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
  ],
];

Deno.test("shaCrypt() gives the specification's test vectors exactly", async (t) => {
  for (const [set, password, expected] of VECTORS) {
    await t.step(`${set} with ${JSON.stringify(password)}`, async () => {
      const { variant, rounds, salt } = setting(set);
      assert.equal(
        await shaCrypt(utf8(password), salt, rounds, variant),
        expected,
      );
      // The stored result parses, verifies, and a wrong password does not.
      assert.ok(parseShaCrypt(expected));
      assert.deepEqual(await verifyPassword(utf8(password), expected), {
        kind: "match",
      });
      assert.deepEqual(await verifyPassword(utf8(password + "!"), expected), {
        kind: "mismatch",
      });
    });
  }
});

Deno.test("parseShaCrypt() takes stored hashes apart, and only those", async (t) => {
  const [h43, h86] = ["a".repeat(43), "b".repeat(86)];
  await t.step("the forms crypt(3) writes", () => {
    assert.deepEqual(parseShaCrypt(`$5$salt$${h43}`), {
      variant: 256,
      rounds: undefined,
      salt: "salt",
      hash: h43,
    });
    assert.deepEqual(parseShaCrypt(`$6$rounds=10$./09AZaz$${h86}`), {
      variant: 512,
      rounds: 10, // as written: clamping is shaCrypt()'s business
      salt: "./09AZaz",
      hash: h86,
    });
    assert.deepEqual(parseShaCrypt(`$6$$${h86}`)?.salt, "");
    assert.deepEqual(
      parseShaCrypt(`$5$${"s".repeat(16)}$${h43}`)?.salt.length,
      16,
    );
  });
  await t.step("anything else is undefined", () => {
    for (
      const bad of [
        `$5$salt$${h86}`, // the other variant's length
        `$6$salt$${h43}`,
        `$5$salt$${h43}a`,
        `$5$${"s".repeat(17)}$${h43}`, // salt too long
        `$5$sa:t$${h43}`, // not the crypt alphabet
        `$5$rounds=$salt$${h43}`,
        `$5$rounds=12345678901$salt$${h43}`, // more than 10 digits
        `$5$rounds=-5$salt$${h43}`,
        `$7$salt$${h43}`,
        `$5$salt$${h43}\n`,
        `{SHA256-CRYPT}$5$salt$${h43}`,
        "",
      ]
    ) assert.equal(parseShaCrypt(bad), undefined, bad);
  });
});

Deno.test("shaCrypt() arguments: salt, rounds, and the caller's buffer", async (t) => {
  const pw = utf8("pw");
  await t.step("rounds only written when given; clamped to 1000", async () => {
    const plain = await shaCrypt(pw, "abc", undefined, 256);
    assert.match(plain, /^\$5\$abc\$[./0-9A-Za-z]{43}$/);
    const explicit = await shaCrypt(pw, "abc", 5000, 256);
    assert.equal(explicit, plain.replace("$abc$", "$rounds=5000$abc$"));
    assert.equal(
      await shaCrypt(pw, "abc", -3, 512),
      await shaCrypt(pw, "abc", 1000, 512),
    );
  });
  await t.step("bad salt chars and rounds are RangeErrors", async () => {
    await assert.rejects(shaCrypt(pw, "a$b", undefined, 512), RangeError);
    await assert.rejects(shaCrypt(pw, "a\u0100", undefined, 512), RangeError);
    await assert.rejects(shaCrypt(pw, "ab", 1000.5, 512), RangeError);
    await assert.rejects(shaCrypt(pw, "ab", NaN, 256), RangeError);
    // A "$" after the 16th char is cut off with the rest, as in crypt(3).
    assert.match(
      await shaCrypt(pw, "0123456789abcdef$x", undefined, 256),
      /^\$5\$0123456789abcdef\$/,
    );
  });
  await t.step("a latin1 salt char is one octet", async () => {
    // Not in the crypt alphabet, so only shaCrypt() itself accepts it.
    const out = await shaCrypt(pw, "\u00e9t\u00e9", undefined, 512);
    assert.ok(out.startsWith("$6$\u00e9t\u00e9$"));
  });
  await t.step(
    "concurrent calls share the hashers without mixing",
    async () => {
      const jobs = Array.from(
        { length: 6 },
        (_, i) => [utf8(`password ${i}`), i % 2 ? 256 : 512] as const,
      );
      const together = await Promise.all(
        jobs.map(([p, v]) => shaCrypt(p, "salty", 1000, v)),
      );
      for (const [i, [p, v]] of jobs.entries()) {
        assert.equal(together[i], await shaCrypt(p, "salty", 1000, v));
      }
    },
  );
  await t.step("the caller's password is left as it was", async () => {
    const mine = Uint8Array.from([0xff, 1, 2, 3]);
    await shaCrypt(mine.subarray(1), "s", 1000, 512);
    assert.deepEqual([...mine], [0xff, 1, 2, 3]);
  });
});

// ---- Random passwords against the tools ---------------------------------

const SALT_CHARS =
  "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const randomInt = (n: number) =>
  crypto.getRandomValues(new Uint32Array(1))[0]! % n;
const randomSalt = (length: number) =>
  Array.from({ length }, () => SALT_CHARS[randomInt(64)]).join("");

/**
 * `length` random octets, none of `avoid` (the tools end or trim the
 * password at NUL, CR or LF), with 0xff (never UTF-8) at a random place.
 */
function randomPassword(length: number, avoid = [0x00, 0x0a, 0x0d]) {
  const pw = crypto.getRandomValues(new Uint8Array(length));
  for (let i = 0; i < length; i++) {
    while (avoid.includes(pw[i]!)) pw[i] = randomInt(256);
  }
  if (length > 0) pw[randomInt(length)] = 0xff;
  return pw;
}

/** Block edges of both digests (32, 64, 128), some around them, one long. */
const LENGTHS = [1, 2, 5, 16, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200];

/** Run `cmd` with `input` on stdin; its stdout (latin1) without the newline. */
async function run(cmd: string[], input: Uint8Array): Promise<string> {
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `${cmd.join(" ")}: ${err}`);
  return latin1(stdout).replace(/\n$/, "");
}

/** Our result for a whole `$5$…`/`$6$…` string's setting, and the check. */
async function agrees(foreign: string, pw: Uint8Array, what: string) {
  const parsed = parseShaCrypt(foreign);
  assert.ok(parsed, `${what}: unparsable ${foreign}`);
  const ours = await shaCrypt(pw, parsed.salt, parsed.rounds, parsed.variant);
  assert.equal(ours, foreign, `${what}, password ${hex(pw)}`);
}

Deno.test(
  `shaCrypt() agrees with openssl passwd -5/-6 on random passwords${
    missing(OPENSSL, "openssl")
  }`,
  {
    ignore: !OPENSSL,
  },
  async (t) => {
    for (const variant of [256, 512] as const) {
      await t.step(`openssl passwd -${variant === 256 ? 5 : 6}`, async () => {
        for (const [i, length] of LENGTHS.entries()) {
          const pw = randomPassword(length);
          // Every other case sets rounds, which openssl takes in the salt.
          const salt = (i % 2 ? `rounds=${1000 + randomInt(4000)}$` : "") +
            randomSalt(i === 3 ? 20 : 1 + randomInt(16));
          // -stdin reads one line: the LF we add ends it and is not hashed.
          const foreign = await run(
            ["openssl", "passwd", `-${variant === 256 ? 5 : 6}`, "-stdin"]
              .concat(["-salt", salt]),
            Uint8Array.from([...pw, 0x0a]),
          );
          await agrees(foreign, pw, `openssl -salt ${salt}`);
        }
      });
    }
  },
);

Deno.test(
  `shaCrypt() agrees with mkpasswd -m sha-256/sha-512 -R N${
    missing(MKPASSWD, "mkpasswd")
  }`,
  {
    ignore: !MKPASSWD,
  },
  async (t) => {
    for (const method of ["sha-256", "sha-512"]) {
      await t.step(`mkpasswd -m ${method}`, async () => {
        for (const length of [0, ...LENGTHS]) {
          const pw = randomPassword(length);
          const rounds = String(1000 + randomInt(11000));
          const salt = randomSalt(8 + randomInt(9));
          const foreign = await run(
            ["mkpasswd", "-m", method, "-R", rounds, "-S", salt, "--stdin"],
            Uint8Array.from([...pw, 0x0a]),
          );
          await agrees(foreign, pw, `mkpasswd -R ${rounds} -S ${salt}`);
        }
      });
    }
  },
);

Deno.test(
  `doveadm pw SHA512-CRYPT/SHA256-CRYPT hashes verify${
    missing(DOVEADM, "doveadm")
  }`,
  {
    ignore: !DOVEADM,
  },
  async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "shacrypt" });
    try {
      for (const scheme of ["SHA512-CRYPT", "SHA256-CRYPT"]) {
        await t.step(`doveadm pw -s ${scheme}`, async () => {
          for (const [i, length] of LENGTHS.entries()) {
            // doveadm takes the password as an argument: from a file through
            // sh, so that its octets arrive unchanged (CR is fine there).
            const pw = randomPassword(length, [0x00, 0x0a]);
            await Deno.writeFile(`${dir}/pw`, pw);
            const rounds = i % 3 ? "" : ` -r ${1000 + randomInt(9000)}`;
            const line = `doveadm pw -s ${scheme}${rounds} -p "$(cat "$1")"`;
            const stored = await run(
              ["/bin/sh", "-c", line, "sh", `${dir}/pw`],
              new Uint8Array(),
            );
            assert.ok(stored.startsWith(`{${scheme}}$`), stored);
            await agrees(
              stored.slice(scheme.length + 2),
              pw,
              `doveadm${rounds}`,
            );
            assert.deepEqual(await verifyPassword(pw, stored), {
              kind: "match",
            });
            const wrong = Uint8Array.from([...pw, 0x21]);
            assert.deepEqual(await verifyPassword(wrong, stored), {
              kind: "mismatch",
            });
          }
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
