/**
 * The hashing part of `deno task bench` (issues 12 and 18.3), on its own
 * servers with the built-in passwd-file store:
 *
 * - greeting p99 in listen mode, alone and while 4 users change Argon2id
 *   passwords without pause (target: under 100 ms);
 * - Argon2id time per hash in the hash workers against `doveadm pw -s
 *   ARGON2ID` (its own start-up, measured with `-s PLAIN`, subtracted;
 *   target: at most 1.5 × native);
 * - peak RSS of a listen server while 8 changes run at once;
 * - stdio connect + `quit`, and a check of the last user, with a
 *   200,000-user passwd-file against a one-user file.
 *
 * Also runs alone: `deno run -A bench/hashing.ts [--quick]`.
 *
 * @module
 */

import { closeHashPool, make } from "../lib/hash/mod.ts";
import { percentile } from "./loadgen.ts";

const REPO = new URL("..", import.meta.url).pathname;
const MAIN = `${REPO}main.ts`;
const HOST = "bench.example";
const enc = new TextEncoder();
const dec = new TextDecoder();
const USERS = ["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"];
const PASSWORDS = ["first password", "second password"];

/** One measured quantity of the section. */
export interface HashingCheck {
  readonly what: string;
  readonly value: number;
  readonly unit: string;
  readonly limit: string;
  readonly met?: boolean;
}

/** A listen-mode server on a passwd-file. */
interface Server {
  readonly port: number;
  readonly pid: number;
  stop(): Promise<void>;
}

async function startListen(file: string): Promise<Server> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      MAIN,
      "--listen",
      "127.0.0.1:0",
      "--max-sessions",
      "200",
      "--max-per-ip",
      "0",
      "--fail-delay",
      "0",
      "--passwd-file",
      file,
      "--passwd-scheme",
      "ARGON2ID",
      HOST,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  let port = 0;
  while (!port && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value);
    port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(text)?.[1] ?? 0);
  }
  // Keep draining the log so the server never blocks on it.
  const drain = (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  if (!port) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`listen server did not start: ${text.slice(-500)}`);
  }
  return {
    port,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await drain;
    },
  };
}

/** Read until `count` CRLF-ended lines have arrived; returns them. */
async function lines(conn: Deno.Conn, count: number, buf: { text: string }) {
  const chunk = new Uint8Array(1024);
  while (buf.text.split("\r\n").length - 1 < count) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error(`EOF after ${JSON.stringify(buf.text)}`);
    buf.text += dec.decode(chunk.subarray(0, n));
  }
  return buf.text;
}

/** Connect, read the greeting, close; milliseconds. */
async function greeting(port: number): Promise<number> {
  const started = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await lines(conn, 1, { text: "" });
  } finally {
    conn.close();
  }
  return performance.now() - started;
}

/** One full change session; true when the password was changed. */
async function change(
  port: number,
  user: string,
  old: string,
  fresh: string,
): Promise<boolean> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = { text: "" };
  try {
    await lines(conn, 1, buf);
    let expected = 1;
    for (const line of [`user ${user}`, `pass ${old}`, `newpass ${fresh}`]) {
      await conn.write(enc.encode(`${line}\r\n`));
      const text = await lines(conn, ++expected, buf);
      if (!text.trimEnd().split("\r\n").at(-1)!.startsWith("200")) {
        return false;
      }
    }
    await conn.write(enc.encode("quit\r\n"));
    await lines(conn, ++expected, buf);
    return true;
  } finally {
    conn.close();
  }
}

/** A passwd-file of `users` with the first password in ARGON2ID. */
async function argonFile(path: string): Promise<void> {
  const rows: string[] = [];
  for (const user of USERS) {
    rows.push(`${user}:${await make("ARGON2ID", enc.encode(PASSWORDS[0]!))}\n`);
  }
  await Deno.writeTextFile(path, rows.join(""));
}

function vmKb(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1]);
}

