/**
 * The quick start: `deno task start` on a fresh folder creates the demo
 * account and serves real password changes; run again, it says the account
 * exists and how to get a fresh one.
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

/** Run `deno task start`'s command in `dir`, reading its log. */
async function startDemo(dir: string) {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`))
    .tasks as Record<string, string>;
  const words = tasks.start!.split(" ");
  assert.equal(words[0], "deno");
  const args = words.slice(1).map((
    w,
  ) => (w === "lib/demo/demo.ts" ? `${ROOT}lib/demo/demo.ts` : w));
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: dir,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stderr.getReader();
  return {
    reader,
    seen: [] as string[],
    async stop() {
      child.kill("SIGTERM");
      await reader.cancel();
      await child.status;
    },
  };
}

Deno.test("deno task start creates a demo account and serves real changes on 127.0.0.1:10106; a second start says the account exists", async () => {
  const dir = await Deno.makeTempDir({ prefix: "poppass-demo-" });
  try {
    const first = await startDemo(dir);
    try {
      const { reader, seen } = first;
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
      assert.equal(
        (await Deno.stat(`${dir}/demo/passwd`)).mode! & 0o777,
        0o600,
      );
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
      await first.stop();
    }
    // Issue 17: a second start printed no password and no hint.
    const kept = await Deno.readTextFile(`${dir}/demo/passwd`);
    const second = await startDemo(dir);
    try {
      const [line] = await waitForLine(
        second.reader,
        /demo account exists in demo\/passwd[^\n]*/,
        second.seen,
      );
      assert.match(
        line,
        /: its password was printed at the first start .*for a fresh account and password: rm demo\/passwd && deno task start$/,
      );
      await waitForLine(
        second.reader,
        /listening on 127\.0\.0\.1:10106/,
        second.seen,
      );
      assert.equal(await Deno.readTextFile(`${dir}/demo/passwd`), kept);
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
