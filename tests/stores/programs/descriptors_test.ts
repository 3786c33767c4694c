/**
 * Children see exactly fds 0 to 3 with every starter, even when the server
 * was started with more descriptors open without close-on-exec (a harness
 * that leaves fds 10 and 251 open).
 */

import assert from "node:assert/strict";
import { forEachLauncher } from "../../support/fd3exec.ts";
import { Client } from "../../support/listen_client.ts";
import { greeting, R } from "../../support/pinned_replies.ts";
import { Server } from "../../support/listen_server.ts";
import { hasTool } from "../../support/tools.ts";

/** Starts the server with fds 10 and 251 open on /dev/null, as a harness might. */
const LEAKY = [
  "bash",
  "-c",
  'exec 10</dev/null 251</dev/null; exec "$@"',
  "leaky-harness",
];

forEachLauncher(
  "a checkpassword program sees exactly fds 0-3, not those the server inherited",
  async (launch) => {
    if (!hasTool("bash")) throw new Error("bash is needed for the harness");
    // `ls` lists the shell's descriptors, which are the program's own; no
    // redirection, so the shell opens nothing itself. Its stdout is logged.
    const check = [
      "/bin/sh",
      "-c",
      "ls /proc/$$/fd; cat <&3 >/dev/null; exit 1",
    ];
    await using server = await Server.start({
      options: [
        ...launch.flags,
        "--listen",
        "127.0.0.1:0",
        "--fail-delay",
        "0",
      ],
      check,
      password: "/bin/false",
      wrapper: LEAKY,
    });
    const own = Deno.readTextFileSync(`/proc/${server.pid}/cmdline`);
    assert.ok(own.includes("main.ts"), "the wrapper exec'd the server");
    const fds = Deno.readDirSync(`/proc/${server.pid}/fd`);
    const held = [...fds].map((e) => e.name);
    assert.ok(held.includes("251"), "the server holds the harness's fd 251");
    await using client = await Client.connect({
      hostname: "127.0.0.1",
      port: server.port(),
    });
    assert.equal(await client.line(), greeting());
    assert.equal(await client.ask("user someone"), R.userOk);
    assert.equal(await client.ask("pass secret-pw"), R.authFailed);
    // Logged before the reply is sent, but read from its stderr later.
    await server.waitForLog(/authentication failed for someone/);
    const seen = server.logs.flatMap((line) => {
      const fd = /\/bin\/sh stdout: (\d+)$/.exec(line)?.[1];
      return fd === undefined ? [] : [Number(fd)];
    });
    assert.deepEqual(seen.sort((a, b) => a - b), [0, 1, 2, 3]);
  },
);
