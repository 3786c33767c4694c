/**
 * The PAM store in-process against pam_unix with real Unix accounts (root
 * only): check and change outcomes, the hash written to /etc/shadow,
 * refusals of root, system accounts and uids below --pam-min-uid, the
 * system's password policy, the deadline; and the mapping of PAM's codes
 * (no root needed).
 */

import assert from "node:assert/strict";
import type { Outcome } from "../../../lib/stores/backend.ts";
import {
  createPamBackend,
  outcomeOf,
  serial,
} from "../../../lib/stores/pam/backend.ts";
import { PAM, type PamStep } from "../../../lib/stores/pam/ffi.ts";
import {
  cryptMatches,
  shadowHash,
  SKIP_REASON,
  UnixFixture,
} from "../../support/unix_accounts.ts";

if (SKIP_REASON) console.error(SKIP_REASON);

const utf8 = (text: string) => new TextEncoder().encode(text);

Deno.test("outcomeOf() maps each PAM code of each step", async (t) => {
  const rows: [PamStep, number, Outcome["kind"]][] = [
    ["acct_mgmt", PAM.SUCCESS, "ok"],
    ["acct_mgmt", PAM.NEW_AUTHTOK_REQD, "ok"],
    ["chauthtok", PAM.SUCCESS, "ok"],
    ["authenticate", PAM.AUTH_ERR, "rejected"],
    ["authenticate", PAM.USER_UNKNOWN, "rejected"],
    ["authenticate", PAM.MAXTRIES, "rejected"],
    ["acct_mgmt", PAM.ACCT_EXPIRED, "rejected"],
    ["acct_mgmt", PAM.PERM_DENIED, "rejected"],
    ["chauthtok", PAM.AUTHTOK_ERR, "rejected"],
    ["chauthtok", PAM.TRY_AGAIN, "rejected"],
    ["chauthtok", PAM.AUTHTOK_LOCK_BUSY, "temporary"],
    ["start", PAM.SYSTEM_ERR, "temporary"],
    ["authenticate", PAM.SERVICE_ERR, "temporary"],
    ["authenticate", PAM.AUTHINFO_UNAVAIL, "temporary"],
    ["authenticate", PAM.CONV_ERR, "temporary"],
    ["chauthtok", PAM.SYSTEM_ERR, "temporary"],
    ["verify", PAM.AUTH_ERR, "rejected"],
  ];
  for (const [step, code, kind] of rows) {
    await t.step(`pam_${step} ${code} is ${kind}`, () => {
      const outcome = outcomeOf({
        kind: "pam",
        step,
        code,
        error: "text",
        messages: [],
      });
      assert.equal(outcome.kind, kind);
      if (outcome.kind !== "ok" && step !== "verify") {
        assert.equal(outcome.reason, `pam_${step}: text (${code})`);
      }
    });
  }
  await t.step("a refusal is rejected, a worker error temporary", () => {
    assert.deepEqual(outcomeOf({ kind: "refused", reason: "r" }), {
      kind: "rejected",
      reason: "r",
    });
    assert.equal(outcomeOf({ kind: "error", message: "m" }).kind, "temporary");
  });
});