/** Greeting p99 alone and under 4 changing users; peak RSS of 8 changes. */
async function listenRows(
  dir: string,
  quick: boolean,
  out: HashingCheck[],
): Promise<void> {
  const file = `${dir}/passwd`;
  await argonFile(file);
  const n = quick ? 200 : 1000;
  let server = await startListen(file);
  try {
    for (let i = 0; i < 20; i++) await greeting(server.port); // warm up
    const alone: number[] = [];
    for (let i = 0; i < n; i++) alone.push(await greeting(server.port));
    alone.sort((a, b) => a - b);
    // Four users change passwords back and forth without pause.
    let stop = false;
    let changes = 0;
    let failed = 0;
    const changers = USERS.slice(0, 4).map(async (user) => {
      // An even number of changes: each user ends with the first password.
      for (let k = 0; !stop || k % 2 === 1; k++) {
        const [old, fresh] = k % 2 ? [PASSWORDS[1]!, PASSWORDS[0]!] : [
          PASSWORDS[0]!,
          PASSWORDS[1]!,
        ];
        // A refused change (busy, say) leaves the password: try it again.
        if (await change(server.port, user, old, fresh)) changes++;
        else (failed++, k--);
      }
    });
    await new Promise((r) => setTimeout(r, 300)); // the changes are under way
    const busy: number[] = [];
    const began = performance.now();
    for (let i = 0; i < n; i++) {
      busy.push(await greeting(server.port));
      await new Promise((r) => setTimeout(r, 5));
    }
    const seconds = (performance.now() - began) / 1000;
    stop = true;
    await Promise.all(changers);
    busy.sort((a, b) => a - b);
    out.push(
      {
        what: `listen greeting p99, alone (${n} greetings)`,
        value: percentile(alone, 0.99),
        unit: "ms",
        limit: "(info)",
      },
      {
        what: `listen greeting p99, while 4 users change ARGON2ID passwords ` +
          `(${n} greetings, ${(changes / seconds).toFixed(1)} changes/s, ` +
          `${failed} refused)`,
        value: percentile(busy, 0.99),
        unit: "ms",
        limit: "< 100",
        met: percentile(busy, 0.99) < 100,
      },
    );
    await server.stop();
    // A fresh server: peak RSS of 8 changes at once (its VmHWM includes
    // the hash workers, threads of the same process).
    server = await startListen(file);
    await greeting(server.port);
    const before = vmKb(server.pid, "VmRSS");
    const results = await Promise.all(
      USERS.map((u) =>
        change(server.port, u, PASSWORDS[0]!, PASSWORDS[1]!).then(async (ok) =>
          ok && await change(server.port, u, PASSWORDS[1]!, PASSWORDS[0]!)
        )
      ),
    );
    if (!results.every(Boolean)) throw new Error("a change failed");
    const peak = vmKb(server.pid, "VmHWM");
    out.push(
      {
        what: "listen server RSS before the 8 changes",
        value: before / 1024,
        unit: "MiB",
        limit: "(info)",
      },
      {
        what: "listen server peak RSS, 8 ARGON2ID changes at once",
        value: peak / 1024,
        unit: "MiB",
        limit: "(info)",
      },
    );
  } finally {
    await server.stop();
  }
}

const median = (values: number[]) =>
  values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function doveadm(scheme: string): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command("doveadm", {
    args: ["pw", "-s", scheme, "-p", "bench password"],
    stdout: "null",
    stderr: "null",
  }).output();
  if (!out.success) throw new Error(`doveadm pw -s ${scheme} failed`);
  return performance.now() - started;
}

/** Our Argon2id per hash (in the workers) against doveadm's. */
async function argonRows(quick: boolean, out: HashingCheck[]): Promise<void> {
  const runs = quick ? 5 : 15;
  const pw = enc.encode("bench password");
  await make("ARGON2ID", pw); // worker start
  const ours: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await make("ARGON2ID", pw);
    ours.push(performance.now() - started);
  }
  closeHashPool();
  let native = NaN;
  try {
    const argon: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < runs; i++) {
      argon.push(await doveadm("ARGON2ID"));
      plain.push(await doveadm("PLAIN"));
    }
    native = median(argon) - median(plain);
  } catch { /* no doveadm: ratio NaN */ }
  const ourMs = median(ours);
  out.push(
    {
      what: "ARGON2ID hash (m=64 MiB, t=3, p=1) in a hash worker, median",
      value: ourMs,
      unit: "ms",
      limit: "(info)",
    },
    {
      what: "doveadm pw -s ARGON2ID minus doveadm pw -s PLAIN, median",
      value: native,
      unit: "ms",
      limit: "(info)",
    },
    {
      what: "ARGON2ID per hash, ours ÷ doveadm's",
      value: ourMs / native,
      unit: "×",
      limit: "≤ 1.5",
      met: ourMs / native <= 1.5,
    },
  );
}

