/**
 * Test plan case 25: the shipped fail2ban filter against what qmail-poppass
 * really writes. `main.ts` serves sessions in stdio mode (one process per
 * session, as under tcpserver) and in listen mode; its fd-2 lines are stored
 * the way multilog, tai64nlocal, svlogd -tt, syslog, rsyslog and the journal
 * present them, and Debian's `fail2ban-regex` must find exactly the rejected
 * guesses, each with the client's own address, never one planted in a user
 * name.
 *
 * @module
 */

import assert from "node:assert/strict";
import { needs, skipUnless } from "../support/tools.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const FILTER = `${ROOT}packaging/fail2ban/filter.d/qmail-poppass.conf`;
/** The filter includes common.conf, which comes with Debian's fail2ban. */
const COMMON = "/etc/fail2ban/filter.d/common.conf";
const F2B = onPath("fail2ban-regex");
const DEADLINE_MS = 30_000;
/** The address every crafted user name tries to get banned. */
const P = "1.2.3.4";

/** One fd-2 line; `host`: what fail2ban must report (null: no match). */
interface Entry {
  readonly line: string;
  readonly from: string;
  readonly host: string | null;
  readonly user?: string;
  /** Crafted input the protocol may refuse: a match must carry this host. */
  readonly onlyHost?: string;
}

/** One session: what the client sends and what its log lines must yield. */
interface Case {
  readonly name: string;
  /** TCPREMOTEIP (stdio; unset if absent) or the address dialled (listen). */
  readonly ip?: string;
  /** Client octets, one character per octet. */
  readonly input: string;
  /** Text found in exactly one line: the line under test. */
  readonly marker?: string;
  /** For `marker`'s line: host and user; absent: no line may match. */
  readonly match?: { readonly host: string; readonly user: string };
  readonly crafted?: true;
}

const guess = (user: string) => `user ${user}\r\npass guess\r\n`;

/** [address, USER octets, the user as logged, host when not the address] */
type Rejected = readonly [string, string, string, string?];
const rejected = ([ip, user, logged, host = ip]: Rejected): Case => ({
  name: `rejected ${logged} from ${ip}`,
  ip,
  input: guess(user),
  marker: `authentication failed for ${logged}: rejected, exit 1`,
  match: { host, user: logged },
});

const STDIO_CASES: readonly Case[] = [
  ...([
    ["192.0.2.10", "alice", "alice"],
    ["2001:db8::5", "bob", "bob"],
    ["2001:db8:1::", "carol", "carol"],
    ["::ffff:192.0.2.44", "dave", "dave", "192.0.2.44"],
    // A planted address: whatever could set it apart is logged as "?".
    ["192.0.2.50", `x\xa0ip=${P}`, `x?ip=${P}`],
    ["192.0.2.51", `x]\xa0ip=${P}:`, `x]?ip=${P}:`],
    ["192.0.2.52", `x:\xa0rejected,\xa0ip=${P}`, `x:?rejected,?ip=${P}`],
    ["192.0.2.53", `x\xe3\x80\x80ip=${P}`, `x???ip=${P}`], // U+3000, UTF-8
    ["192.0.2.54", `[${P}]`, `[${P}]`],
    ["192.0.2.55", P, P],
    ["2001:db8::56", `ip=${P}`, `ip=${P}`],
    [
      "192.0.2.57",
      `qmail-poppass[1]\xa0ip=${P}:\xa0authentication\xa0failed\xa0for\xa0y`,
      `qmail-poppass[1]?ip=${P}:?authentication?failed?for?y`,
    ],
  ] satisfies Rejected[]).map(rejected),
  // Space, tab, CR, LF: the protocol decides; no line may name another host.
  ...[
    `x ip=${P}`,
    `x] ip=${P}:`,
    `x\tip=${P}`,
    `x\rqmail-poppass[1] ip=${P}: authentication failed for y: rejected, exit 1`,
    `x\nqmail-poppass[1] ip=${P}: authentication failed for y: rejected, exit 1`,
  ].map((user, i): Case => ({
    name: `crafted ${JSON.stringify(user)}`,
    ip: `192.0.2.${60 + i}`,
    input: guess(user),
    crafted: true,
  })),
  {
    name: "temporary failure",
    ip: "192.0.2.30",
    input: guess("t-111"),
    marker: "authentication failed for t-111: temporary, exit 111",
  },
  {
    name: "success and change",
    ip: "192.0.2.31",
    input: `${guess("t-ok")}newpass fresh\r\nquit\r\n`,
    marker: "Password change for t-ok succeeded",
  },
  {
    name: "protocol error",
    ip: "192.0.2.32",
    input: "pass early\r\n",
    marker: "protocol error: ",
  },
  {
    name: "no TCPREMOTEIP",
    input: guess("erin"),
    marker: "ip=unknown: authentication failed for erin: rejected",
  },
];

