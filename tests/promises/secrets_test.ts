/**
 * Secrets stay secret (test plan promise 7, case 23): every password is a
 * unique marker `Mk-<hex>-…`, and every path that handles one is provoked —
 * protocol errors that carry a password, NUL and CR inside it, overlong and
 * unterminated lines, the idle deadline mid-line, payloads over the cap,
 * every back-end fault, clients that vanish mid-check and mid-set, back ends
 * that print their fd-3 payload (at the log's octet and line cuts, split
 * across writes, on stdout and stderr), and the built-in passwd-file back
 * end. Then the markers are searched, also as hex, in the server's stderr,
 * tcpserver's stderr, every reply, and the ledger's argv and environment
 * fields: zero hits. The ledger's fd-3 field legitimately holds passwords
 * and is the one place not searched. The model and leak tests run the same
 * scan after each of their runs.
 */

import assert from "node:assert/strict";
import { readAccounts, writeAccounts } from "../support/accounts.ts";
import { bytes, hex, latin1, type Part } from "../support/bytes.ts";
import { checkLedger } from "../support/checker.ts";
import { Client } from "../support/client.ts";
import { type LedgerEntry, readLedger } from "../support/ledger.ts";
import { waitUntil } from "../support/time.ts";
import { R } from "../support/pinned_replies.ts";
import {
  baseEnv,
  FAKEAUTH,
  HOST,
  MAIN,
  QUICK,
  Sandbox,
} from "../support/sandbox.ts";
import { StdioServer } from "../support/stdio.ts";
import type { Transcript } from "../support/talk.ts";
import { Tcpserver } from "../support/tcpserver.ts";
import { Server } from "../support/listen_server.ts";
import {
  forEachLauncher,
  type Launcher,
  spawnerOf,
} from "../support/fd3exec.ts";
import { programBackend } from "../../lib/stores/programs/programs.ts";
import { needs, testWith } from "../support/tools.ts";

const TIMINGS = QUICK;

/** A fresh marker: `Mk-<hex>`. */
function marker(): string {
  const octets = crypto.getRandomValues(new Uint8Array(6));
  return `Mk-${
    Array.from(octets, (b) => b.toString(16).padStart(2, "0")).join("")
  }`;
}

/** Where a marker was found, or nothing. */
function hits(mark: string, places: Record<string, string>): string[] {
  const asHex = hex(bytes(mark));
  return Object.entries(places).flatMap(([where, text]) => [
    ...(text.includes(mark) ? [where] : []),
    ...(text.includes(asHex) ? [`${where} (as hex)`] : []),
  ]);
}

/** The ledger's argv and environment fields, never its fd-3 field. */
function ledgerText(ledger: readonly LedgerEntry[]): string {
  return ledger.map((e) =>
    [...e.argv.map(latin1), ...Object.values(e.env)].join("\t")
  ).join("\n");
}

/** The passwords of one provocation. */
interface Passwords {
  readonly old: string;
  readonly fresh: string;
  readonly wrong: string;
}

/** One attempt to make a password leak. */
interface Provocation {
  readonly name: string;
  /** fakeauth's behaviour by prefix; the account holds `old`. */
  readonly prefix: string;
  /** Octets the client sends, in order (a reply is awaited after each LF-ended part). */
  readonly lines: (user: string, pw: Passwords) => Part[];
  /** Then: EOF, wait for the idle deadline, or vanish without reading. */
  readonly end: "eof" | "wait" | "vanish";
  /** stdio mode only: extra environment (forced fakeauth behaviour). */
  readonly env?: Record<string, string>;
}

const login = (u: string, pw: Passwords) => [
  `user ${u}\r\n`,
  `pass ${pw.old}\r\n`,
];
const change = (u: string, pw: Passwords) => [
  ...login(u, pw),
  `newpass ${pw.fresh}\r\n`,
];

