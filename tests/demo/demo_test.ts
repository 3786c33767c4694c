/**
 * The quick start: `deno task start` on a fresh folder creates the demo
 * account and serves real password changes; run again, it says the account
 * exists and how to get a fresh one.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;
const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Send `send`, then read until `count` CRLF-terminated replies arrived;
 * bounded: at 15 s the connection is closed, which ends a pending read.
 */
async function exchange(
  conn: Deno.Conn,
  send: string,
  count: number,
): Promise<string> {
  if (send) await conn.write(enc.encode(send));
  let text = "";
  const buffer = new Uint8Array(4096);
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    conn.close();
  }, 15_000);
  try {
    while ((text.match(/\r\n/g) ?? []).length < count) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += dec.decode(buffer.subarray(0, n));
    }
  } catch (error) {
    if (!late) throw error;
  } finally {
    clearTimeout(timer);
  }
  return text;
}

/**
 * The demo's log as it arrives. Text already read stays here, so a line
 * that came in the same chunk as an earlier one is still found; every
 * wait is bounded, also when the process writes nothing more.
 */
class LogReader {
  #text = "";
  #pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  constructor(readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** Wait (at most 20 s) until the log matches `pattern`. */
  async waitFor(pattern: RegExp): Promise<RegExpMatchArray> {
    const deadline = Date.now() + 20_000;
    while (true) {
      const match = this.#text.match(pattern);
      if (match) return match;
      const left = deadline - Date.now();
      if (left <= 0) break;
      this.#pending ??= this.reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const result = await Promise.race([
        this.#pending,
        new Promise<"late">((resolve) => {
          timer = setTimeout(() => resolve("late"), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (result === "late") break;
      this.#pending = undefined;
      if (result.done) break;
      this.#text += dec.decode(result.value, { stream: true });
    }
    throw new Error(`no line matching ${pattern} in:\n${this.#text}`);
  }
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
    log: new LogReader(reader),
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
      const [, password] = await first.log.waitFor(
        /user demo password ([a-z2-7]{16})/,
      );
      await first.log.waitFor(/listening on 127\.0\.0\.1:10106/);
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
        try {
          conn.close();
        } catch { /* closed at the deadline */ }
      }
      assert.notEqual(await Deno.readTextFile(`${dir}/demo/passwd`), stored);
    } finally {
      await first.stop();
    }
    // Issue 17: a second start printed no password and no hint.
    const kept = await Deno.readTextFile(`${dir}/demo/passwd`);
    const second = await startDemo(dir);
    try {
      const [line] = await second.log.waitFor(
        /demo account exists in demo\/passwd[^\n]*/,
      );
      assert.match(
        line,
        /: its password was printed at the first start .*for a fresh account and password: rm demo\/passwd && deno task start$/,
      );
      await second.log.waitFor(/listening on 127\.0\.0\.1:10106/);
      assert.equal(await Deno.readTextFile(`${dir}/demo/passwd`), kept);
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