const LISTEN_CASES: readonly Case[] = [
  rejected(["127.0.0.1", "frank", "frank"]),
  rejected(["::1", "grace", "grace"]),
];

/** How a log store presents a line; `args`/`options` go to fail2ban-regex. */
interface Style {
  readonly name: string;
  readonly stamp: (line: string, at: Date) => string;
  readonly args?: readonly string[];
  readonly options?: string;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");
const nanos = (at: Date) => `${pad(at.getMilliseconds(), 3)}000000`;
const pidOf = (line: string) => /^qmail-poppass\[(\d+)/.exec(line)?.[1];
const ymd = (at: Date) =>
  `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`;
const hms = (at: Date) =>
  `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");
const bsd = (at: Date) =>
  `${MONTHS[at.getMonth()]} ${String(at.getDate()).padStart(2)} ${hms(at)}`;
const syslog = (line: string, at: Date) =>
  `${bsd(at)} mailhost qmail-poppass[${pidOf(line)}]: ${line}`;

/** daemontools' label: 2^62 + 10 + Unix seconds, then the nanoseconds. */
function tai64n(at: Date): string {
  const s = 2n ** 62n + 10n + BigInt(Math.floor(at.getTime() / 1000));
  const ns = (at.getTime() % 1000) * 1_000_000;
  return `@${s.toString(16)}${ns.toString(16).padStart(8, "0")}`;
}

function rfc3339(at: Date): string {
  const east = -at.getTimezoneOffset();
  const zone = `${east < 0 ? "-" : "+"}${pad(Math.floor(Math.abs(east) / 60))}`;
  return `${ymd(at)}T${hms(at)}.${nanos(at).slice(0, 6)}${zone}:${
    pad(Math.abs(east) % 60)
  }`;
}

const svlogd = (at: Date) =>
  `${at.toISOString().slice(0, 19).replace("T", "_")}.${nanos(at).slice(0, 5)}`;

const STYLES: readonly Style[] = [
  { name: "multilog t (TAI64N)", stamp: (l, at) => `${tai64n(at)} ${l}` },
  {
    name: "tai64nlocal",
    stamp: (l, at) => `${ymd(at)} ${hms(at)}.${nanos(at)} ${l}`,
  },
  {
    name: "svlogd -tt (UTC)",
    stamp: (l, at) => `${svlogd(at)} ${l}`,
    args: ["--timezone=UTC"],
  },
  { name: "syslog", stamp: syslog },
  {
    name: "rsyslog RFC 3339, tag deno",
    stamp: (l, at) => `${rfc3339(at)} mailhost deno[${pidOf(l)}]: ${l}`,
  },
  { name: "journal", stamp: syslog, options: "[logtype=journal]" },
];

Deno.test({
  name: "fail2ban filter: rejected guesses match with the client's address",
  // common.conf comes with fail2ban-regex's package: one apt-get line.
  ignore: needs(import.meta.url, "fail2ban-regex").ignore ||
    skipUnless(
      import.meta.url,
      isFile(COMMON)
        ? undefined
        : `${COMMON} is missing: apt-get install fail2ban`,
    ).ignore,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "qmail-poppass-f2b-" });
    try {
      const entries = await collect(dir);
      const filter = await install(dir);
      for (const style of STYLES) {
        await t.step(
          `${style.name}: fail2ban-regex agrees`,
          () => checkStyle(dir, filter, style, entries),
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Run every case; tag each line it logged with what the filter must do. */
async function collect(dir: string): Promise<Entry[]> {
  const check = `${dir}/check`;
  const set = `${dir}/set`;
  await Deno.writeTextFile(
    check,
    "#!/bin/sh\n# checkpassword: t-ok exits 0, t-111 exits 111, others 1\n" +
      "payload=$(tr '\\0' '\\n' <&3)\n" +
      "case $payload in t-ok*) exit 0 ;; t-111*) exit 111 ;; esac\nexit 1\n",
    { mode: 0o755 },
  );
  await Deno.writeTextFile(set, "#!/bin/sh\ncat <&3 >/dev/null\nexit 0\n", {
    mode: 0o755,
  });
  const program = ["mail.example.org", check];
  const entries: Entry[] = [];
  for (let i = 0; i < STDIO_CASES.length; i += 4) {
    const batch = STDIO_CASES.slice(i, i + 4);
    const logs = await Promise.all(
      batch.map((c) => runStdio(c, program, set)),
    );
    batch.forEach((c, k) => entries.push(...expect(c, logs[k]!)));
  }
  const lines = await runListen(LISTEN_CASES, program, set);
  const session = (c: Case) => (l: string) => l.includes(` ip=${c.ip}: `);
  for (const c of LISTEN_CASES) {
    const mine = lines.filter(session(c));
    const line = mine.find((l) => l.includes(c.marker!)) ?? "";
    assert.match(line, /^qmail-poppass\[\d+\.\d+\] /, "listen-mode id");
    entries.push(...expect(c, mine));
  }
  for (const line of lines) {
    if (!LISTEN_CASES.some((c) => session(c)(line))) {
      entries.push({ line, from: "listener", host: null });
    }
  }
  const unique = new Set(entries.map((e) => e.line));
  assert.equal(unique.size, entries.length, "log lines are unique");
  return entries;
}

function expect(c: Case, lines: readonly string[]): Entry[] {
  if (c.marker !== undefined) {
    const hits = lines.filter((l) => l.includes(c.marker!)).length;
    assert.equal(hits, 1, `${c.name}: ${c.marker} in\n${lines.join("\n")}`);
  }
  return lines.map((line): Entry => {
    const from = c.name;
    if (c.crafted) return { line, from, host: null, onlyHost: c.ip! };
    if (c.match && line.includes(c.marker!)) return { line, from, ...c.match };
    return { line, from, host: null };
  });
}

/** One stdio session: the case's octets on stdin, its fd-2 lines back. */
async function runStdio(c: Case, program: string[], set: string) {
  const env = c.ip === undefined ? {} : { TCPREMOTEIP: c.ip };
  const child = spawnMain(program, set, env, "piped");
  const deadline = killAfter(child, c.name);
  try {
    const writer = child.stdin.getWriter();
    const input = Uint8Array.from(c.input, (ch) => ch.charCodeAt(0));
    await writer.write(input).catch(() => {});
    await writer.close().catch(() => {});
    const out = await child.output();
    assert(!deadline.fired(), `${c.name}: no end in ${DEADLINE_MS} ms`);
    return new TextDecoder().decode(out.stderr).split("\n").filter(Boolean);
  } finally {
    deadline.cancel();
  }
}

/** One listen-mode process on 127.0.0.1 and [::1]: a session per case, then SIGTERM. */
async function runListen(
  cases: readonly Case[],
  program: string[],
  set: string,
) {
  const listen = ["--listen", "127.0.0.1:0", "--listen", "[::1]:0"];
  const child = spawnMain([...listen, ...program], set, {}, "null");
  const deadline = killAfter(child, "listen mode");
  const reader = child.stderr.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let stopping = false;
  const until = async (what: RegExp | "eof") => {
    while (what === "eof" || !what.test(text)) {
      const { value, done } = await reader.read();
      if (done && what === "eof") return;
      assert(!done, `listen mode: fd 2 ended before ${what}:\n${text}`);
      text += decoder.decode(value, { stream: true });
    }
  };
  try {
    await until(/listening on .*;/);
    const bound = /listening on (.*?);/.exec(text)![1]!.split(", ");
    for (const c of cases) {
      const where = bound.find((b) =>
        b.startsWith(`${c.ip}:`) || b.startsWith(`[${c.ip}]:`)
      );
      const port = Number(/:(\d+) /.exec(where ?? "")?.[1]);
      const conn = await Deno.connect({ hostname: c.ip!, port });
      try {
        await conn.write(Uint8Array.from(c.input, (ch) => ch.charCodeAt(0)));
        await until(new RegExp(`ip=${c.ip!.replaceAll(".", "\\.")}: auth`));
      } finally {
        conn.close();
      }
    }
    stopping = true;
    child.kill("SIGTERM");
    await until("eof");
  } finally {
    if (!stopping) {
      try {
        child.kill("SIGTERM");
      } catch {
        // it has ended already
      }
    }
    await reader.cancel().catch(() => {});
    await child.status;
    deadline.cancel();
  }
  assert(!deadline.fired(), `listen mode: no end in ${DEADLINE_MS} ms`);
  return text.split("\n").filter(Boolean);
}

/** `main.ts` with no failure delay and fake back ends; stdout is ignored. */
function spawnMain(
  args: readonly string[],
  set: string,
  extra: Record<string, string>,
  stdin: "piped" | "null",
): Deno.ChildProcess {
  const env = Deno.env.toObject();
  for (const name of Object.keys(env)) {
    if (/^(TCP|PROTO$|POPPASS_)/.test(name)) delete env[name];
  }
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `${ROOT}main.ts`,
      "--fail-delay",
      "0",
      ...args,
    ],
    cwd: ROOT,
    env: { ...env, NO_COLOR: "1", PASSWORD_COMMAND: set, ...extra },
    clearEnv: true,
    stdin,
    stdout: stdin === "piped" ? "piped" : "null",
    stderr: "piped",
  }).spawn();
}

/** The filter as installed: filter.d/ with the system's common.conf beside it. */
async function install(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/filter.d`);
  await Deno.copyFile(COMMON, `${dir}/filter.d/common.conf`);
  await Deno.copyFile(FILTER, `${dir}/filter.d/qmail-poppass.conf`);
  return `${dir}/filter.d/qmail-poppass.conf`;
}

