/**
 * Every back-end fault of `doc/test-plan.md` cases 13-16 (hang,
 * grandchild, signal, flood, no read of fd 3, stdout noise, exit 2, 3,
 * 111), and `inject`, which runs one session with a fault forced in the
 * check or the set step.
 *
 * @module
 */

import assert from "node:assert/strict";
import { writeAccounts } from "../../support/accounts.ts";
import { bytes } from "../../support/bytes.ts";
import type { Client } from "../../support/client.ts";
import { R } from "../../support/pinned_replies.ts";
import { GREETING } from "../../support/sandbox.ts";
import type { Transcript } from "../../support/talk.ts";
import { CHILD_TIMEOUT_MS } from "./settings.ts";
import { accountsOf, force, type Key, marker } from "./backends.ts";
import { TreeSampler } from "./processes.ts";
import type { Target } from "./targets.ts";
import {
  assertNoLeaks,
  type Baseline,
  noChildren,
  startAfresh,
  verifyAll,
} from "./checks.ts";

/** A back-end fault: how fakeauth is told, and what the client must see. */
interface Fault {
  readonly name: string;
  /** Chosen by user-name prefix, or forced for the client port. */
  readonly forced: boolean;
  /** The reply to `pass` when the check has the fault. */
  readonly check: string;
  /** The reply to `newpass` when the set has the fault. */
  readonly set: string;
  /** The ledger's exit field. */
  readonly exit: string;
  /**
   * The child deadline may come first: 2 x 200 MiB through pipes took
   * 0.35 s alone but over 2 s on this shared machine under load. Then the
   * reply is the temporary one, which is right too.
   */
  readonly mayTimeOut?: boolean;
}

/** Every fault, with how fakeauth is told and what the client must see. */
export const FAULTS: readonly Fault[] = [
  {
    name: "hang",
    forced: false,
    check: R.authTemporary,
    set: R.changeFailed,
    exit: "hang",
  },
  { name: "grand", forced: false, check: R.passOk, set: R.changed, exit: "0" },
  {
    name: "sig",
    forced: false,
    check: R.authTemporary,
    set: R.changeFailed,
    exit: "SIGKILL",
  },
  {
    name: "flood",
    forced: false,
    check: R.passOk,
    set: R.changed,
    exit: "0",
    mayTimeOut: true,
  },
  {
    name: "noread",
    forced: true,
    check: R.authFailed,
    set: R.changeFailed,
    exit: "1",
  },
  { name: "noise", forced: false, check: R.passOk, set: R.changed, exit: "0" },
  {
    name: "e2",
    forced: false,
    check: R.authFailed,
    set: R.changeFailed,
    exit: "2",
  },
  {
    name: "e3",
    forced: false,
    check: R.authFailed,
    set: R.changeFailed,
    exit: "3",
  },
  {
    name: "e111",
    forced: false,
    check: R.authTemporary,
    set: R.changeFailed,
    exit: "111",
  },
];

/** What a session leaves for the final checks. */
export interface Injected {
  readonly key: Key;
  /** Its session is `key.session`. */
  readonly transcript: Transcript;
  readonly user: Uint8Array;
  readonly old: Uint8Array;
  readonly fresh: Uint8Array;
  readonly marker: string;
  /** fakeauth's grand exits 0 from set without touching the account file. */
  readonly setWithoutWrite?: boolean;
  /**
   * The set was killed at its deadline (a flood on a busy machine): it may
   * have renamed the new file already without having exited, so the
   * account may hold either password while the client was told it failed.
   */
  readonly setKilledAtDeadline?: boolean;
}

let users = 0;

/** A fresh number for a session's user name, unique in this test process. */
export function nextUser(): number {
  return ++users;
}

/** Send one line and return the reply. */
export async function ask(
  client: Client,
  ...line: Parameters<typeof bytes>
): Promise<string> {
  await client.talk.line(bytes(...line));
  return await client.talk.reply(CHILD_TIMEOUT_MS + 3_000);
}

/** Run one fault in one step through `target`, then look for leaks. */
export async function inject(
  target: Target,
  fault: Fault,
  step: "check" | "set",
  baseline: Baseline,
): Promise<Injected> {
  const { box } = target;
  const n = nextUser();
  const mark = marker();
  const old = bytes(`${mark} old \u00fc`);
  const fresh = bytes(`${mark} new`);
  const prefix = fault.forced
    ? "u"
    : `${step === "set" ? "set-" : ""}${fault.name}`;
  const user = bytes(`${prefix}k${n}`);
  const logBefore = target.log().length;
  await startAfresh(box);
  const client = await target.connect();
  const sampler = new TreeSampler(target.root, target.listener);
  let key: Key | undefined;
  let setKilled = false;
  try {
    assert.equal(await client.talk.reply(), GREETING);
    key = await target.keyOf(client);
    await writeAccounts(accountsOf(box, key), [[user, old]]);
    if (fault.forced) await force(box, key, step, fault.name);
    assert.equal(await ask(client, "user ", user), R.userOk);
    const started = performance.now();
    const checked = await ask(client, "pass ", old);
    const checkMs = performance.now() - started;
    const late = (reply: string, temporary: string): boolean => {
      if (fault.mayTimeOut !== true || reply !== temporary) return false;
      console.log(`${target.mode} ${fault.name}/${step}: child deadline first`);
      return true;
    };
    if (!late(checked, R.authTemporary)) {
      assert.equal(checked, step === "check" ? fault.check : R.passOk);
    }
    let open = checked === R.passOk;
    if (open) await noChildren(target, key, "after the check");
    if (open && step === "set") {
      const set = await ask(client, "newpass ", fresh);
      if (late(set, R.changeFailed)) setKilled = true;
      else assert.equal(set, fault.set);
      open = set === R.changed;
      if (open) await noChildren(target, key, "after the set");
    }
    if (open) assert.equal(await ask(client, "quit"), R.bye);
    await client.talk.closed();
    if (fault.name === "hang" && step === "check") {
      assert.ok(
        checkMs >= CHILD_TIMEOUT_MS && checkMs < CHILD_TIMEOUT_MS + 2_000,
        `a hanging check answered after ${checkMs.toFixed(0)} ms`,
      );
    }
  } finally {
    await client.close();
    sampler.stop();
  }
  await target.settle();
  await assertNoLeaks(target, sampler, key, baseline.fds);
  const logged = target.log().length - logBefore;
  assert.ok(logged < 16 * 1024, `${logged} characters of log for one session`);
  // A 2 x 200 MiB flood drains through one reused buffer: measured here
  // +10-13 MiB over a plain session's peak (stdio and listen); a buffer per
  // chunk held until collected cost ~+50 MiB in the child-runner test.
  const grown = (sampler.peakKiB() - baseline.rssKiB) / 1024;
  if (fault.name === "flood") {
    console.log(
      `${target.mode} flood/${step}: peak RSS +${grown.toFixed(1)} MiB`,
    );
  }
  assert.ok(grown < 32, `the serving process grew by ${grown.toFixed(1)} MiB`);
  const injected = {
    key,
    transcript: { ...client.talk.transcript(), session: key.session },
    user,
    old,
    fresh,
    marker: mark,
    ...(fault.name === "grand" && step === "set"
      ? { setWithoutWrite: true }
      : {}),
    ...(setKilled ? { setKilledAtDeadline: true } : {}),
  };
  await verifyAll(target, [injected]);
  return injected;
}
