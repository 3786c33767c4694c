/**
 * `lib/stores/programs/fd3spawn.c` and its client `fd3spawn.ts` (`--fd3-spawner`):
 * what only the long-lived starter can get wrong. Everything a child
 * sees and every way a child ends is tested through it as well, by the
 * child tests' `[fd3spawn]` rows.
 */

import assert from "node:assert/strict";
import { runProgram } from "../../../lib/stores/programs/programs.ts";
import {
  encodeRequest,
  fd3spawnStarter,
  HOW,
  REPLY_HEADER,
  REQUEST_HEADER,
} from "../../../lib/stores/programs/fd3spawn.ts";
import type { Starter } from "../../../lib/stores/programs/starter.ts";
import { writeAccounts } from "../../support/accounts.ts";
import { bytes, hex } from "../../support/bytes.ts";
import { readLedger } from "../../support/ledger.ts";
import { Client } from "../../support/client.ts";
import { Sandbox } from "../../support/sandbox.ts";
import { alive, inGroups, listProcesses } from "../../support/procs.ts";
import { greeting, R } from "../../support/pinned_replies.ts";
import { Server } from "../../support/listen_server.ts";
import { until, within } from "../../support/time.ts";
import {
  forEachLauncher,
  type Launcher,
  spawnerOf,
} from "../../support/fd3exec.ts";
import {
  CHILD_DEADLINE_MARGIN_MS,
  PAYLOAD_MAX,
} from "../../../lib/common/limits.ts";

const TIMEOUT = 10_000;
const ONLY = ["spawner"] as const;
const pathOf = (launch: Launcher) => launch.flags[1]!;

