/**
 * Every scheme of issue 12 against hashes made by the reference tools
 * (`doveadm pw`, `mkpasswd`, python3's crypt), verified through the facade
 * (lib/hash/mod.ts: the hash workers, with libcrypt and libsodium through
 * FFI): pinned vectors always, and freshly generated ones when the tools are
 * installed.
 */

import assert from "node:assert/strict";
import { closeHashPool, verify } from "../../lib/hash/mod.ts";
import { latin1Decode } from "../../lib/hash/octets.ts";
import { needs } from "../support/tools.ts";

const SCRIPT = new URL("../support/fixtures/hash_vectors.sh", import.meta.url);
const PINNED = new URL("../support/fixtures/hash_vectors.txt", import.meta.url);
const APT = "apt-get install -y dovecot-core whois python3";

const utf8 = (text: string) => new TextEncoder().encode(text);
const PASSWORDS: Readonly<Record<string, Uint8Array>> = {
  umlaut: utf8("pässwörd"),
  symbols: utf8("a:b $c{d}\\e"),
};

/** "NAME<TAB>HASH" lines; the hash as latin1, one char per file octet. */
function parse(bytes: Uint8Array): Array<[string, string]> {
  return latin1Decode(bytes).split("\n").filter((l) => l !== "").map((l) => {
    const [name, hash] = l.split("\t");
    return [name!, hash!];
  });
}

/** What a vector is, for the step name: scheme or crypt id, never the hash. */
const label = (hash: string) =>
  /^\{[^}]+\}(?:\$[^$]+\$)?/.exec(hash)?.[0] ?? /^\$[^$]+\$/.exec(hash)?.[0] ??
    hash.slice(0, 3);

async function checkAll(t: Deno.TestContext, vectors: Array<[string, string]>) {
  for (const [name, hash] of vectors) {
    const other = name === "umlaut" ? "symbols" : "umlaut";
    await t.step(`${name} ${label(hash)}`, async () => {
      assert.deepEqual(await verify(hash, PASSWORDS[name]!), { kind: "match" });
      assert.deepEqual(await verify(hash, PASSWORDS[other]!), {
        kind: "mismatch",
      });
    });
  }
}

// The schemes issue 12 names, each of which must be among the vectors.
const REQUIRED = [
  "{SHA512-CRYPT}",
  "{SHA256-CRYPT}",
  "{BLF-CRYPT}$2y$",
  "$2a$",
  "$2b$",
  "$2y$",
  "{ARGON2I}",
  "{ARGON2ID}",
  "{MD5-CRYPT}",
  "{SSHA}",
  "{SSHA256}",
  "{SSHA512}",
  "{SHA}",
  "{SHA256}",
  "{SHA512}",
  "{SMD5}",
  "{PLAIN-MD5}",
  "{MD5}$1$",
  "{PBKDF2}",
  "{CRYPT}",
  "$1$",
  "$5$",
  "$6$",
  "$y$",
  "{CRYPT}$y$",
  "{PLAIN}",
  "{CLEAR}",
  "{SHA.HEX}",
  "{SSHA.B64}",
  "{PLAIN.B64}",
  "{PLAIN.HEX}",
  "{SHA512-CRYPT.B64}",
];

Deno.test("pinned vectors cover every scheme of issue 12", async () => {
  const vectors = parse(await Deno.readFile(PINNED));
  for (const prefix of REQUIRED) {
    assert.ok(
      vectors.some(([, hash]) => hash.startsWith(prefix)),
      `no vector starts with ${prefix}`,
    );
  }
});

Deno.test("pinned reference vectors verify through the hash workers", async (t) => {
  try {
    await checkAll(t, parse(await Deno.readFile(PINNED)));
  } finally {
    closeHashPool();
  }
});

const tools = !needs(import.meta.url, "doveadm", "mkpasswd", "python3").ignore;
Deno.test({
  name: `fresh vectors from doveadm, mkpasswd and python3 verify${
    tools ? "" : ` (ignored: run ${APT})`
  }`,
  ignore: !tools,
  async fn(t) {
    const out = await new Deno.Command("sh", {
      args: [SCRIPT.pathname],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    try {
      await checkAll(t, parse(out.stdout));
    } finally {
      closeHashPool();
    }
  },
});
