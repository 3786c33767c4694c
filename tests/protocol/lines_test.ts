import assert from "node:assert/strict";
import {
  type ChunkSource,
  type LineEvent,
  LineReader,
} from "../../lib/protocol/lines.ts";

const enc = (text: string) => new TextEncoder().encode(text);

/** A source that hands out the given chunks, then EOF; counts reads. */
function chunks(
  ...parts: (string | Uint8Array)[]
): ChunkSource & { reads: number } {
  const queue = parts.map((p) => (typeof p === "string" ? enc(p) : p));
  const source = Object.assign(() => {
    source.reads++;
    return Promise.resolve(queue.shift() ?? null);
  }, { reads: 0 });
  return source;
}

async function all(reader: LineReader): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const event: LineEvent = await reader.next();
    if (event.kind === "line") {
      out.push(JSON.stringify(new TextDecoder().decode(event.line)));
    } else {
      out.push(event.kind);
      return out;
    }
  }
}

Deno.test("LineReader splits, drops one CR before LF, discards an unterminated tail", async (t) => {
  const rows: [string, (string | Uint8Array)[], number, string[]][] = [
    ["CRLF lines", ["user a\r\npass b\r\n"], 512, [
      '"user a"',
      '"pass b"',
      "eof",
    ]],
    ["bare LF lines", ["user a\npass b\n"], 512, [
      '"user a"',
      '"pass b"',
      "eof",
    ]],
    ["only one CR is dropped", ["a\r\r\n"], 512, ['"a\\r"', "eof"]],
    ["a lone CR is not a terminator", ["a\rb\n"], 512, ['"a\\rb"', "eof"]],
    ["an unterminated last line is discarded", ["user a\nquit"], 512, [
      '"user a"',
      "eof",
    ]],
    ["lines split across chunks", ["us", "er a", "\r", "\nqu", "it\n"], 512, [
      '"user a"',
      '"quit"',
      "eof",
    ]],
    ["an empty line", ["\n"], 512, ['""', "eof"]],
    ["exactly the limit", ["abcd\n"], 4, ['"abcd"', "eof"]],
    ["exactly the limit with CRLF", ["abcd\r\n"], 4, ['"abcd"', "eof"]],
    ["one over the limit", ["abcde\n"], 4, ["tooLong"]],
    ["one over the limit with CR", ["abcde\r\n"], 4, ["tooLong"]],
    ["limit plus CR without LF yet is still waiting", ["abcd\r", "\n"], 4, [
      '"abcd"',
      "eof",
    ]],
    ["over the limit across chunks", ["ab", "cd", "ef"], 4, ["tooLong"]],
  ];
  for (const [name, parts, max, expected] of rows) {
    await t.step(
      name,
      async () =>
        assert.deepEqual(
          await all(new LineReader(chunks(...parts), max, () => 0)),
          expected,
        ),
    );
  }
});

Deno.test("LineReader reports tooLong as soon as the limit passes, without reading on", async () => {
  const source = chunks("x".repeat(600), "never read", "\n");
  const reader = new LineReader(source, 512, () => 0);
  assert.deepEqual(await reader.next(), { kind: "tooLong" });
  assert.equal(source.reads, 1);
  assert.deepEqual(await reader.next(), { kind: "eof" });
});

Deno.test("LineReader keeps no more than the limit for 1 MiB without LF", async () => {
  let fed = 0;
  const big = new Uint8Array(64 * 1024).fill(0x61);
  const source: ChunkSource = () => {
    fed += big.length;
    return Promise.resolve(fed > 1024 * 1024 ? null : big.slice());
  };
  const reader = new LineReader(source, 512, () => 0);
  assert.deepEqual(await reader.next(), { kind: "tooLong" });
  assert.equal(fed, 64 * 1024, "stopped after the first chunk");
});

Deno.test("LineReader stamps a line with the arrival of its LF", async () => {
  let clock = 100;
  const queue = [enc("user "), enc("bob\npass x\n")];
  const source: ChunkSource = () => {
    clock += 50;
    return Promise.resolve(queue.shift() ?? null);
  };
  const reader = new LineReader(source, 512, () => clock);
  const first = await reader.next();
  const second = await reader.next();
  assert.equal(first.kind === "line" && first.arrivedAt, 200);
  assert.equal(second.kind === "line" && second.arrivedAt, 200);
});

Deno.test("LineReader wipes the chunks it has used up", async () => {
  const chunk = enc("pass secret\n");
  const reader = new LineReader(chunks(chunk), 512, () => 0);
  const event = await reader.next();
  assert.equal(event.kind, "line");
  assert.ok(
    chunk.every((b) => b === 0),
    "the chunk holding the password is zeroed",
  );
});
