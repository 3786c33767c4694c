/**
 * The stdio soak's session kinds (good, wrong password, faults, early
 * disconnects, …) and how one soak session runs and is judged.
 *
 * @module
 */

import { writeAccounts } from "../../support/accounts.ts";
import { bytes } from "../../support/bytes.ts";
import { listProcesses, type ProcInfo } from "../../support/procs.ts";
import { R } from "../../support/pinned_replies.ts";
import { GREETING, type Sandbox } from "../../support/sandbox.ts";
import { CHILD_TIMEOUT_MS } from "./settings.ts";
import { accountsOf, force, type Key } from "./backends.ts";
import type { Target } from "./targets.ts";
import type { Injected } from "./faults.ts";

/** One kind of soak session: its user prefix, what it sends, how it ends, what it must see. */
interface SoakKind {
  readonly name: string;
  readonly prefix: string;
  /** noread for the check, forced for the client port. */
  readonly noread?: boolean;
  /** The account file holds another user. */
  readonly unknown?: boolean;
  readonly lines: (user: string, old: string, fresh: string) => string;
  /** After sending: wait for the server, half-close first, or vanish. */
  readonly end: "read" | "eof" | "vanish";
  /** The replies after the greeting; undefined when the client vanishes. */
  readonly expect?: string;
}

const FULL = R.userOk + R.passOk + R.changed + R.bye;
/** The soak's session kinds, chosen round-robin. */
export const SOAK_KINDS: readonly SoakKind[] = [
  {
    name: "success",
    prefix: "u",
    lines: (u, o, f) => `user ${u}\r\npass ${o}\r\nnewpass ${f}\r\nquit\r\n`,
    end: "read",
    expect: FULL,
  },
  {
    name: "wrong password",
    prefix: "u",
    lines: (u, o) => `user ${u}\r\npass ${o}x\r\nnewpass never\r\n`,
    end: "read",
    expect: R.userOk + R.authFailed,
  },
  {
    name: "unknown user",
    prefix: "zz",
    unknown: true,
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "read",
    expect: R.userOk + R.authFailed,
  },
  {
    name: "protocol error",
    prefix: "u",
    lines: (u, o) => `pass ${o}\r\nuser ${u}\r\n`,
    end: "read",
    expect: R.usernameRequired,
  },
  {
    name: "quit early",
    prefix: "u",
    lines: (u) => `USER ${u}\nQUIT\n`,
    end: "read",
    expect: R.userOk + R.bye,
  },
  {
    name: "overlong line",
    prefix: "u",
    lines: () => `user ${"x".repeat(600)}\r\n`,
    end: "read",
    expect: R.lineTooLong,
  },
  {
    name: "vanish after user",
    prefix: "u",
    lines: (u) => `user ${u}\r\n`,
    end: "vanish",
  },
  {
    name: "vanish during the check",
    prefix: "slow",
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "vanish",
  },
  {
    name: "vanish during the set",
    prefix: "u",
    lines: (u, o, f) => `user ${u}\r\npass ${o}\r\nnewpass ${f}\r\n`,
    end: "vanish",
  },
  {
    name: "EOF after auth",
    prefix: "u",
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "eof",
    expect: R.userOk + R.passOk,
  },
  {
    name: "exit 111",
    prefix: "e111",
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "read",
    expect: R.userOk + R.authTemporary,
  },
  {
    name: "killed by a signal",
    prefix: "sig",
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "read",
    expect: R.userOk + R.authTemporary,
  },
  {
    name: "no read of fd 3",
    prefix: "u",
    noread: true,
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "read",
    expect: R.userOk + R.authFailed,
  },
  {
    name: "grandchild",
    prefix: "grand",
    lines: (u, o) => `user ${u}\r\npass ${o}\r\nquit\r\n`,
    end: "read",
    expect: R.userOk + R.passOk + R.bye,
  },
  {
    name: "noisy back end",
    prefix: "noise",
    lines: (u, o, f) => `user ${u}\r\npass ${o}\r\nnewpass ${f}\r\nquit\r\n`,
    end: "read",
    expect: FULL,
  },
  {
    name: "hang",
    prefix: "hang",
    lines: (u, o) => `user ${u}\r\npass ${o}\r\n`,
    end: "read",
    expect: R.userOk + R.authTemporary,
  },
  {
    name: "set exits 3",
    prefix: "set-e3",
    lines: (u, o, f) => `user ${u}\r\npass ${o}\r\nnewpass ${f}\r\n`,
    end: "read",
    expect: R.userOk + R.passOk + R.changeFailed,
  },
];

/** One soak session; a string says what went wrong. */
export async function soakOne(
  target: Target,
  kind: SoakKind,
  n: number,
  mark: string,
): Promise<{ session: Injected; problem?: string }> {
  const user = `${kind.prefix}s${n}`;
  const account = kind.unknown ? `us${n}` : user;
  const old = `${mark}-${n} old \u00fc`;
  const fresh = `${mark}-${n} new`;
  const client = await target.connect();
  const port = client.localPort;
  let problem: string | undefined;
  let key: Key = { file: "?", session: "?" };
  try {
    if (await client.talk.reply() !== GREETING) throw new Error("greeting");
    key = await target.keyOf(client);
    await writeAccounts(accountsOf(target.box, key), [[account, old]]);
    if (kind.noread) await force(target.box, key, "check", "noread");
    await client.talk.send(kind.lines(user, old, fresh));
    if (kind.end !== "vanish") {
      if (kind.end === "eof") await client.closeWrite();
      await client.talk.closed(CHILD_TIMEOUT_MS + 8_000);
      const got = client.talk.received;
      if (got !== GREETING + kind.expect) {
        problem = `${kind.name} (port ${port}): ${JSON.stringify(got)}`;
      }
    }
  } catch (error) {
    problem = `${kind.name} (port ${port}): ${(error as Error).message}`;
  } finally {
    await client.close();
  }
  return {
    session: {
      key,
      transcript: { ...client.talk.transcript(), session: key.session },
      user: bytes(account),
      old: bytes(old),
      fresh: bytes(fresh),
      marker: mark,
    },
    ...(problem ? { problem } : {}),
  };
}

/** Live processes other than `except` whose environment names this sandbox's ledger. */
export function strays(box: Sandbox, except: number): ProcInfo[] {
  const needle = `FAKEAUTH_LEDGER=${box.ledgerPath}\0`;
  return listProcesses().filter((p) => {
    if (p.pid === except || p.pid === Deno.pid || p.state === "Z") return false;
    try {
      return Deno.readTextFileSync(`/proc/${p.pid}/environ`).includes(needle);
    } catch {
      return false;
    }
  });
}
