/**
 * The passwd-file reader and writer: every octet other than the changed
 * password field survives, failures leave the file untouched, concurrent
 * writers do not lose updates, and a writer killed mid-change leaves the
 * old file or the new one, never a mix.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  type Decision,
  findEntry,
  parsePasswdFile,
  type PasswdEntry,
  replacePassword,
  updatePasswdFile,
} from "../../../lib/stores/passwdfile/file.ts";
import { verifyPassword } from "../../../lib/hash/schemes.ts";

/** Octets from a string of chars 0..255 (latin1), so tests can hold any octet. */
const bin = (text: string) => new Uint8Array(Buffer.from(text, "latin1"));
const utf8 = (text: string) => new TextEncoder().encode(text);

const NEW_HASH =
  "{SHA512-CRYPT}$6$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJ" +
  "qOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5."; // "pw", made by openssl passwd -6

// Each line is a case the writer must keep: comment, blank, extra fields,
// non-UTF-8 gecos, CRLF, whitespace-only, a final line without newline.
const LINES = {
  comment: "# passwd-file for example.org\n",
  blank: "\n",
  alice:
    "alice:{PLAIN}alicepw:1000:1000::/home/alice::userdb_quota_rule=*:storage=1G\n",
  bob: "bob@example.org:{PLAIN}bobpw:1001:1001:Bob \xe9\xff:/home/bob\r\n",
  spaces: "  \t\n",
  carol: "carol:{PLAIN}carolpw\r\n",
  noUser: ":{PLAIN}nobody\n",
  comment2: "# trailing comment\r\n",
  dave: "dave:{PLAIN}davepw",
};
const ORIGINAL = Object.values(LINES).join("");

/** ORIGINAL with one user's password field replaced. */
function expected(
  user: keyof typeof LINES,
  field: string,
  old: string,
): Uint8Array {
  const lines = { ...LINES, [user]: LINES[user].replace(old, field) };
  return bin(Object.values(lines).join(""));
}

