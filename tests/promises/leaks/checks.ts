/**
 * The checks after each fault: no child or process-group member left, no
 * zombie, descriptors and RSS back at their baseline, the ledger checker,
 * no password marker in any log.
 *
 * @module
 */

import assert from "node:assert/strict";
import { readAccounts, writeAccounts } from "../../support/accounts.ts";
import { bytes, hex, latin1 } from "../../support/bytes.ts";
import { checkLedger } from "../../support/checker.ts";
import type { LedgerEntry } from "../../support/ledger.ts";
import { alive, childrenOf, groupMembers } from "../../support/procs.ts";
import { waitUntil } from "../../support/time.ts";
import { R } from "../../support/pinned_replies.ts";
import { GREETING, type Sandbox } from "../../support/sandbox.ts";
import type { Transcript } from "../../support/talk.ts";
import { accountsOf, type Key, marker } from "./backends.ts";
import { fds, TreeSampler } from "./processes.ts";
import type { Target } from "./targets.ts";
import { ask, type Injected, nextUser } from "./faults.ts";

/** One session at a time with a fresh ledger and no forced behaviour: client ports get reused. */
export async function startAfresh(box: Sandbox): Promise<void> {
  await Deno.writeTextFile(box.ledgerPath, "");
  await Deno.writeTextFile(`${box.dir}/force`, "");
}

/**
 * While a session is open between two steps, the process that serves it
 * (stdio: the session's own deno; listen: the server) has no child at all:
 * not the finished back end, not a zombie.
 */
export async function noChildren(
  target: Target,
  key: Key,
  when: string,
): Promise<void> {
  const parent = target.listener ?? Number(key.session.split(":")[0]);
  // With fd3spawn, the server's one child is fd3spawn, which has none.
  const kept = target.kept ?? (() => false);
  const others = () => {
    const children = childrenOf(parent);
    return [
      ...children.filter((p) => !kept(p)),
      ...children.filter(kept).flatMap((p) => childrenOf(p.pid)),
    ];
  };
  const none = await waitUntil(() => others().length === 0, 1_000);
  assert.ok(
    none,
    `${when}: children of ${parent}: ${JSON.stringify(others())}`,
  );
}

/** Nothing of the session may outlive it. */
export async function assertNoLeaks(
  target: Target,
  sampler: TreeSampler,
  key: Key,
  baselineFds: number | undefined,
): Promise<void> {
  const entries = (await target.box.ledger()).filter((e) =>
    target.sessionOf(e) === key.session
  );
  // A child killed at its deadline mid-flood never wrote its ledger line.
  assert.ok(entries.length + sampler.seen.size > 0, "the back end never ran");
  for (const entry of entries) {
    const empty = await waitUntil(
      () => groupMembers(entry.pid).length === 0,
      2_000,
    );
    assert.ok(
      empty,
      `process group ${entry.pid}: ${JSON.stringify(groupMembers(entry.pid))}`,
    );
    const grandchild = Number(entry.env.GRANDCHILD ?? 0);
    if (grandchild > 0) {
      assert.ok(!alive(grandchild), `grandchild ${grandchild} alive`);
    }
  }
  const ours = new Set([target.root, ...entries.map((e) => e.ppid)]);
  const kept = target.kept ?? (() => false);
  const lingering = () => sampler.lingering(ours).filter((p) => !kept(p));
  const clean = await waitUntil(() => lingering().length === 0, 2_000);
  assert.ok(clean, `left behind: ${JSON.stringify(lingering())}`);
  const childless = await waitUntil(
    () => childrenOf(target.root).filter((p) => !kept(p)).length === 0,
    2_000,
  );
  assert.ok(
    childless,
    `children of ${target.mode} ${target.root}: ${
      JSON.stringify(childrenOf(target.root))
    }`,
  );
  if (target.listener !== undefined && baselineFds !== undefined) {
    const pid = target.listener;
    const back = await waitUntil(() => fds(pid).length <= baselineFds, 3_000);
    assert.ok(
      back,
      `descriptors: ${fds(pid).length} > ${baselineFds}: ${fds(pid).join(" ")}`,
    );
  }
}