const PROVOCATIONS: readonly Provocation[] = [
  {
    name: "pass before user",
    prefix: "u",
    lines: (_, pw) => [`pass ${pw.old}\r\n`],
    end: "eof",
  },
  {
    name: "newpass before user",
    prefix: "u",
    lines: (_, pw) => [`NEWPASS ${pw.fresh}\r\n`],
    end: "eof",
  },
  {
    name: "newpass after user",
    prefix: "u",
    lines: (u, pw) => [`user ${u}\r\n`, `newpass ${pw.fresh}\r\n`],
    end: "eof",
  },
  {
    name: "pass again after auth",
    prefix: "u",
    lines: (u, pw) => [...login(u, pw), `PASS ${pw.wrong}\r\n`],
    end: "eof",
  },
  {
    name: "newpass after the change",
    prefix: "u",
    lines: (u, pw) => [...change(u, pw), `newpass ${pw.wrong}\r\n`],
    end: "eof",
  },
  {
    name: "NUL inside the old password",
    prefix: "u",
    lines: (u, pw) => [`user ${u}\r\n`, `pass ${pw.old}\0tail\r\n`],
    end: "eof",
  },
  {
    name: "CR inside the new password",
    prefix: "u",
    lines: (u, pw) => [...login(u, pw), `newpass ${pw.fresh}\rtail\r\n`],
    end: "eof",
  },
  {
    name: "a password in an overlong line",
    prefix: "u",
    lines: (u, pw) => [`user ${u}\r\n`, `pass ${pw.old}${"x".repeat(600)}\r\n`],
    end: "eof",
  },
  {
    name: "an unterminated pass line, then EOF",
    prefix: "u",
    lines: (u, pw) => [`user ${u}\r\n`, `pass ${pw.old}`],
    end: "eof",
  },
  {
    name: "an unterminated newpass line, then the idle deadline",
    prefix: "u",
    lines: (u, pw) => [...login(u, pw), `newpass ${pw.fresh}`],
    end: "wait",
  },
  {
    name: "a check payload over 512 octets",
    prefix: "u",
    lines: (u, pw) => [`user ${u}\r\n`, `pass ${pw.old}${"L".repeat(475)}\r\n`],
    end: "eof",
  },
  {
    name: "a change payload over 512 octets",
    prefix: "u",
    lines: (
      u,
      pw,
    ) => [...login(u, pw), `newpass ${pw.fresh}${"L".repeat(460)}\r\n`],
    end: "eof",
  },
  {
    name: "a wrong password",
    prefix: "u",
    lines: (u, pw) => [`user ${u}\r\n`, `pass ${pw.wrong}\r\n`],
    end: "eof",
  },
  {
    name: "an unknown user",
    prefix: "u",
    lines: (u, pw) => [`user zz${u}\r\n`, `pass ${pw.old}\r\n`],
    end: "eof",
  },
  ...["e2", "e3", "e111", "sig", "hang"].map((prefix): Provocation => ({
    name: `a check that ends with ${prefix}`,
    prefix,
    lines: login,
    end: "eof",
  })),
  ...["e3", "e111", "sig", "hang"].map((fault): Provocation => ({
    name: `a set that ends with ${fault}`,
    prefix: `set-${fault}`,
    lines: change,
    end: "eof",
  })),
  {
    name: "a check that never reads fd 3",
    prefix: "u",
    lines: login,
    end: "eof",
    env: { FAKEAUTH_BEHAVE_CHECK: "noread" },
  },
  {
    name: "a set that never reads fd 3",
    prefix: "u",
    lines: change,
    end: "eof",
    env: { FAKEAUTH_BEHAVE_SET: "noread" },
  },
  {
    name: "a noisy back end",
    prefix: "noise",
    lines: (u, pw) => [...change(u, pw), "quit\r\n"],
    end: "eof",
  },
  {
    name: "a check and a set that print their payload",
    prefix: "echo",
    lines: (u, pw) => [...change(u, pw), "quit\r\n"],
    end: "eof",
  },
  {
    name: "a set that prints its payload",
    prefix: "set-echo",
    lines: change,
    end: "eof",
  },
  {
    name: "a client that vanishes during the check",
    prefix: "slow",
    lines: login,
    end: "vanish",
  },
  {
    name: "a client that vanishes during the set",
    prefix: "set-slow",
    lines: change,
    end: "vanish",
  },
];

function passwords(mark: string, i: number): Passwords {
  return {
    old: `${mark}-${i}o pw \u00fc ip=192.0.2.1`,
    fresh: `${mark}-${i}n pw \u00e9`,
    wrong: `${mark}-${i}w pw`,
  };
}

/** Send the parts; after each LF-ended one, wait for a reply unless the end is near. */
async function play(
  talk: {
    send(...p: Part[]): Promise<boolean>;
    reply(ms?: number): Promise<string>;
  },
  parts: readonly Part[],
  vanish: boolean,
): Promise<void> {
  await talk.reply();
  for (const [i, part] of parts.entries()) {
    if (!(await talk.send(part))) return;
    const last = i === parts.length - 1;
    if (bytes(part).at(-1) !== 0x0a || (last && vanish)) continue;
    const reply = await talk.reply(4_000).catch(() => R.bye);
    if (reply.startsWith("500") || reply === R.bye) return;
  }
}

