/**
 * `runProgram` and `programBackend` against the real fakeauth: exact fd-3
 * octets and argv, exit-status mapping, the 512-octet payload cap.
 */

import assert from "node:assert/strict";
import type { Outcome } from "../../../lib/stores/backend.ts";
import {
  programBackend,
  runProgram,
} from "../../../lib/stores/programs/programs.ts";
import { passwordOf } from "../../support/accounts.ts";
import { fakeBackend, testPeer, TIMEOUT } from "../../support/backend.ts";
import {
  bytes,
  changePayload,
  checkPayload,
  hex,
} from "../../support/bytes.ts";
import { forEachLauncher } from "../../support/fd3exec.ts";
import { FAKEAUTH, Sandbox } from "../../support/sandbox.ts";

const PASSWORDS = [
  ["leading space", " lead-Aq1"],
  ["trailing space", "trail-Aq2 "],
  ["inner spaces", "in  ner-Aq3"],
  ["UTF-8", "pässwörd-Ωq4-密码"],
  ["only spaces", "   "],
  ["control octets", bytes(1, "ctl-Aq5", 0x7f, 0x1b)],
] as const;

forEachLauncher(
  "programBackend sends exact fd-3 octets for check and change",
  async (launch, t) => {
    for (const [name, old] of PASSWORDS) {
      await t.step(
        `a password with ${name} reaches fakeauth verbatim`,
        async () => {
          const user = `user-${hex(bytes(name)).slice(0, 8)}`;
          const next = bytes(" new ", old, " ü ");
          await using box = await Sandbox.create([[user, old]]);
          const { peer: p } = testPeer(box);
          const b = fakeBackend(TIMEOUT, launch.starter);
          assert.deepEqual(await b.check(bytes(user), bytes(old), p), {
            kind: "ok",
          });
          assert.deepEqual(await b.change(bytes(user), bytes(old), next, p), {
            kind: "ok",
          });
          const ledger = await box.ledger();
          assert.deepEqual(
            ledger.map((e) => [e.mode, hex(e.payload), e.exit]),
            [
              ["check", hex(checkPayload(user, old)), "0"],
              ["set", hex(changePayload(user, old, next)), "0"],
            ],
          );
          assert.deepEqual(ledger.map((e) => e.env.FD0), [
            "/dev/null",
            "/dev/null",
          ]);
          assert.equal(
            hex(passwordOf(await box.accounts(), user)!),
            hex(next),
          );
        },
      );
    }
  },
);

forEachLauncher(
  "runProgram passes argv and the environment verbatim",
  async (launch) => {
    await using box = await Sandbox.create();
    const args = ["set", " spaced arg ", "ünï", "-x", ""];
    const result = await runProgram(launch.starter, {
      argv: [FAKEAUTH, ...args],
      payload: bytes("e2-argv", 0, "pw", 0, 0, "n", 0),
      timeoutMs: TIMEOUT,
      env: box.env({ FAKEAUTH_TAG: "tag with spaces" }),
    });
    assert.deepEqual(result, { kind: "exited", code: 2, delivered: true });
    const [entry] = await box.ledger();
    assert.deepEqual(
      entry!.argv.map((a) => new TextDecoder().decode(a)),
      args,
    );
    assert.equal(entry!.env.FAKEAUTH_TAG, "tag with spaces");
  },
);

forEachLauncher(
  "child exit statuses map to ok, rejected and temporary",
  async (launch, t, kind) => {
    const rows: [string, string, string, Outcome["kind"]][] = [
      ["exit 0 (right password)", "okay", "right-pw", "ok"],
      ["exit 1 (wrong password)", "okay", "wrong-pw", "rejected"],
      ["exit 1 (unknown user)", "nobody", "right-pw", "rejected"],
      ["exit 2", "e2-user", "right-pw", "rejected"],
      ["exit 3 (vchkpw's bad password)", "e3-user", "right-pw", "rejected"],
      ["exit 111", "e111-user", "right-pw", "temporary"],
      ["death by SIGKILL", "sig-user", "right-pw", "temporary"],
    ];
    for (const [name, user, old, expected] of rows) {
      await t.step(`${name} is ${expected}`, async () => {
        await using box = await Sandbox.create(
          user === "nobody" ? [["okay", "right-pw"]] : [[user, "right-pw"]],
        );
        const outcome = await fakeBackend(TIMEOUT, launch.starter).check(
          bytes(user),
          bytes(old),
          testPeer(box).peer,
        );
        assert.equal(outcome.kind, expected, JSON.stringify(outcome));
        const ledger = await box.ledger();
        assert.equal(ledger.length, 1);
        assert.equal(hex(ledger[0]!.payload), hex(checkPayload(user, old)));
      });
    }
    const unrunnable = [
      ["a program that is gone", "missing", 127, "No such file or directory"],
      ["a file without an execute bit", "plain", 126, "Permission denied"],
    ] as const;
    for (const [name, file, code, why] of unrunnable) {
      await t.step(`${name} is temporary (exit ${code})`, async () => {
        await using box = await Sandbox.create();
        if (file === "plain") {
          await Deno.writeTextFile(`${box.dir}/plain`, "");
        }
        const b = programBackend({
          checkArgv: [`${box.dir}/${file}`],
          setArgv: [FAKEAUTH, "set"],
          childTimeoutMs: TIMEOUT,
          starter: launch.starter,
        });
        const { peer, log } = testPeer(box);
        const outcome = await b.check(bytes("u"), bytes("pw-Zq9"), peer);
        assert.deepEqual(outcome, {
          kind: "temporary",
          reason: `exit ${code}, program cannot be executed`,
        });
        // The shell, fd3exec or fd3spawn says why, on stderr, which is logged.
        const path = `${box.dir}/${file}`;
        if (kind === "sh") {
          assert.ok(log.some((l) => l.includes(path)), log.join("\n"));
        } else {
          assert.deepEqual(log, [
            `${path} stderr: ${launch.name}: cannot run ${path}: ${why}`,
          ]);
        }
      });
    }
  },
);

forEachLauncher(
  "payloads over 512 octets are refused without running anything; 512 runs",
  async (launch, t) => {
    const user = "u".repeat(250);
    const rows = [
      ["check", 512, "v".repeat(258), ""],
      ["check", 513, "v".repeat(259), ""],
      ["set", 512, "v".repeat(100), "n".repeat(158)],
      ["set", 513, "v".repeat(100), "n".repeat(159)],
    ] as const;
    for (const [mode, size, old, next] of rows) {
      await t.step(
        `a ${mode} payload of ${size} octets ${
          size > 512 ? "is refused" : "runs"
        }`,
        async () => {
          await using box = await Sandbox.create([[user, old]]);
          const b = fakeBackend(TIMEOUT, launch.starter);
          const { peer: p } = testPeer(box);
          const outcome = mode === "check"
            ? await b.check(bytes(user), bytes(old), p)
            : await b.change(bytes(user), bytes(old), bytes(next), p);
          const ledger = await box.ledger();
          if (size > 512) {
            assert.equal(outcome.kind, "rejected");
            assert.match(
              (outcome as { reason: string }).reason,
              /513 octets exceeds 512/,
            );
            assert.equal(ledger.length, 0);
          } else {
            assert.deepEqual(outcome, { kind: "ok" });
            assert.equal(ledger.length, 1);
            assert.equal(ledger[0]!.payload.length, 512);
          }
        },
      );
    }
  },
);