async function withFile(
  content: Uint8Array,
  fn: (path: string, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "passwdfile" });
  try {
    await Deno.writeFile(`${dir}/passwd`, content, { mode: 0o600 });
    await fn(`${dir}/passwd`, dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const write = (password: string) => (): Promise<Decision> =>
  Promise.resolve({ kind: "write", password });

/** Names in `dir` other than the data file and its lock: leftovers. */
async function leftovers(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.filter((n) => n !== "passwd" && n !== "passwd.lock").sort();
}

Deno.test("parsePasswdFile() finds users and nothing else", async (t) => {
  const file = parsePasswdFile(bin(ORIGINAL));
  await t.step(
    "users, in the order of the file, with their password fields",
    () => {
      const seen = [...file.entries.values()].map((
        e,
      ) => [Buffer.from(e.user).toString("latin1"), e.password, e.line]);
      assert.deepEqual(seen, [
        ["alice", "{PLAIN}alicepw", 3],
        ["bob@example.org", "{PLAIN}bobpw", 4],
        ["carol", "{PLAIN}carolpw", 6],
        ["dave", "{PLAIN}davepw", 9],
      ]);
    },
  );
  await t.step("start and end are the field's octet offsets", () => {
    for (const e of file.entries.values()) {
      assert.equal(
        Buffer.from(file.bytes.subarray(e.start, e.end)).toString("latin1"),
        e.password,
      );
    }
  });
  await t.step("user names compare as raw octets", () => {
    assert.equal(findEntry(file, utf8("bob@example.org"))?.line, 4);
    assert.equal(findEntry(file, utf8("Bob@example.org")), undefined);
    assert.equal(findEntry(file, utf8("alice ")), undefined);
    const latin = parsePasswdFile(bin("j\xf6rg:{PLAIN}a\n"));
    assert.equal(findEntry(latin, bin("j\xf6rg"))?.line, 1);
    assert.equal(findEntry(latin, utf8("jörg")), undefined);
  });
  await t.step("a line without ':' is a SyntaxError naming the line", () => {
    assert.throws(() => parsePasswdFile(bin("a:b\n#c\nbroken line\n")), {
      name: "SyntaxError",
      message: "line 3: no ':' after the user name",
    });
  });
  await t.step(
    "a user listed twice cannot be looked up; the others can",
    () => {
      const twice = parsePasswdFile(
        bin("a:{PLAIN}1\nb:{PLAIN}2\na:{PLAIN}3\n"),
      );
      assert.throws(() => findEntry(twice, utf8("a")), {
        message: "the user is listed more than once",
      });
      assert.equal(findEntry(twice, utf8("b"))?.password, "{PLAIN}2");
    },
  );
  await t.step("an empty file has no users", () => {
    assert.equal(parsePasswdFile(new Uint8Array()).entries.size, 0);
  });
});

Deno.test("replacePassword() accepts only a hash-like field", () => {
  const file = parsePasswdFile(bin(ORIGINAL));
  const alice = file.entries.get("alice")!;
  for (const bad of ["", "a:b", "a\nb", "a b", "caf\xe9"]) {
    assert.throws(() => replacePassword(file, alice, bad), RangeError);
  }
  assert.deepEqual(
    replacePassword(file, alice, NEW_HASH),
    expected("alice", NEW_HASH, "{PLAIN}alicepw"),
  );
});

Deno.test("updatePasswdFile() changes one field and keeps every other octet", async (t) => {
  const cases: ReadonlyArray<readonly [keyof typeof LINES, string, string]> = [
    ["alice", "with extra fields", "{PLAIN}alicepw"],
    ["bob", "on a CRLF line with non-UTF-8 gecos", "{PLAIN}bobpw"],
    ["carol", "on a CRLF line with no further fields", "{PLAIN}carolpw"],
    ["dave", "on the last line, which has no newline", "{PLAIN}davepw"],
  ];
  for (const [user, where, old] of cases) {
    await t.step(`${user}, ${where}`, async () => {
      await withFile(bin(ORIGINAL), async (path, dir) => {
        let seen: PasswdEntry | undefined;
        const name = user === "bob" ? "bob@example.org" : user;
        const outcome = await updatePasswdFile(path, utf8(name), (entry) => {
          seen = entry;
          return write(NEW_HASH)();
        });
        assert.deepEqual(outcome, { kind: "ok" });
        assert.equal(seen?.password, old);
        assert.deepEqual(
          await Deno.readFile(path),
          expected(user, NEW_HASH, old),
        );
        assert.deepEqual(await leftovers(dir), []);
      });
    });
  }
  await t.step("the new hash verifies", async () => {
    await withFile(bin(ORIGINAL), async (path) => {
      await updatePasswdFile(path, utf8("carol"), write(NEW_HASH));
      const carol = parsePasswdFile(await Deno.readFile(path)).entries.get(
        "carol",
      )!;
      assert.deepEqual(await verifyPassword(utf8("pw"), carol.password), {
        kind: "match",
      });
    });
  });
});

Deno.test("updatePasswdFile() keeps mode and owner, and follows a symlink", async (t) => {
  await t.step("mode 0640 stays 0640", async () => {
    await withFile(bin(ORIGINAL), async (path) => {
      await Deno.chmod(path, 0o640);
      assert.deepEqual(
        await updatePasswdFile(path, utf8("alice"), write(NEW_HASH)),
        { kind: "ok" },
      );
      assert.equal((await Deno.stat(path)).mode! & 0o7777, 0o640);
    });
  });
  await t.step({
    name: `owner and group are kept${
      Deno.uid() === 0 ? "" : " (ignored: needs root)"
    }`,
    ignore: Deno.uid() !== 0,
    fn: async () => {
      await withFile(bin(ORIGINAL), async (path) => {
        await Deno.chown(path, 65534, 65534);
        assert.deepEqual(
          await updatePasswdFile(path, utf8("alice"), write(NEW_HASH)),
          { kind: "ok" },
        );
        const info = await Deno.stat(path);
        assert.deepEqual([info.uid, info.gid], [65534, 65534]);
      });
    },
  });
  await t.step(
    "a symlink stays a link; the file it names changes",
    async () => {
      await withFile(bin(ORIGINAL), async (path, dir) => {
        await Deno.symlink(path, `${dir}/link`);
        assert.deepEqual(
          await updatePasswdFile(`${dir}/link`, utf8("dave"), write(NEW_HASH)),
          { kind: "ok" },
        );
        assert.ok((await Deno.lstat(`${dir}/link`)).isSymlink);
        assert.deepEqual(
          await Deno.readFile(path),
          expected("dave", NEW_HASH, "{PLAIN}davepw"),
        );
      });
    },
  );
});

Deno.test("updatePasswdFile() failures are temporary and leave the file untouched", async (t) => {
  /** Run `update` on `content` and assert: the outcome, same octets, same inode, no leftovers. */
  async function untouched(
    content: string,
    update: (path: string) => Promise<unknown>,
    reason: (path: string) => string,
  ) {
    await withFile(bin(content), async (path, dir) => {
      const before = await Deno.stat(path);
      assert.deepEqual(await update(path), {
        kind: "temporary",
        reason: reason(path),
      });
      assert.deepEqual(await Deno.readFile(path), bin(content));
      assert.equal((await Deno.stat(path)).ino, before.ino);
      assert.deepEqual(await leftovers(dir), []);
    });
  }
  await t.step("a file that cannot be parsed", async () => {
    let asked = false;
    await untouched(
      `${ORIGINAL}\nno colon here\n`,
      (path) =>
        updatePasswdFile(path, utf8("alice"), () => {
          asked = true;
          return write(NEW_HASH)();
        }),
      (path) => `passwd file ${path}: line 10: no ':' after the user name`,
    );
    assert.equal(asked, false);
  });
  await t.step("a user listed twice", async () => {
    await untouched(
      `${ORIGINAL}\nalice:{PLAIN}again\n`,
      (path) => updatePasswdFile(path, utf8("alice"), write(NEW_HASH)),
      (path) => `passwd file ${path}: the user is listed more than once`,
    );
  });
  await t.step("a field that is not a hash", async () => {
    await untouched(
      ORIGINAL,
      (path) => updatePasswdFile(path, utf8("alice"), write("x:y")),
      (path) =>
        `passwd file ${path}: A password field must be printable ASCII without ':'`,
    );
  });
  await t.step("an error after the temporary file was written", async () => {
    await untouched(
      ORIGINAL,
      (path) =>
        updatePasswdFile(path, utf8("alice"), write(NEW_HASH), {
          afterTempWritten: () => Promise.reject(new Error("disk on fire")),
        }),
      (path) => `passwd file ${path}: disk on fire`,
    );
  });
  await t.step("a lock held by someone else, until the deadline", async () => {
    await withFile(bin(ORIGINAL), async (path) => {
      const holder = await Deno.open(`${path}.lock`, {
        read: true,
        write: true,
        create: true,
      });
      try {
        await holder.lock(true);
        const started = Date.now();
        const outcome = await updatePasswdFile(
          path,
          utf8("alice"),
          write(NEW_HASH),
          { lockTimeoutMs: 200 },
        );
        assert.deepEqual(outcome, {
          kind: "temporary",
          reason:
            `passwd file ${path}: lock ${path}.lock still held after 200 ms`,
        });
        assert.ok(Date.now() - started < 2000);
        assert.deepEqual(await Deno.readFile(path), bin(ORIGINAL));
      } finally {
        holder.close();
      }
    });
  });
  await t.step("a missing file", async () => {
    const outcome = await updatePasswdFile(
      "/nonexistent/passwd",
      utf8("alice"),
      write(NEW_HASH),
    );
    assert.equal(outcome.kind, "temporary");
    assert.match(
      (outcome as { reason: string }).reason,
      /^passwd file \/nonexistent\/passwd: No such file/,
    );
  });
  await t.step("a decision to keep writes nothing", async () => {
    await withFile(bin(ORIGINAL), async (path) => {
      const before = await Deno.stat(path);
      const outcome = await updatePasswdFile(path, utf8("nobody"), (entry) => {
        assert.equal(entry, undefined);
        return Promise.resolve({
          kind: "keep",
          outcome: { kind: "rejected", reason: "unknown user" },
        });
      });
      assert.deepEqual(outcome, { kind: "rejected", reason: "unknown user" });
      assert.equal((await Deno.stat(path)).ino, before.ino);
    });
  });
});

const FIXTURE =
  new URL("../../support/fixtures/passwdfile_change.ts", import.meta.url)
    .pathname;
const CONFIG = new URL("../../../deno.json", import.meta.url).pathname;

/** Start the change fixture as its own process (`--no-lock`: 50 of them must not race on deno.lock). */
function spawnFixture(
  args: string[],
  stdout: "piped" | "null" = "piped",
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-lock",
      `--config=${CONFIG}`,
      "--allow-all",
      FIXTURE,
      ...args,
    ],
    stdin: "null",
    stdout,
    stderr: "null",
  }).spawn();
}