const test = testWith(needs(import.meta.url, "tcpserver"));

Deno.test("secrets: no password in stdio logs, replies or back-end argv/env, whatever fails", async () => {
  await using box = await Sandbox.create();
  const mark = marker();
  const transcripts: Transcript[] = [];
  const ledger: LedgerEntry[] = [];
  const logs: string[] = [];
  // Each session has its own server process, account file and ledger, so
  // it is checked on its own (pids get reused on a busy machine).
  const one = async (p: Provocation, i: number) => {
    const user = `${p.prefix}x${i}`;
    const pw = passwords(mark, i);
    const files = {
      FAKEAUTH_ACCOUNTS: `${box.dir}/accounts-${i}`,
      FAKEAUTH_LEDGER: `${box.dir}/ledger-${i}`,
    };
    const before = await writeAccounts(files.FAKEAUTH_ACCOUNTS, [[
      user,
      pw.old,
    ]]);
    await using server = new StdioServer({
      args: [...TIMINGS, HOST, FAKEAUTH, "check"],
      env: {
        ...baseEnv(),
        ...box.env({ ...files, ...p.env }),
        PASSWORD_COMMAND: `${FAKEAUTH} set`,
      },
    });
    await play(server.talk, p.lines(user, pw), p.end === "vanish");
    if (p.end === "vanish") await server.vanish();
    if (p.end === "eof") await server.closeStdin();
    const ended = await server.exit(8_000);
    assert.equal(ended.code, 0, `${p.name}: exit ${ended.code}\n${server.log}`);
    await server.talk.incoming.done;
    const transcript = server.talk.transcript();
    const runs = await readLedger(files.FAKEAUTH_LEDGER);
    checkLedger({
      transcripts: [transcript],
      ledger: runs,
      before,
      after: await readAccounts(files.FAKEAUTH_ACCOUNTS),
    });
    transcripts.push(transcript);
    ledger.push(...runs);
    logs.push(server.log);
  };
  for (let at = 0; at < PROVOCATIONS.length; at += 6) {
    await Promise.all(
      PROVOCATIONS.slice(at, at + 6).map((p, k) => one(p, at + k)),
    );
  }
  const log = logs.join("\n");
  assert.match(
    log,
    /stdout: (set-)?echox\d+\?\*{10,}/,
    "the echo back end's output was logged",
  );
  assert.deepEqual(
    hits(mark, {
      "server log": log,
      replies: transcripts.map((t) => latin1(t.received)).join("\n"),
      "ledger argv/env": ledgerText(ledger),
    }),
    [],
  );
});

/**
 * The same provocations (those that need no per-process environment)
 * against one server, one at a time: each session is checked on its own
 * with a fresh ledger, because the ledger knows a session only by its
 * client port, and loopback ports get reused (tcp_tw_reuse=2).
 */
async function overSockets(
  box: Sandbox,
  server: {
    connect(): Promise<Client>;
    /** Wait (bounded) until every session so far has ended. */
    settle(): Promise<void>;
  },
  mark: string,
): Promise<{ transcripts: Transcript[]; ledger: LedgerEntry[] }> {
  const transcripts: Transcript[] = [];
  const ledger: LedgerEntry[] = [];
  for (const [i, p] of PROVOCATIONS.entries()) {
    if (p.env) continue;
    const user = `${p.prefix}x${i}`;
    const before = await box.accounts();
    await Deno.writeTextFile(box.ledgerPath, "");
    await using client = await server.connect();
    await play(
      client.talk,
      p.lines(user, passwords(mark, i)),
      p.end === "vanish",
    );
    if (p.end === "vanish") {
      await client.close();
    } else {
      if (p.end === "eof") await client.closeWrite();
      await client.talk.closed(8_000);
    }
    await server.settle();
    const transcript = client.talk.transcript();
    const runs = await box.ledger();
    checkLedger({
      transcripts: [transcript],
      ledger: runs,
      before,
      after: await box.accounts(),
      sessionOf: (e) => e.env.TCPREMOTEPORT ?? "?",
    });
    transcripts.push(transcript);
    ledger.push(...runs);
  }
  return { transcripts, ledger };
}

/** Accounts for every provocation's user, in one file (these sessions run one at a time). */
function sharedAccounts(mark: string): [string, string][] {
  return PROVOCATIONS.map((p, i) => [
    `${p.prefix}x${i}`,
    passwords(mark, i).old,
  ]);
}

