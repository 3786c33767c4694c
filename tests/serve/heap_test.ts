/**
 * Listen mode and the V8 heap (issue 18 item 7): the packaged launcher
 * capped the heap at 64 MiB while --max-sessions accepted 100,000, and the
 * process died of `Fatal JavaScript out of memory` at 7,000-8,000
 * sessions. Now the launcher derives the cap from --max-sessions, and the
 * program refuses at startup a --max-sessions its heap cannot hold.
 */

import assert from "node:assert/strict";
import { Sandbox } from "../support/sandbox.ts";
import { Server } from "../support/listen_server.ts";
import { within } from "../support/time.ts";
import { heapNeedMib } from "../../lib/common/limits.ts";

const LAUNCHER = new URL("../../packaging/deb/launcher.sh", import.meta.url)
  .pathname;

function spec(scratch: Sandbox, maxSessions: string, heapMib: number) {
  return {
    options: ["--listen", "127.0.0.1:0", "--max-sessions", maxSessions],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
    denoFlags: [`--v8-flags=--max-old-space-size=${heapMib}`],
  };
}

Deno.test("with a 64 MiB heap, --max-sessions 100000 is refused at startup with exit 100; what fits starts", async (t) => {
  await using scratch = await Sandbox.create();
  await t.step("100000: exit 100, one line saying what to do", async () => {
    const { code, logs } = await Server.run(spec(scratch, "100000", 64));
    assert.equal(code, 100);
    assert.equal(logs.length, 1, logs.join("\n"));
    assert.match(
      logs[0]!,
      /fatal: --max-sessions 100000 needs about 2360 MiB of V8 heap, but this process may use about 64 MiB: lower --max-sessions \(at most about 2048 fit\) or raise --v8-flags=--max-old-space-size to 2360/,
    );
  });
  await t.step("2049 is refused, 2048 starts", async () => {
    assert.equal((await Server.run(spec(scratch, "2049", 64))).code, 100);
    await using server = await Server.start(spec(scratch, "2048", 64));
    assert.equal(server.grep(/fatal/).length, 0);
  });
  await t.step("--check-config says the same, exit 100", async () => {
    const { code, logs } = await Server.run({
      ...spec(scratch, "100000", 64),
      options: [...spec(scratch, "100000", 64).options, "--check-config"],
    });
    assert.equal(code, 100);
    assert.match(logs.join("\n"), /needs about 2360 MiB/);
  });
});

/** The launcher with a runtime that prints its arguments instead of running. */
async function launcherArgs(
  scratch: Sandbox,
  args: string[],
  env: Record<string, string> = {},
): Promise<string[]> {
  const fake = scratch.path("fake-deno");
  await Deno.writeTextFile(fake, '#!/bin/sh\nprintf "%s\\n" "$@"\n');
  await Deno.chmod(fake, 0o755);
  const script = scratch.path("launcher.sh");
  await Deno.writeTextFile(
    script,
    (await Deno.readTextFile(LAUNCHER)).replace(
      /^runtime=.*$/m,
      `runtime=${fake}`,
    ),
  );
  const out = await within(
    new Deno.Command("sh", {
      args: [script, ...args],
      env: { PATH: "/usr/bin:/bin", ...env },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
    }).output(),
    10_000,
    "launcher",
  );
  return new TextDecoder().decode(out.stdout).split("\n");
}

Deno.test("the packaged launcher derives the heap cap from --max-sessions", async (t) => {
  await using scratch = await Sandbox.create();
  const listen = ["--listen", "127.0.0.1:106"];
  const rows: [string, string[], Record<string, string>, number | undefined][] =
    [
      ["stdio mode: no cap", ["host", "/bin/true"], {}, undefined],
      ["listen, default 40", [...listen, "h"], {}, 64],
      [
        "--max-sessions 1000",
        ["--max-sessions", "1000", ...listen, "h"],
        {},
        64,
      ],
      [
        "--max-sessions=4000",
        [
          "--max-sessions=4000",
          "--listen=127.0.0.1:106",
          "h",
        ],
        {},
        heapNeedMib(4000),
      ],
      ["POPPASS_MAX_SESSIONS=100000", ["h"], {
        POPPASS_MAX_SESSIONS: "100000",
        POPPASS_LISTEN: "127.0.0.1:106",
      }, heapNeedMib(100_000)],
      ["the command line wins", ["--max-sessions", "5000", "h"], {
        POPPASS_MAX_SESSIONS: "100000",
        POPPASS_LISTEN: "127.0.0.1:106",
      }, heapNeedMib(5000)],
      [
        "--check-config takes no value",
        [
          "--check-config",
          "--max-sessions",
          "3000",
          ...listen,
          "h",
        ],
        {},
        heapNeedMib(3000),
      ],
      [
        "a value the program refuses keeps 64",
        [
          "--max-sessions",
          "lots",
          ...listen,
          "h",
        ],
        {},
        64,
      ],
    ];
  assert.deepEqual(
    [2000, 3000, 4000, 5000, 100_000].map(heapNeedMib),
    [63, 87, 110, 134, 2360],
  );
  for (const [what, args, env, mib] of rows) {
    await t.step(what, async () => {
      const words = await launcherArgs(scratch, args, env);
      assert.equal(
        words.find((w) => w.startsWith("--v8-flags=")),
        mib === undefined
          ? undefined
          : `--v8-flags=--max-old-space-size=${mib}`,
      );
    });
  }
});

Deno.test("a server started the launcher's way with --max-sessions 100000 starts", async () => {
  await using scratch = await Sandbox.create();
  const words = await launcherArgs(scratch, [
    "--listen",
    "127.0.0.1:0",
    "--max-sessions",
    "100000",
    "h",
  ]);
  const flag = words.find((w) => w.startsWith("--v8-flags="))!;
  await using server = await Server.start({
    options: ["--listen", "127.0.0.1:0", "--max-sessions", "100000"],
    check: [scratch.script("ok")],
    password: scratch.script("ok"),
    denoFlags: [flag],
  });
  assert.match(server.logs.join("\n"), /max-sessions 100000/);
});