/** What the server looks like after a plain session. */
export interface Baseline {
  /** Listen mode: the server's open descriptors. */
  readonly fds?: number;
  /** The peak resident memory of the serving process. */
  readonly rssKiB: number;
}

/** A full successful session, to warm the server up and take the baseline. */
export async function warmUp(
  target: Target,
): Promise<{ session: Injected; baseline: Baseline }> {
  const n = nextUser();
  const mark = marker();
  const user = bytes(`u${n}`);
  const old = bytes(`${mark} old`);
  const fresh = bytes(`${mark} new`);
  await startAfresh(target.box);
  const client = await target.connect();
  const sampler = new TreeSampler(target.root, target.listener);
  let key: Key | undefined;
  try {
    assert.equal(await client.talk.reply(), GREETING);
    key = await target.keyOf(client);
    await writeAccounts(accountsOf(target.box, key), [[user, old]]);
    assert.equal(await ask(client, "user ", user), R.userOk);
    assert.equal(await ask(client, "pass ", old), R.passOk);
    assert.equal(await ask(client, "newpass ", fresh), R.changed);
    assert.equal(await ask(client, "quit"), R.bye);
    await client.talk.closed();
  } finally {
    await client.close();
    sampler.stop();
  }
  await target.settle();
  const baseline = {
    rssKiB: sampler.peakKiB(),
    ...(target.listener === undefined
      ? {}
      : { fds: fds(target.listener).length }),
  };
  const session = {
    key,
    transcript: { ...client.talk.transcript(), session: key.session },
    user,
    old,
    fresh,
    marker: mark,
  };
  await verifyAll(target, [session]);
  return { session, baseline };
}

/** The ledger checker over these sessions (the whole ledger), and no marker anywhere but fd 3. */
export async function verifyAll(
  target: Target,
  sessions: readonly Injected[],
): Promise<void> {
  const { box } = target;
  const ledger = await box.ledger();
  const before = new Map<string, Uint8Array>();
  const after = new Map<string, Uint8Array>();
  for (const s of sessions) {
    before.set(hex(s.user), s.old);
    const path = accountsOf(box, s.key);
    for (const [u, p] of await readAccounts(path)) after.set(u, p);
    if (s.setWithoutWrite) {
      // fakeauth's grand exits 0 from set without writing the account file:
      // hand the checker the file a real setpassword would have left.
      assert.equal(hex(after.get(hex(s.user))!), hex(s.old));
      after.set(hex(s.user), s.fresh);
    }
    if (
      s.setKilledAtDeadline && hex(after.get(hex(s.user))!) === hex(s.fresh)
    ) {
      // Killed between its rename and its exit: the change landed, but the
      // set never exited 0, so the server rightly said it failed (it cannot
      // know). The ledger holds no exit-0 set: hand the checker the old one.
      after.set(hex(s.user), s.old);
    }
  }
  checkLedger({
    transcripts: sessions.map((s) => s.transcript),
    ledger,
    before,
    after,
    sessionOf: (e) => target.sessionOf(e),
  });
  assertNoMarkers(
    sessions.map((s) => s.marker),
    target.log(),
    sessions.map((s) => s.transcript),
    ledger,
  );
}

/** Promise 7: no marker in the logs, the replies, the ledger's argv or env (fd 3 excluded). */
export function assertNoMarkers(
  markers: readonly string[],
  log: string,
  transcripts: readonly Transcript[],
  ledger: readonly LedgerEntry[],
): void {
  const places: [string, string][] = [
    ["log", log],
    ...transcripts.map((t): [string, string] => [
      `replies to ${t.session}`,
      latin1(t.received),
    ]),
    ...ledger.map((e): [string, string] => [
      `ledger argv/env of ${e.pid}`,
      [...e.argv.map(latin1), ...Object.values(e.env)].join("\t"),
    ]),
  ];
  for (const m of new Set(markers)) {
    for (const [where, text] of places) {
      assert.ok(!text.includes(m), `password marker ${m} in the ${where}`);
      assert.ok(
        !text.includes(hex(bytes(m))),
        `password marker ${m} as hex in the ${where}`,
      );
    }
  }
}