test("secrets: no password in tcpserver's stderr, replies or back-end argv/env", async () => {
  const mark = marker();
  await using box = await Sandbox.create(sharedAccounts(mark));
  await using server = await Tcpserver.start({
    program: [MAIN, ...TIMINGS, HOST, FAKEAUTH, "check"],
    env: { ...baseEnv(), ...box.env(), PASSWORD_COMMAND: `${FAKEAUTH} set` },
  });
  const { transcripts, ledger } = await overSockets(box, {
    connect: () => server.connect(),
    settle: async () => void await server.idle(undefined, 15_000),
  }, mark);
  assert.match(server.log, /stdout: (set-)?echox\d+\?\*{10,}/);
  assert.deepEqual(
    hits(mark, {
      "tcpserver stderr": server.log,
      replies: transcripts.map((t) => latin1(t.received)).join("\n"),
      "ledger argv/env": ledgerText(ledger),
    }),
    [],
  );
});

forEachLauncher(
  "secrets: no password in the listen server's log, replies, back-end argv/env or fd3spawn's",
  listenSecrets,
  ["sh", "spawner"],
);

async function listenSecrets(launch: Launcher) {
  const mark = marker();
  await using box = await Sandbox.create(sharedAccounts(mark));
  await using server = await Server.start({
    options: [...launch.flags, "--listen", "127.0.0.1:0", ...TIMINGS],
    check: [FAKEAUTH, "check"],
    password: `${FAKEAUTH} set`,
    hostname: HOST,
    env: box.env(),
  });
  let connected = 0;
  const ended = () => server.grep(/: session end: /).length;
  const { transcripts, ledger } = await overSockets(box, {
    connect: () => {
      connected++;
      return Client.connect(server.port());
    },
    settle: async () => {
      assert.ok(await waitUntil(() => ended() >= connected, 15_000));
    },
  }, mark);
  // fd3spawn's own argv and environment, while it still runs.
  const spawner = launch.name === "fd3spawn"
    ? procText(spawnerOf(server.pid))
    : "";
  assert.equal(launch.name === "fd3spawn", spawner !== "");
  await server.stop();
  const log = server.logs.join("\n");
  assert.match(log, /stdout: (set-)?echox\d+\?\*{10,}/);
  assert.deepEqual(
    hits(mark, {
      "server log": log,
      "server stdout": server.stdout,
      replies: transcripts.map((t) => latin1(t.received)).join("\n"),
      "ledger argv/env": ledgerText(ledger),
      "fd3spawn argv/env": spawner,
    }),
    [],
  );
}

/** A process's argv and environment as text; empty when it is gone. */
function procText(pid: number): string {
  try {
    return ["cmdline", "environ"].map((f) =>
      latin1(Deno.readFileSync(`/proc/${pid}/${f}`))
    ).join("\n");
  } catch {
    return "";
  }
}

/** A back end that copies its fd-3 payload into its output the way $WAY says, then exits 0. */
const PRINTER = `#!/bin/sh
p=$(mktemp) || exit 111
cat <&3 >"$p"
case $WAY in
  stdout) cat "$p" ;;
  stderr) cat "$p" >&2 ;;
  octet-cut)
    for i in $(seq 19); do head -c 204 /dev/zero | tr '\\0' x; echo; done
    head -c "$((205 - SPLIT))" /dev/zero | tr '\\0' x; cat "$p" ;;
  line-cut) head -c 190 /dev/zero | tr '\\0' x; cat "$p"; echo ;;
  split) head -c "$SPLIT" "$p"; sleep 0.2; tail -c +"$((SPLIT + 1))" "$p" ;;
  line-cap) seq 19; cat "$p"; echo; cat "$p" ;;
  twice) cat "$p"; echo; cat "$p" >&2; cat "$p" ;;
esac
rm -f "$p"
`;

/**
 * Where the payload lands in the captured output: whole, on stderr, its
 * old password across the 4096-octet log cut (at octet 4094, column 199 of
 * the 20th line), across the 200-character line cut, split over two writes
 * (two reads), on the 20th line and past the line cap, twice.
 */
const WAYS = [
  "stdout",
  "stderr",
  "octet-cut",
  "line-cut",
  "split",
  "line-cap",
  "twice",
];

