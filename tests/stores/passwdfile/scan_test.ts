/**
 * scanForUser(): finds what parsePasswdFile() finds, reading in chunks
 * (issue 18.3), with lines split across chunk boundaries, and the same
 * errors.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { PASSWD_READ_SIZE } from "../../../lib/common/limits.ts";
import {
  findEntry,
  parsePasswdFile,
} from "../../../lib/stores/passwdfile/file.ts";
import { scanForUser } from "../../../lib/stores/passwdfile/scan.ts";

const bin = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));

async function withFile(
  content: Uint8Array,
  fn: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "passwdscan" });
  try {
    await Deno.writeFile(`${dir}/passwd`, content);
    await fn(`${dir}/passwd`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CONTENT = [
  "# comment\n",
  "\n",
  "alice:{PLAIN}alicepw:1000:1000::/home/alice\n",
  "bob@example.org:{PLAIN}bobpw:1001:1001:Bob \xe9\xff:/home/bob\r\n",
  "  \t\n",
  "carol:{PLAIN}carolpw\r\n",
  ":{PLAIN}nobody\n",
  "d\xe9ve:{PLAIN}davepw",
].join("");

Deno.test("scanForUser() finds the entries parsePasswdFile() finds", async (t) => {
  // Padding before the users moves every line across chunk boundaries.
  for (
    const pad of [
      0,
      PASSWD_READ_SIZE - 30,
      PASSWD_READ_SIZE - 1,
      3 * PASSWD_READ_SIZE + 7,
    ]
  ) {
    // Comment lines of at most 1,000 octets, `pad` octets in all.
    const lines = Array.from(
      { length: Math.ceil(pad / 1000) },
      (_, i) => "#" + "x".repeat(Math.min(1000, pad - 1000 * i) - 1),
    );
    const content = bin(lines.map((l) => l + "\n").join("") + CONTENT);
    const parsed = parsePasswdFile(content);
    for (
      const user of [
        "alice",
        "bob@example.org",
        "carol",
        "d\xe9ve",
        "nobody",
        "",
        "alic",
      ]
    ) {
      await t.step(`${JSON.stringify(user)} after ${pad} octets`, async () => {
        await withFile(content, async (path) => {
          const scan = await scanForUser(path, bin(user));
          assert.deepEqual(scan.entry, findEntry(parsed, bin(user)));
        });
      });
    }
  }
});

Deno.test("scanForUser() hands every password field to the profiler", async () => {
  await withFile(bin(CONTENT), async (path) => {
    const fields: string[] = [];
    await scanForUser(
      path,
      bin("nobody"),
      (f) => fields.push(Buffer.from(f).toString("latin1")),
    );
    assert.deepEqual(fields, [
      "{PLAIN}alicepw",
      "{PLAIN}bobpw",
      "{PLAIN}carolpw",
      "{PLAIN}davepw",
    ]);
  });
});

Deno.test("scanForUser() errors", async (t) => {
  const table: ReadonlyArray<readonly [string, string, RegExp]> = [
    [
      "a line without ':'",
      "alice:x\nbroken\n",
      /^line 2: no ':' after the user name$/,
    ],
    [
      "a user listed twice",
      "alice:x\nalice:y\n",
      /^the user is listed more than once$/,
    ],
    [
      "an over-long line",
      "alice:" + "x".repeat(200_000) + "\n",
      /^line 1: longer than 65536$/,
    ],
  ];
  for (const [what, content, error] of table) {
    await t.step(what, async () => {
      await withFile(bin(content), async (path) => {
        await assert.rejects(scanForUser(path, bin("alice")), {
          message: error,
        });
      });
    });
  }
  await t.step("a folder", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await assert.rejects(
        scanForUser(dir, bin("alice")),
        /not a regular file|Is a directory/,
      );
    } finally {
      await Deno.remove(dir);
    }
  });
});