/** Start fd3spawn by hand, to speak its frames directly. */
function rawSpawner(path: string) {
  return new Deno.Command(path, {
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

forEachLauncher(
  "fd3spawn gives a program our environment with the request's variables winning",
  async (launch) => {
    const lines: string[] = [];
    const result = await runProgram(launch.starter, {
      // The program reads fd 3 first: one that exits before fd3spawn has
      // written the payload makes `delivered` false (a race, not a bug).
      argv: [
        "/bin/sh",
        "-c",
        'cat <&3 >/dev/null; echo "$HOME|$QP_EXTRA|${PATH:+path set}"',
      ],
      payload: bytes("u", 0, "p", 0),
      timeoutMs: TIMEOUT,
      env: { HOME: "/nonexistent/qp", QP_EXTRA: "a b=c" },
      onOutput: (_stream, line) => lines.push(line),
    });
    assert.deepEqual(result, { kind: "exited", code: 0, delivered: true });
    assert.deepEqual(lines, ["/nonexistent/qp|a b=c|path set"]);
  },
  ONLY,
);

forEachLauncher(
  "a malformed request ends fd3spawn with exit 111 and no reply",
  async (launch) => {
    const child = rawSpawner(pathOf(launch));
    // A well-framed request with argc 0: nothing to run.
    const frame = new Uint8Array(4 + 28);
    const view = new DataView(frame.buffer);
    [28, 1, 1000, 1000, 4096, 0, 0, 0].forEach((v, i) =>
      view.setUint32(i * 4, v, true)
    );
    const writer = child.stdin.getWriter();
    await writer.write(frame);
    const [out, err] = await Promise.all([
      new Response(child.stdout).arrayBuffer(),
      new Response(child.stderr).text(),
      writer.close().catch(() => {}),
    ]);
    const status = await within(child.status, 5_000, "fd3spawn exit");
    assert.equal(status.code, 111);
    assert.equal(out.byteLength, 0);
    assert.equal(err, "");
  },
  ONLY,
);

forEachLauncher(
  "at end of input fd3spawn lets a running program finish, replies, and exits 0",
  async (launch) => {
    const child = rawSpawner(pathOf(launch));
    const frame = encodeRequest(7, {
      argv: ["/bin/sh", "-c", "sleep 0.3; head -c 3 <&3; exit 7"],
      payload: bytes("abc"),
      timeoutMs: TIMEOUT,
      keep: 4096,
    });
    const writer = child.stdin.getWriter();
    await writer.write(frame);
    await writer.close();
    const [out] = await Promise.all([
      new Response(child.stdout).arrayBuffer(),
      new Response(child.stderr).text(),
    ]);
    const status = await within(child.status, 5_000, "fd3spawn exit");
    assert.equal(status.code, 0);
    // size, id 7, exited, code 7, delivered, 3 octets kept of stdout.
    const reply = new DataView(out);
    assert.equal(out.byteLength, 4 + reply.getUint32(0, true));
    const fields = [1, 2, 3, 4, 5, 6, 7, 8].map((i) =>
      reply.getUint32(i * 4, true)
    );
    assert.deepEqual(fields, [7, 0, 7, 1, 3, 0, 3, 0]);
    assert.equal(new TextDecoder().decode(out.slice(36)), "abc");
  },
  ONLY,
);

forEachLauncher(
  "when fd3spawn dies, its runs end as temporary failures, its programs die, and the next run starts a new one",
  async (launch) => {
    await using scratch = await Sandbox.create();
    const logged: string[] = [];
    const spawner = fd3spawnStarter(pathOf(launch), (m) => logged.push(m));
    const pidFile = `${scratch.dir}/pid`;
    let orphan = 0;
    try {
      const running = runProgram(spawner, {
        argv: ["/bin/sh", "-c", 'echo $$ > "$1"; exec sleep 20', "sh", pidFile],
        payload: bytes("u", 0, "p", 0),
        timeoutMs: TIMEOUT,
      });
      orphan = await until(
        async () => {
          const text = await Deno.readTextFile(pidFile).catch(() => "");
          return text.endsWith("\n") ? Number(text) : undefined;
        },
        5_000,
        "the program has started",
      );
      const helper = spawnerOf(Deno.pid);
      assert.ok(helper > 0, "fd3spawn is our child");
      Deno.kill(helper, "SIGKILL");
      assert.deepEqual(await within(running, 5_000, "the run ends"), {
        kind: "spawnFailed",
        message: "fd3spawn ended (SIGKILL)",
      });
      assert.deepEqual(logged, ["fd3spawn ended (SIGKILL) during 1 runs"]);
      // Its parent-death signal kills the program it had started.
      await until(
        () => alive(orphan) ? undefined : true,
        5_000,
        `program ${orphan} died with fd3spawn`,
      );
      const next = await runProgram(spawner, {
        argv: ["/bin/sh", "-c", "exit 3"],
        payload: bytes("u", 0, "p", 0),
        timeoutMs: TIMEOUT,
      });
      // It exits without reading fd 3: not delivered (for an exit 0, no yes).
      assert.deepEqual(next, { kind: "exited", code: 3, delivered: false });
    } finally {
      // Should the test fail: the program leads its own group.
      if (orphan > 0 && alive(orphan)) Deno.kill(-orphan, "SIGKILL");
      await spawner.close();
    }
  },
  ONLY,
);

forEachLauncher(
  "listen mode: SIGTERM lets a change running in fd3spawn finish, then no process is left",
  async (launch) => {
    await using scratch = await Sandbox.create();
    // setpassword sleeps 1 s before it changes the account.
    const fa = scratch.fakeauth({ FAKEAUTH_BEHAVE_SET: "slow" });
    await writeAccounts(fa.accounts, [["carol", "old"]]);
    await using server = await Server.start({
      options: [...launch.flags, "--listen", "127.0.0.1:0"],
      ...fa,
    });
    await using client = await Client.connect({
      hostname: "127.0.0.1",
      port: server.port(),
    });
    assert.equal(await client.line(), greeting());
    assert.equal(await client.ask("user carol"), R.userOk);
    assert.equal(await client.ask("pass old"), R.passOk);
    await client.send("newpass new\r\n");
    const helper = await until(
      () => spawnerOf(server.pid) || undefined,
      3_000,
      "fd3spawn running",
    );
    await until(
      () => listProcesses().some((p) => p.ppid === helper) || undefined,
      3_000,
      "setpassword running",
    );
    server.signal("SIGTERM");
    assert.equal(await client.line(3_000), R.changed);
    const status = await within(server.status, 5_000, "exit after SIGTERM");
    assert.equal(status.code, 0);
    const runs = await readLedger(fa.ledger);
    assert.deepEqual(runs.map((e) => [e.mode, e.exit]), [["check", "0"], [
      "set",
      "0",
    ]]);
    const groups = new Set(runs.map((run) => run.pid));
    assert.deepEqual(inGroups(groups), [], "a back-end process survived");
    assert.equal(
      listProcesses().some((p) => p.pid === helper),
      false,
      "fd3spawn survived",
    );
    const accounts = await Deno.readTextFile(fa.accounts);
    assert.equal(accounts, `${hex(bytes("carol"))}:${hex(bytes("new"))}\n`);
  },
  ONLY,
);

forEachLauncher(
  "fd3spawn refuses a payload over 512 octets as a malformed request: exit 111, nothing run",
  async (launch) => {
    await using scratch = await Sandbox.create();
    const ran = `${scratch.dir}/ran`;
    const child = rawSpawner(pathOf(launch));
    const frame = encodeRequest(1, {
      argv: ["/bin/sh", "-c", 'echo >"$1"', "sh", ran],
      payload: new Uint8Array(513),
      timeoutMs: TIMEOUT,
      keep: 4096,
    });
    const writer = child.stdin.getWriter();
    await writer.write(frame);
    const [out, err] = await Promise.all([
      new Response(child.stdout).arrayBuffer(),
      new Response(child.stderr).text(),
      writer.close().catch(() => {}),
    ]);
    const status = await within(child.status, 5_000, "fd3spawn exit");
    assert.equal(status.code, 111);
    assert.equal(out.byteLength, 0);
    assert.equal(err, "");
    assert.equal(await Deno.stat(ran).then(() => true, () => false), false);
  },
  ONLY,
);

forEachLauncher(
  "a stopped fd3spawn holds a run no longer than its deadline plus the margin; fd3spawn and its program are killed",
  async (launch) => {
    await using scratch = await Sandbox.create();
    const logged: string[] = [];
    const spawner = fd3spawnStarter(pathOf(launch), (m) => logged.push(m));
    const pidFile = `${scratch.dir}/pid`;
    const timeoutMs = 1_000;
    let program = 0;
    let helper = 0;
    try {
      const started = performance.now();
      const running = runProgram(spawner, {
        argv: ["/bin/sh", "-c", 'echo $$ > "$1"; exec sleep 30', "sh", pidFile],
        payload: bytes("u", 0, "p", 0),
        timeoutMs,
      });
      program = await until(
        async () => {
          const text = await Deno.readTextFile(pidFile).catch(() => "");
          return text.endsWith("\n") ? Number(text) : undefined;
        },
        5_000,
        "the program has started",
      );
      helper = spawner.pid()!;
      Deno.kill(helper, "SIGSTOP");
      const limit = timeoutMs + CHILD_DEADLINE_MARGIN_MS;
      // Before the server-side deadline, the run waited for ever.
      const result = await within(running, limit + 5_000, "the run ends");
      const elapsed = performance.now() - started;
      assert.ok(
        result.kind === "timeout" || result.kind === "spawnFailed",
        JSON.stringify(result),
      );
      assert.ok(elapsed >= limit - 50, `ended after ${elapsed} ms`);
      assert.equal(
        logged[0],
        `fd3spawn gave no reply within ${limit / 1000} s: killing it`,
      );
      await until(
        () => (alive(helper) || alive(program)) ? undefined : true,
        5_000,
        "fd3spawn and its program are gone",
      );
    } finally {
      // Should the test fail: nothing stays stopped or running.
      if (helper > 0 && alive(helper)) Deno.kill(helper, "SIGKILL");
      if (program > 0 && alive(program)) Deno.kill(-program, "SIGKILL");
      await spawner.close();
    }
  },
  ONLY,
);

Deno.test("fd3spawn.c and fd3spawn.ts name the same frame constants with the same values", async () => {
  const c = await Deno.readTextFile(
    new URL("../../../lib/stores/programs/fd3spawn.c", import.meta.url),
  );
  const defined = (name: string) =>
    Number(new RegExp(`#define ${name} (\\d+)`).exec(c)?.[1]);
  const how = (name: string) =>
    Number(new RegExp(`\\b${name} = (\\d+)`).exec(c)?.[1]);
  assert.equal(defined("REQUEST_HEADER"), REQUEST_HEADER);
  assert.equal(defined("REPLY_HEADER"), REPLY_HEADER);
  assert.equal(defined("PAYLOAD_MAX"), PAYLOAD_MAX);
  assert.deepEqual(
    {
      exited: how("HOW_EXITED"),
      signaled: how("HOW_SIGNALED"),
      timeout: how("HOW_TIMEOUT"),
      spawnFailed: how("HOW_SPAWN_FAILED"),
    },
    HOW,
  );
});

Deno.test("runProgram ends a run its starter never answers at the deadline plus CHILD_DEADLINE_MARGIN_MS", async () => {
  const silent: Starter = {
    name: "silent",
    run: () => new Promise(() => {}),
    close: () => Promise.resolve(),
  };
  const started = performance.now();
  const result = await runProgram(silent, {
    argv: ["/bin/true"],
    payload: bytes("u", 0, "p", 0),
    timeoutMs: 100,
  });
  const elapsed = performance.now() - started;
  assert.deepEqual(result, {
    kind: "timeout",
    ms: 100 + CHILD_DEADLINE_MARGIN_MS,
  });
  assert.ok(elapsed >= 100 + CHILD_DEADLINE_MARGIN_MS - 20, `${elapsed} ms`);
});