/** Wall ms, CPU ms and peak RSS KiB of one stdio session, from /usr/bin/time. */
async function stdioSession(
  file: string,
  input: string,
): Promise<{ wallMs: number; cpuMs: number; rssKb: number }> {
  const started = performance.now();
  const child = new Deno.Command("/usr/bin/time", {
    args: [
      "-f",
      "TIME %U %S %M",
      Deno.execPath(),
      "run",
      "--allow-all",
      MAIN,
      "--fail-delay",
      "0",
      "--passwd-file",
      file,
      HOST,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(enc.encode(input));
  await writer.close();
  const out = await child.output();
  const wallMs = performance.now() - started;
  const m = /TIME ([\d.]+) ([\d.]+) (\d+)/.exec(dec.decode(out.stderr));
  if (!m) throw new Error(`no /usr/bin/time line: ${dec.decode(out.stderr)}`);
  return {
    wallMs,
    cpuMs: (Number(m[1]) + Number(m[2])) * 1000,
    rssKb: Number(m[3]),
  };
}

/** connect + quit, and a check, with a 200,000-user file and a one-user file. */
async function fileRows(
  dir: string,
  quick: boolean,
  out: HashingCheck[],
): Promise<void> {
  const big = `${dir}/big`;
  const small = `${dir}/small`;
  const last = "last:{SHA512-CRYPT}" +
    (await make("SHA512-CRYPT", enc.encode("last password"))).slice(14);
  await Deno.writeTextFile(small, `${last}\n`);
  const file = await Deno.open(big, { write: true, create: true });
  const filler = "{SHA512-CRYPT}$6$saltsaltsaltsalt$" + "x".repeat(86);
  for (let block = 0; block < 20; block++) {
    let text = "";
    for (let i = 0; i < 10_000; i++) {
      const u = block * 10_000 + i;
      text += `user${u}@example.com:${filler}:5000:5000::/var/mail/u${u}::\n`;
    }
    await file.write(enc.encode(text));
  }
  await file.write(enc.encode(`${last}\n`));
  file.close();
  const size = (await Deno.stat(big)).size / 1e6;
  const runs = quick ? 3 : 7;
  const measure = async (path: string, input: string) => {
    const rows = [];
    for (let i = 0; i < runs; i++) rows.push(await stdioSession(path, input));
    return {
      wallMs: median(rows.map((r) => r.wallMs)),
      cpuMs: median(rows.map((r) => r.cpuMs)),
      rssKb: median(rows.map((r) => r.rssKb)),
    };
  };
  const quit = "quit\r\n";
  const check = "user last\r\npass last password\r\nquit\r\n";
  for (
    const [name, path] of [["1-user", small], [
      `${size.toFixed(1)} MB, 200,001-user`,
      big,
    ]]
  ) {
    for (
      const [what, input] of [["connect + quit", quit], [
        "check of the last user",
        check,
      ]]
    ) {
      const r = await measure(path!, input!);
      out.push(
        {
          what: `stdio ${what}, ${name} passwd-file: CPU`,
          value: r.cpuMs,
          unit: "ms",
          limit: "(info)",
        },
        {
          what: `stdio ${what}, ${name} passwd-file: peak RSS`,
          value: r.rssKb / 1024,
          unit: "MiB",
          limit: "(info)",
        },
      );
    }
  }
  // Issue 18.4: with --fail-delay 0, does the time tell an unknown user from
  // a wrong password? The file holds SHA512-CRYPT; the write scheme is
  // ARGON2ID.
  const wrong = await measure(small, "user last\r\npass guess\r\n");
  const unknown = await measure(small, "user nobody\r\npass guess\r\n");
  out.push(
    {
      what: "stdio wrong password of a SHA512-CRYPT user, --fail-delay 0: wall",
      value: wrong.wallMs,
      unit: "ms",
      limit: "(info)",
    },
    {
      what: "stdio unknown user, same file (write scheme ARGON2ID): wall",
      value: unknown.wallMs,
      unit: "ms",
      limit: "(info)",
    },
  );
}

/** Run every hashing measurement; `log` gets progress lines. */
export async function hashingBench(
  quick: boolean,
  log: (text: string) => void,
): Promise<HashingCheck[]> {
  const dir = await Deno.makeTempDir({ prefix: "bench-hashing" });
  const out: HashingCheck[] = [];
  try {
    log("hashing: Argon2id per hash against doveadm");
    await argonRows(quick, out);
    log("hashing: listen greetings alone, under 4 changers; 8 changes at once");
    await listenRows(dir, quick, out);
    closeHashPool();
    log("hashing: stdio with a large passwd-file");
    await fileRows(dir, quick, out);
  } finally {
    closeHashPool();
    await Deno.remove(dir, { recursive: true });
  }
  return out;
}

/** The section as Markdown. */
export function hashingReport(found: readonly HashingCheck[]): string {
  if (found.length === 0) return "";
  const rows = found.map((c) =>
    `| ${c.what} | ${
      c.value.toFixed(c.unit === "×" ? 2 : 1)
    } ${c.unit} | ${c.limit} | ${
      c.met === undefined ? "" : c.met ? "met" : "NOT met"
    } |`
  );
  return [
    "\n",
    "### Hashing (passwd-file store)",
    "",
    "| measure | value | target | |",
    "|---|---|---|---|",
    ...rows,
  ].join("\n");
}

if (import.meta.main) {
  const found = await hashingBench(
    Deno.args.includes("--quick"),
    (t) => console.error(`bench: ${t}`),
  );
  console.log(hashingReport(found));
  Deno.exit(0);
}