forEachLauncher(
  "secrets: through fd3spawn, a back end that prints its payload gets it blanked out at every cut",
  async (launch, t) => {
    await using box = await Sandbox.create();
    const printer = `${box.dir}/printer`;
    await Deno.writeTextFile(printer, PRINTER);
    await Deno.chmod(printer, 0o755);
    const mark = marker();
    const backend = programBackend({
      checkArgv: [printer, "check"],
      setArgv: [printer, "set"],
      childTimeoutMs: 10_000,
      starter: launch.starter,
    });
    for (const [i, way] of WAYS.entries()) {
      await t.step(way, async () => {
        const user = `pu${i}`;
        const pw = passwords(mark, i);
        const log: string[] = [];
        const peer = {
          remoteIp: "127.0.0.1",
          env: { WAY: way, SPLIT: String(user.length + 1 + 6) },
          log: (m: string) => log.push(m),
        };
        const u = bytes(user);
        assert.deepEqual(await backend.check(u, bytes(pw.old), peer), {
          kind: "ok",
        });
        assert.deepEqual(
          await backend.change(u, bytes(pw.old), bytes(pw.fresh), peer),
          { kind: "ok" },
        );
        const text = log.join("\n");
        assert.match(
          text,
          /printer std(out|err): .*\*/,
          "blanked output logged",
        );
        assert.deepEqual(hits(mark, { log: text }), []);
      });
    }
  },
  ["spawner"],
);

Deno.test("secrets: a back end that prints its payload gets it blanked out at every cut", async (t) => {
  await using box = await Sandbox.create();
  const printer = `${box.dir}/printer`;
  await Deno.writeTextFile(printer, PRINTER);
  await Deno.chmod(printer, 0o755);
  const mark = marker();
  const logs: string[] = [];
  for (const [i, way] of WAYS.entries()) {
    await t.step(way, async () => {
      const user = `pu${i}`;
      const pw = passwords(mark, i);
      await using server = new StdioServer({
        args: [...TIMINGS, HOST, printer, "check"],
        env: {
          ...baseEnv(),
          PASSWORD_COMMAND: `${printer} set`,
          WAY: way,
          SPLIT: String(user.length + 1 + 6),
        },
      });
      await play(server.talk, [...change(user, pw), "quit\r\n"], false);
      await server.closeStdin();
      assert.deepEqual(await server.exit(), { code: 0, signal: null });
      assert.ok(
        server.talk.received.endsWith(R.passOk + R.changed + R.bye),
        server.talk.received,
      );
      const log = server.log;
      assert.match(
        log,
        /printer std(out|err): .*\*/,
        "blanked output logged",
      );
      assert.deepEqual(hits(mark, { log, replies: server.talk.received }), []);
      logs.push(log);
    });
  }
  assert.equal(logs.length, WAYS.length);
});

Deno.test("secrets: the passwd-file back end logs no password, and stores none in clear after a change", async () => {
  await using box = await Sandbox.create();
  const mark = marker();
  const pw = passwords(mark, 0);
  const file = `${box.dir}/passwd`;
  await Deno.writeTextFile(file, `pf:{PLAIN}${pw.old}\n`);
  const attempts: Part[][] = [
    [`user pf\r\n`, `pass ${pw.wrong}\r\n`],
    [`user zzpf\r\n`, `pass ${pw.old}\r\n`],
    [...login("pf", pw), `newpass ${pw.old}\r\n`],
    [...login("pf", pw), `newpass short\r\n`],
    [...login("pf", pw), `newpass ${pw.fresh}\r\n`, "quit\r\n"],
    [`user pf\r\n`, `pass ${pw.old}\r\n`],
    [`user pf\r\n`, `pass ${pw.fresh}\r\n`, "quit\r\n"],
  ];
  const expected = [
    R.userOk + R.authFailed,
    R.userOk + R.authFailed,
    R.userOk + R.passOk + R.changeFailed,
    R.userOk + R.passOk + R.changeFailed,
    R.userOk + R.passOk + R.changed + R.bye,
    R.userOk + R.authFailed,
    R.userOk + R.passOk + R.bye,
  ];
  const logs: string[] = [];
  const replies: string[] = [];
  for (const lines of attempts) {
    await using server = new StdioServer({
      args: [
        ...TIMINGS,
        "--passwd-file",
        file,
        "--passwd-scheme",
        "SHA512-CRYPT",
        HOST,
      ],
      env: baseEnv(),
    });
    await play(server.talk, lines, false);
    await server.closeStdin();
    assert.deepEqual(await server.exit(), { code: 0, signal: null });
    logs.push(server.log);
    replies.push(
      server.talk.received.slice(server.talk.received.indexOf("\r\n") + 2),
    );
  }
  assert.deepEqual(replies, expected);
  const stored = await Deno.readTextFile(file);
  assert.match(stored, /^pf:\{SHA512-CRYPT\}\$6\$/);
  assert.deepEqual(
    hits(mark, { log: logs.join("\n"), "passwd file": stored }),
    [],
  );
});