function kill(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGKILL");
  } catch { /* already gone */ }
}

/** Run the fixture to the end, killing it after `timeoutMs`. */
async function runFixture(
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; out: string }> {
  const child = spawnFixture(args);
  const timer = setTimeout(() => kill(child), timeoutMs);
  try {
    const { code, stdout } = await child.output();
    return { code, out: new TextDecoder().decode(stdout).trim() };
  } finally {
    clearTimeout(timer);
  }
}

/** `after` is `before` with only `user`'s field changed, to a hash of `password`. */
async function isExactChange(
  before: Uint8Array,
  after: Uint8Array,
  user: string,
  password: string,
) {
  const old = parsePasswdFile(before).entries.get(user)!;
  const file = parsePasswdFile(after);
  const now = file.entries.get(user)!;
  assert.deepEqual(replacePassword(file, now, old.password), before);
  assert.deepEqual(await verifyPassword(utf8(password), now.password), {
    kind: "match",
  });
}

Deno.test("50 processes changing 50 users at once lose no update and no octet", async () => {
  const users = Array.from({ length: 50 }, (_, i) => `user${i}`);
  const original = bin(
    "# fifty users\r\n" +
      users.map((u, i) =>
        `${u}:{PLAIN}old${i}:${1000 + i}:100::/home/${u}${
          i % 2 ? "\r\n" : "\n"
        }`
      ).join("") +
      "# no newline at the end",
  );
  await withFile(original, async (path, dir) => {
    const results = await Promise.all(
      users.map((u, i) =>
        runFixture([path, u, `old${i}`, `new password ${i}`], 120_000)
      ),
    );
    assert.deepEqual(
      results,
      users.map(() => ({ code: 0, out: '{"kind":"ok"}' })),
    );
    const file = parsePasswdFile(await Deno.readFile(path));
    let restored = file.bytes;
    // Put every old field back, last line first so earlier offsets stay valid.
    for (const [i, u] of [...users.entries()].reverse()) {
      const entry = file.entries.get(u)!;
      assert.deepEqual(
        await verifyPassword(utf8(`new password ${i}`), entry.password),
        { kind: "match" },
      );
      restored = replacePassword(
        { ...file, bytes: restored },
        entry,
        `{PLAIN}old${i}`,
      );
    }
    assert.deepEqual(restored, original);
    assert.deepEqual(await leftovers(dir), []);
  });
});