/** Store every line in one style; fail2ban-regex must agree with the entries. */
async function checkStyle(
  dir: string,
  filter: string,
  style: Style,
  entries: readonly Entry[],
) {
  // An hour back: a line whose stamp fail2ban cannot read would get "now".
  const start = Date.now() - 3_600_000;
  const stored = entries.map((e, i) =>
    style.stamp(e.line, new Date(start + i))
  );
  const log = `${dir}/${style.name.replace(/\W+/g, "-")}.log`;
  await Deno.writeTextFile(log, stored.join("\n") + "\n");
  const flt = filter + (style.options ?? "");
  const [summary, rows] = await Promise.all([
    fail2banRegex([...style.args ?? [], "--print-all-matched", log, flt]),
    fail2banRegex([
      ...style.args ?? [],
      "-o",
      "<ip> <time> <F-USER> <msg>",
      log,
      flt,
    ]),
  ]);
  const found = new Map<string, { ip: string; time: number; user: string }>();
  for (const row of rows.split("\n").filter(Boolean)) {
    const [ip, time, user, ...msg] = row.split(" ");
    found.set(msg.join(" "), { ip: ip!, time: Number(time), user: user! });
  }
  const problems: string[] = [];
  entries.forEach((e, i) => {
    const hit = found.get(stored[i]!);
    const say = (what: string) =>
      problems.push(`${what} (${e.from}): ${stored[i]}`);
    if (hit?.ip === P) say(`PLANTED host ${P}`);
    else if (e.onlyHost !== undefined) {
      if (hit && hit.ip !== e.onlyHost) say(`forged host ${hit.ip}`);
    } else if (e.host === null) {
      if (hit) say(`must not match, got ${hit.ip}`);
    } else if (!hit) say("missed");
    else if (hit.ip !== e.host || hit.user !== e.user) {
      say(`got ${hit.ip} / ${hit.user}, want ${e.host} / ${e.user}`);
    } else {
      const late = hit.time - (start + i) / 1000; // TAI64N runs 10 s ahead
      if (late < -2 || late > 12) say(`date read as ${hit.time}`);
    }
  });
  assert.deepEqual(problems, [], `${style.name}:\n${problems.join("\n")}`);

  const should = stored.filter((l, i) =>
    entries[i]!.host !== null || found.has(l)
  );
  const counts =
    /Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed/
      .exec(summary)?.slice(1).map(Number);
  assert.deepEqual(
    counts,
    [stored.length, 0, should.length, stored.length - should.length],
    `${style.name}: summary\n${summary}`,
  );
  const listed = summary.split("|- Matched line(s):\n")[1]?.split("\n`-")[0];
  assert.deepEqual(
    new Set(listed?.split("\n").map((l) => l.slice(3))),
    new Set(should),
    `${style.name}: matched lines`,
  );
  const [total, ignored, matched, missed] = counts!;
  console.log(
    `${style.name}: ${total} lines, ${ignored} ignored, ${matched} matched, ${missed} missed`,
  );
}

async function fail2banRegex(args: readonly string[]): Promise<string> {
  const child = new Deno.Command(F2B!, {
    args: [...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const deadline = killAfter(child, "fail2ban-regex");
  try {
    const out = await child.output();
    assert(!deadline.fired(), `fail2ban-regex: no end in ${DEADLINE_MS} ms`);
    const err = new TextDecoder().decode(out.stderr);
    assert(out.success, `fail2ban-regex ${args.join(" ")}: ${err}`);
    return new TextDecoder().decode(out.stdout);
  } finally {
    deadline.cancel();
  }
}

/** SIGKILL the child if it outlives the deadline. */
function killAfter(child: Deno.ChildProcess, what: string) {
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    console.error(`${what}: killed after ${DEADLINE_MS} ms`);
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, DEADLINE_MS);
  return { cancel: () => clearTimeout(timer), fired: () => fired };
}

function onPath(name: string): string | undefined {
  const dirs = (Deno.env.get("PATH") ?? "").split(":");
  return dirs.map((d) => `${d || "."}/${name}`).find(isFile);
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
