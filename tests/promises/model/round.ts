/**
 * One property run: drive 3-5 sessions at once against a server, then
 * check the model, the ledger checker (promises 1-3), the failure delay
 * (promise 5) and the secrets scan (promise 7).
 *
 * @module
 */

import { readAccounts, writeAccounts } from "../../support/accounts.ts";
import { bytes, hex, latin1, show } from "../../support/bytes.ts";
import { checkLedger } from "../../support/checker.ts";
import type { Client } from "../../support/client.ts";
import type { LedgerEntry } from "../../support/ledger.ts";
import { sleep } from "../../support/time.ts";
import { R } from "../../support/pinned_replies.ts";
import type { Sandbox } from "../../support/sandbox.ts";
import { WAIT_MS } from "./settings.ts";
import type { Script } from "./scripts.ts";
import { lines, partial, type World, world } from "./world.ts";
import { secretHits, type Seen, verify } from "./verify.ts";
import { accountsOf } from "./targets.ts";

/** Run one session's lines over its connection. */
async function drive(
  client: Client,
  s: Script,
  w: World,
): Promise<Seen> {
  const { talk } = client;
  const all = lines(s, w);
  const tail = partial(s, w);
  const times: (number | undefined)[] = [];
  const problems: string[] = [];
  let dropped = false;
  let sentTail = 0;
  try {
    if (s.send === "pipeline") {
      const data = bytes(...all, tail);
      const cuts = [...new Set(s.cuts.filter((c) => c < data.length))]
        .sort((a, b) => a - b);
      for (const [i, end] of [...cuts, data.length].entries()) {
        if (i > 0) await sleep(5);
        await talk.send(data.subarray(cuts[i - 1] ?? 0, end));
      }
      sentTail = tail.length;
      dropped = s.end === "drop";
    } else {
      await talk.reply(WAIT_MS);
      let open = true;
      for (const [i, line] of all.entries()) {
        const sentAt = performance.now();
        if (!(await talk.send(line))) {
          open = false;
          break;
        }
        if (i === all.length - 1 && s.end === "drop") break;
        const reply = await talk.reply(WAIT_MS);
        times[i] = performance.now() - sentAt;
        if (reply.startsWith("500") || reply === R.bye) {
          open = false;
          break;
        }
      }
      if (open && tail.length > 0 && await talk.send(tail)) {
        sentTail = tail.length;
      }
      dropped = open && s.end === "drop";
    }
    if (!dropped) {
      if (s.end === "eof") await client.closeWrite();
      await talk.closed(WAIT_MS);
    }
  } catch (error) {
    problems.push(`client: ${(error as Error).message}`);
  } finally {
    await client.close();
  }
  const t = talk.transcript();
  return {
    script: s,
    world: w,
    port: client.localPort,
    sent: t.sent,
    received: t.received,
    times,
    dropped,
    partial: sentTail,
    problems,
  };
}

/** A server under test: how to reach it and how to know its sessions are over. */
export interface Target {
  readonly name: string;
  readonly box: Sandbox;
  /** Where the wrapper reads `PORT MODE BEHAVIOUR` lines. */
  readonly forcePath: string;
  connect(): Promise<Client>;
  /** Wait (bounded) until every session so far has ended; a string says what is wrong. */
  settle(): Promise<string[]>;
  log(): string;
  /** The pid that must have run this session's children, if known. */
  parentOf?(runs: readonly LedgerEntry[]): string | undefined;
}

let runCounter = 0;

/** Counts for the summary line each model test prints. */
const stats = new Map<string, number>();
function count(key: string, n = 1): void {
  stats.set(key, (stats.get(key) ?? 0) + n);
}

/** Print and reset the counts: sessions, kinds, endings, replies. */
export function summary(name: string): void {
  const line = [...stats].sort(([a], [b]) => a.localeCompare(b)).map((
    [k, v],
  ) => `${k}=${v}`).join(", ");
  console.log(`${name}: ${line}`);
  stats.clear();
}

/** One property run: fresh accounts and ledger, sessions at once, then every check. */
export async function round(
  target: Target,
  scripts: readonly Script[],
): Promise<void> {
  const run = ++runCounter;
  const token = Array.from(
    crypto.getRandomValues(new Uint8Array(4)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const worlds = scripts.map((s, i) => world(s, run, i, token));
  const { box } = target;
  await writeAccounts(box.accountsPath, []);
  await Deno.writeTextFile(box.ledgerPath, "");
  const clients: Client[] = [];
  const before = new Map<string, Uint8Array>();
  let seen: Seen[];
  try {
    for (const _ of scripts) clients.push(await target.connect());
    for (const [i, c] of clients.entries()) {
      const w = worlds[i]!;
      const own = await writeAccounts(accountsOf(box, c.localPort), [[
        w.own,
        w.right,
      ]]);
      for (const [user, password] of own) before.set(user, password);
    }
    await Deno.writeTextFile(
      target.forcePath,
      worlds.map((w, i) =>
        w.kind.force ? `${clients[i]!.localPort} ${w.kind.force} noread\n` : ""
      ).join(""),
    );
    seen = await Promise.all(
      clients.map((c, i) => drive(c, scripts[i]!, worlds[i]!)),
    );
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
  const problems = await target.settle();
  const ledger = await box.ledger();
  const after = new Map<string, Uint8Array>();
  for (const s of seen) {
    const path = accountsOf(box, s.port);
    for (const [user, password] of await readAccounts(path)) {
      after.set(user, password);
    }
    await Deno.remove(path);
  }
  const byPort = (port: number) =>
    ledger.filter((e) => e.env.TCPREMOTEPORT === String(port));
  count("runs");
  for (const [i, s] of seen.entries()) {
    count("sessions");
    count(`kind:${s.script.kind}`);
    count(`end:${s.script.send}/${s.script.end}`);
    for (const r of latin1(s.received).split("\r\n").slice(1, -1)) {
      count(`reply:${r.slice(0, 24)}`);
    }
    const mine = byPort(s.port);
    count("backend runs", mine.length);
    const verdict = verify(s, mine);
    const got = after.get(hex(s.world.own));
    if (!got || !verdict.account.has(hex(got))) {
      verdict.problems.push(`account holds ${got ? show(got) : "nothing"}`);
    }
    const parent = target.parentOf?.(mine);
    if (parent) verdict.problems.push(parent);
    for (const p of verdict.problems) problems.push(`session ${i}: ${p}`);
  }
  try {
    checkLedger({
      transcripts: seen.map((s) => ({
        session: String(s.port),
        sent: s.sent,
        received: s.received,
      })),
      ledger,
      before,
      after,
      sessionOf: (e) => e.env.TCPREMOTEPORT ?? "?",
    });
  } catch (error) {
    problems.push((error as Error).message);
  }
  const log = target.log();
  for (const where of secretHits(worlds[0]!.marker, log, seen, ledger)) {
    problems.push(`password marker found in ${where}`);
  }
  if (/\n\s+at |Uncaught|panicked/.test(log)) {
    problems.push(`stack trace in the log:\n${log.slice(-2_000)}`);
  }
  if (problems.length > 0) {
    throw new Error(
      `${target.name}, run ${run}:\n  ${problems.join("\n  ")}\nsessions: ${
        JSON.stringify(
          seen.map((s) => ({
            port: s.port,
            sent: show(s.sent),
            received: latin1(s.received),
            dropped: s.dropped,
          })),
          null,
          1,
        )
      }\nledger: ${
        JSON.stringify(ledger.map((e) => [e.env.TCPREMOTEPORT, e.mode, e.exit]))
      }`,
    );
  }
}