Deno.test({
  name: "the PAM store checks and changes real Unix passwords via pam_unix",
  ignore: SKIP_REASON !== undefined,
  async fn(t) {
    await using unix = await UnixFixture.create();
    const alice = await unix.add("Old-pass-1");
    const low = await unix.add("Low-pass-1");
    const logs: string[] = [];
    const peer = {
      remoteIp: "127.0.0.1",
      env: {},
      log: (l: string) => logs.push(l),
    };
    const pam = createPamBackend({
      service: unix.service,
      minUid: 1000,
      timeoutMs: 20_000,
    });
    const check = (user: string, pw: string) =>
      pam.check(utf8(user), utf8(pw), peer);

    await t.step("the right password is ok", async () => {
      assert.deepEqual(await check(alice.name, "Old-pass-1"), { kind: "ok" });
    });
    await t.step("a wrong password is rejected with PAM's words", async () => {
      assert.deepEqual(await check(alice.name, "wrong"), {
        kind: "rejected",
        reason: "pam_authenticate: Authentication failure (7)",
      });
    });
    await t.step(
      "root, a system account, an unknown user are refused",
      async () => {
        assert.deepEqual(await check("root", "anything"), {
          kind: "rejected",
          reason: "root is refused",
        });
        assert.deepEqual(await check("daemon", "anything"), {
          kind: "rejected",
          reason: "uid 1 is below --pam-min-uid 1000",
        });
        assert.deepEqual(await check(`${alice.name}x`, "x"), {
          kind: "rejected",
          reason: "no such account",
        });
      },
    );
    await t.step(
      "a right password below --pam-min-uid is refused",
      async () => {
        const strict = createPamBackend({
          service: unix.service,
          minUid: low.uid + 1,
          timeoutMs: 20_000,
        });
        assert.deepEqual(
          await strict.check(utf8(low.name), utf8("Low-pass-1"), peer),
          {
            kind: "rejected",
            reason: `uid ${low.uid} is below --pam-min-uid ${low.uid + 1}`,
          },
        );
      },
    );
    await t.step(
      "a change writes a yescrypt hash crypt(3) accepts",
      async () => {
        const before = await shadowHash(alice.name);
        logs.length = 0;
        const outcome = await pam.change(
          utf8(alice.name),
          utf8("Old-pass-1"),
          utf8("Brand new 2 pass"),
          peer,
        );
        assert.deepEqual(outcome, { kind: "ok" });
        const after = await shadowHash(alice.name);
        assert.notEqual(after, before);
        assert.match(after, /^\$y\$/);
        assert.ok(cryptMatches("Brand new 2 pass", after));
        assert.ok(!cryptMatches("Old-pass-1", after));
        assert.deepEqual(logs, [
          `PAM says: Changing password for ${alice.name}.`,
        ]);
      },
    );
    await t.step(
      "the system policy applies: too short is refused",
      async () => {
        logs.length = 0;
        const before = await shadowHash(alice.name);
        const outcome = await pam.change(
          utf8(alice.name),
          utf8("Brand new 2 pass"),
          utf8("ab"),
          peer,
        );
        assert.deepEqual(outcome, {
          kind: "rejected",
          reason: "pam_chauthtok: Authentication token manipulation error (20)",
        });
        assert.equal(await shadowHash(alice.name), before);
        assert.ok(
          logs.includes("PAM says: You must choose a longer password."),
          logs.join("\n"),
        );
      },
    );
    await t.step(
      "a change with a wrong old password writes nothing",
      async () => {
        const before = await shadowHash(alice.name);
        const outcome = await pam.change(
          utf8(alice.name),
          utf8("not it"),
          utf8("Another 3 pass"),
          peer,
        );
        assert.equal(outcome.kind, "rejected");
        assert.equal(await shadowHash(alice.name), before);
      },
    );
    await t.step("a stack that only says it changed is caught", async () => {
      // pam_permit "changes" nothing: the new password does not authenticate.
      await using permit = await UnixFixture.create(
        "auth required pam_unix.so\naccount required pam_unix.so\n" +
          "password required pam_permit.so\n",
      );
      const erin = await permit.add("Erin-old-1");
      const before = await shadowHash(erin.name);
      const liar = createPamBackend({
        service: permit.service,
        minUid: 1000,
        timeoutMs: 20_000,
      });
      assert.deepEqual(
        await liar.change(
          utf8(erin.name),
          utf8("Erin-old-1"),
          utf8("Erin-new-2"),
          peer,
        ),
        {
          kind: "rejected",
          reason: "pam_chauthtok succeeded but the new password does not " +
            "authenticate: Authentication failure (7)",
        },
      );
      assert.equal(await shadowHash(erin.name), before);
    });
    await t.step("past the deadline the outcome is temporary", async () => {
      // pam_unix sleeps about 2 s after a failure.
      const hasty = createPamBackend({
        service: unix.service,
        minUid: 1000,
        timeoutMs: 300,
      });
      const started = performance.now();
      const outcome = await hasty.check(utf8(alice.name), utf8("bad"), peer);
      const took = performance.now() - started;
      assert.deepEqual(outcome, {
        kind: "temporary",
        reason: "PAM took longer than 300 ms",
      });
      assert.ok(took < 1_500, `took ${took} ms`);
    });
  },
});

Deno.test({
  name: "a worker ended inside a PAM call that later converses harms nothing",
  ignore: SKIP_REASON !== undefined,
  async fn() {
    // pam_exec holds the call for 1 s, then pam_unix asks for the password
    // through the conversation of a worker that has been ended by then.
    await using unix = await UnixFixture.create(
      "auth optional pam_exec.so quiet /bin/sleep 1\n" +
        "auth required pam_unix.so\naccount required pam_unix.so\n",
    );
    const frank = await unix.add("Frank-pw-1");
    const peer = { remoteIp: "127.0.0.1", env: {} };
    const options = { service: unix.service, minUid: 1000 };
    const hasty = createPamBackend({ ...options, timeoutMs: 300 });
    assert.deepEqual(
      await hasty.check(utf8(frank.name), utf8("Frank-pw-1"), peer),
      { kind: "temporary", reason: "PAM took longer than 300 ms" },
    );
    // This check spans the moment the ended worker's call converses.
    const patient = createPamBackend({ ...options, timeoutMs: 20_000 });
    assert.deepEqual(
      await patient.check(utf8(frank.name), utf8("Frank-pw-1"), peer),
      { kind: "ok" },
    );
  },
});

Deno.test({
  name: "concurrent changes in one process all land (one at a time)",
  ignore: SKIP_REASON !== undefined,
  async fn() {
    await using unix = await UnixFixture.create();
    const users = [];
    for (let i = 0; i < 5; i++) users.push(await unix.add(`Many-old-${i}`));
    const pam = createPamBackend({
      service: unix.service,
      minUid: 1000,
      timeoutMs: 30_000,
    });
    const peer = { remoteIp: "127.0.0.1", env: {} };
    const outcomes = await Promise.all(users.map((user, i) =>
      pam.change(
        utf8(user.name),
        utf8(`Many-old-${i}`),
        utf8(`Many-new-${i}!`),
        peer,
      )
    ));
    // Without the queue pam_unix answered some of them with
    // PAM_AUTHTOK_LOCK_BUSY: another thread held /etc/shadow's lock.
    assert.deepEqual(outcomes, users.map(() => ({ kind: "ok" })));
    for (const [i, user] of users.entries()) {
      assert.ok(cryptMatches(`Many-new-${i}!`, await shadowHash(user.name)));
    }
  },
});

Deno.test("serial() runs tasks one at a time, in order, past failures", async () => {
  const queue = serial();
  const events: string[] = [];
  const task = (name: string, fail = false) => async () => {
    events.push(`start ${name}`);
    await Promise.resolve();
    events.push(`end ${name}`);
    if (fail) throw new Error(name);
    return name;
  };
  const results = await Promise.allSettled([
    queue(task("a")),
    queue(task("b", true)),
    queue(task("c")),
  ]);
  assert.deepEqual(results.map((r) => r.status), [
    "fulfilled",
    "rejected",
    "fulfilled",
  ]);
  assert.deepEqual(events, [
    "start a",
    "end a",
    "start b",
    "end b",
    "start c",
    "end c",
  ]);
});