Deno.test("a writer killed mid-change leaves the old file or the new one", async (t) => {
  await t.step(
    "killed after writing its temporary file: the old file, exactly",
    async () => {
      await withFile(bin(ORIGINAL), async (path) => {
        const child = spawnFixture(["--pause", path, "alice", "brand new"]);
        const timer = setTimeout(() => kill(child), 30_000);
        const reader = child.stdout.pipeThrough(new TextDecoderStream())
          .getReader();
        let said = "";
        try {
          while (!said.includes("\n")) {
            const { value, done } = await reader.read();
            if (done) break;
            said += value;
          }
        } finally {
          kill(child);
          clearTimeout(timer);
          await reader.cancel();
          await child.status;
        }
        const temp = /^paused (.+)\n$/.exec(said)?.[1];
        assert.ok(temp, `fixture said ${JSON.stringify(said)}`);
        await isExactChange(
          bin(ORIGINAL),
          await Deno.readFile(temp),
          "alice",
          "brand new",
        );
        assert.deepEqual(await Deno.readFile(path), bin(ORIGINAL));
      });
    },
  );
  await t.step(
    "killed at random moments, 20 times: old or new, never a mix",
    async () => {
      await withFile(bin(ORIGINAL), async (path) => {
        let current = "alicepw";
        for (let run = 0; run < 20; run++) {
          const before = await Deno.readFile(path);
          const next = `password ${run}`;
          const child = spawnFixture([path, "alice", current, next], "null");
          // A whole run takes 100-200 ms here (start-up included): spread the
          // kills over it so that some land before, during and after the write.
          const delay = 20 + Math.floor(Math.random() * 200);
          const timer = setTimeout(() => kill(child), delay);
          await child.status;
          clearTimeout(timer);
          const after = await Deno.readFile(path);
          if (Buffer.compare(before, after) === 0) continue;
          await isExactChange(before, after, "alice", next);
          current = next;
        }
      });
    },
  );
});

// Issue 18.9: a writer killed between creating its temporary file and the
// rename leaves `.passwd.PID.RANDOM.tmp` behind; the next change removes it.
Deno.test("updatePasswdFile() removes stale temporary files under the lock", async () => {
  await withFile(bin(ORIGINAL), async (path, dir) => {
    const stale = [".passwd.4242.k3j2h1.tmp", ".passwd.1.0.tmp"];
    const others = [".passwd.tmp", ".other.4242.abc.tmp", "passwd.4242.x.tmp"];
    for (const name of [...stale, ...others]) {
      await Deno.writeTextFile(`${dir}/${name}`, "half a passwd file");
    }
    const warnings: string[] = [];
    const outcome = await updatePasswdFile(
      path,
      utf8("alice"),
      write(NEW_HASH),
      { warn: (line) => warnings.push(line) },
    );
    assert.deepEqual(outcome, { kind: "ok" });
    assert.deepEqual(await leftovers(dir), [...others].sort());
    assert.deepEqual(
      warnings.sort(),
      stale.map((n) => `removed ${dir}/${n}, left by an interrupted change`)
        .sort(),
    );
  });
});
