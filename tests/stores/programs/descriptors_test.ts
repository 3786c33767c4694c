/**
 * Children see exactly fds 0 to 3 with every starter, even when the server
 * was started with more descriptors open without close-on-exec (a harness
 * that leaves fds 10 and 251 open).
 */

import assert from "node:assert/strict";
import { shimStarter } from "../../../lib/stores/programs/command.ts";
import { UsageError } from "../../../lib/config/options.ts";
import { forEachLauncher, type Launcher } from "../../support/fd3exec.ts";
import { Client } from "../../support/client.ts";
import { greeting, R } from "../../support/pinned_replies.ts";
import { Server } from "../../support/listen_server.ts";

/** A harness that starts the server with `fds` open on /dev/null (and no other above 2). */
function harness(fds: readonly number[]): string[] {
  const opens = fds.map((fd) => `${fd}</dev/null`).join(" ");
  return [
    "bash",
    "-c",
    // First close what this test process itself inherited.
    'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n<&-" 2>/dev/null; done; ' +
    `exec ${opens}; exec "$@"`,
    "leaky-harness",
  ];
}

/** The descriptors a checkpassword program sees, through a server started by `wrapper`. */
async function seenBy(
  launch: Launcher,
  wrapper: readonly string[],
): Promise<{ fds: number[]; startup: string }> {
  // `ls` lists the shell's descriptors, which are the program's own; no
  // redirection, so the shell opens nothing itself. Its stdout is logged.
  const check = ["/bin/sh", "-c", "ls /proc/$$/fd; cat <&3 >/dev/null; exit 1"];
  await using server = await Server.start({
    options: [...launch.flags, "--listen", "127.0.0.1:0", "--fail-delay", "0"],
    check,
    password: "/bin/false",
    wrapper,
  });
  await using client = await Client.connect({
    hostname: "127.0.0.1",
    port: server.port(),
  });
  assert.equal(await client.line(), greeting());
  assert.equal(await client.ask("user someone"), R.userOk);
  assert.equal(await client.ask("pass secret-pw"), R.authFailed);
  // Logged before the reply is sent, but read from its stderr later.
  await server.waitForLog(/authentication failed for someone/);
  const fds = server.logs.flatMap((line) => {
    const fd = /\/bin\/sh stdout: (\d+)$/.exec(line)?.[1];
    return fd === undefined ? [] : [Number(fd)];
  });
  const startup = server.logs.find((l) => l.includes("listening on")) ?? "";
  return { fds: fds.sort((a, b) => a - b), startup };
}

forEachLauncher(
  "a checkpassword program sees exactly fds 0-3, not fds 10 and 251 the server inherited",
  async (launch) => {
    const { fds } = await seenBy(launch, harness([10, 251]));
    assert.deepEqual(fds, [0, 1, 2, 3]);
  },
);

forEachLauncher(
  "the /bin/sh shim closes inherited fds up to 9 itself; with one above 9 it is /bin/bash",
  async (launch) => {
    const low = await seenBy(launch, harness([5, 9]));
    assert.deepEqual(low.fds, [0, 1, 2, 3]);
    assert.ok(low.startup.endsWith("; fd-3 shim /bin/sh"), low.startup);
    const high = await seenBy(launch, harness([4, 251]));
    assert.deepEqual(high.fds, [0, 1, 2, 3]);
    assert.ok(high.startup.endsWith("; fd-3 shim /bin/bash"), high.startup);
  },
  ["sh"],
);

Deno.test("shimStarter() picks its shell once, from the inherited descriptors", () => {
  assert.equal(shimStarter([]).name, "fd-3 shim /bin/sh");
  assert.equal(shimStarter([3, 4, 9]).name, "fd-3 shim /bin/sh");
  assert.equal(shimStarter([10]).name, "fd-3 shim /bin/bash");
  assert.throws(
    () => shimStarter([4, 10, 251], "/nonexistent/bash"),
    (error: unknown) =>
      error instanceof UsageError &&
      error.message ===
        "descriptors 10, 251 are open without close-on-exec: /bin/sh cannot close them and there is no /nonexistent/bash; " +
          "start qmail-poppass without them, or use --fd3-helper",
  );
});
