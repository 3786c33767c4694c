/**
 * The quick start: `deno task start` on a fresh folder creates the demo
 * account and serves real password changes; and the passwd-file back end
 * behind the real server accepts hashes made by Dovecot's own tool and
 * writes hashes Dovecot accepts.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Read lines from a conn until `count` CRLF-terminated replies arrived (bounded). */
async function exchange(
  conn: Deno.Conn,
  send: string,
  count: number,
): Promise<string> {
  if (send) await conn.write(enc.encode(send));
  let text = "";
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + 15_000;
  while ((text.match(/\r\n/g) ?? []).length < count && Date.now() < deadline) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += dec.decode(buffer.subarray(0, n));
  }
  return text;
}

async function waitForLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pattern: RegExp,
  seen: string[],
): Promise<RegExpMatchArray> {
  const deadline = Date.now() + 20_000;
  let text = "";
  while (Date.now() < deadline) {
    const match = text.match(pattern);
    if (match) return match;
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value);
    seen.push(text);
  }
  throw new Error(`no line matching ${pattern} in:\n${text}`);
}

Deno.test("deno task start creates a demo account and serves real changes on 127.0.0.1:10106", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`))
    .tasks as Record<string, string>;
  const words = tasks.start!.split(" ");
  assert.equal(words[0], "deno");
  const args = words.slice(1).map((
    w,
  ) => (w === "lib/demo/demo.ts" ? `${ROOT}lib/demo/demo.ts` : w));
  const dir = await Deno.makeTempDir({ prefix: "poppass-demo-" });
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stderr.getReader();
  const seen: string[] = [];
  try {
    const [, password] = await waitForLine(
      reader,
      /user demo password ([a-z2-7]{16})/,
      seen,
    );
    await waitForLine(reader, /listening on 127\.0\.0\.1:10106/, seen);
    const stored = await Deno.readTextFile(`${dir}/demo/passwd`);
    assert.match(
      stored,
      /^demo:\{ARGON2ID\}\$argon2id\$v=19\$m=65536,t=3,p=1\$/,
    );
    assert.equal((await Deno.stat(`${dir}/demo/passwd`)).mode! & 0o777, 0o600);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: 10106 });
    try {
      const dialogue = await exchange(
        conn,
        `user demo\r\npass ${password}\r\nnewpass Quick-start-2\r\nquit\r\n`,
        5,
      );
      assert.equal(
        dialogue,
        "200 localhost hello, who are you?\r\n200 Your password please.\r\n" +
          "200 Your new password please.\r\n200 Password changed, thank-you.\r\n200 Bye.\r\n",
      );
    } finally {
      conn.close();
    }
    assert.notEqual(await Deno.readTextFile(`${dir}/demo/passwd`), stored);
  } finally {
    child.kill("SIGTERM");
    await reader.cancel();
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
});

const doveadm = (() => {
  try {
    return Deno.statSync("/usr/bin/doveadm").isFile;
  } catch {
    return false;
  }
})();

async function run(
  cmd: string,
  args: string[],
): Promise<{ code: number; out: string }> {
  const result = await new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: result.code, out: dec.decode(result.stdout).trim() };
}

Deno.test({
  name:
    "the server changes passwords in a file of doveadm hashes, and doveadm accepts what it writes",
  ignore: !doveadm,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "poppass-dovecot-" });
    try {
      const schemes = [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "ARGON2I",
        "ARGON2ID",
      ];
      let file = "# made by doveadm pw\n";
      for (const [i, scheme] of schemes.entries()) {
        const { out } = await run("doveadm", [
          "pw",
          "-s",
          scheme,
          "-p",
          `Old-${i} pw`,
        ]);
        file += `u${i}:${out}:1000:1000::/home/u${i}::\n`;
      }
      await Deno.writeTextFile(`${dir}/users`, file);
      for (const [i, scheme] of schemes.entries()) {
        await t.step(`${scheme} in, SHA512-CRYPT out`, async () => {
          const server = new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "--allow-all",
              `${ROOT}main.ts`,
              "--fail-delay",
              "0.2",
              "--passwd-scheme",
              "SHA512-CRYPT",
              "--passwd-file",
              `${dir}/users`,
              "mail.test",
            ],
            stdin: "piped",
            stdout: "piped",
            stderr: "null",
            env: { NO_COLOR: "1" },
          }).spawn();
          const writer = server.stdin.getWriter();
          await writer.write(
            enc.encode(
              `user u${i}\npass Old-${i} pw\nnewpass New-${i} pw\nquit\n`,
            ),
          );
          await writer.close();
          const out = dec.decode((await server.output()).stdout);
          assert.equal(
            out,
            "200 mail.test hello, who are you?\r\n200 Your password please.\r\n" +
              "200 Your new password please.\r\n200 Password changed, thank-you.\r\n200 Bye.\r\n",
          );
          const line = (await Deno.readTextFile(`${dir}/users`)).split("\n")
            .find((l) => l.startsWith(`u${i}:`))!;
          const [, hash, ...rest] = line.split(":");
          assert.equal(
            rest.join(":"),
            `1000:1000::/home/u${i}::`,
            "other fields kept",
          );
          assert.equal(
            (await run("doveadm", ["pw", "-t", hash!, "-p", `New-${i} pw`]))
              .code,
            0,
          );
          assert.notEqual(
            (await run("doveadm", ["pw", "-t", hash!, "-p", `Old-${i} pw`]))
              .code,
            0,
          );
        });
      }
      assert.ok(
        (await Deno.readTextFile(`${dir}/users`)).startsWith(
          "# made by doveadm pw\n",
        ),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
