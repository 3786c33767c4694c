/**
 * V8 heap per listen-mode session, the figure behind `HEAP_PER_SESSION_KIB`
 * in `lib/common/limits.ts`: `serve()` runs in this process, a client
 * process holds N connections open, and the live heap (after a full
 * garbage collection) is compared with and without them.
 *
 *   deno run --allow-all --v8-flags=--expose-gc bench/heap.ts [N]
 *
 * States: plain sessions waiting for `user`, TLS sessions waiting for
 * `user`, and plain sessions whose check is running (the back end holds
 * the check until the end).
 *
 * @module
 */

import { serve } from "../lib/serve/listener.ts";
import { DEFAULT_LIMITS } from "../lib/common/limits.ts";
import { greetingBytes } from "../lib/protocol/replies.ts";
import type { Backend, Outcome } from "../lib/stores/backend.ts";

const N = Number(Deno.args[0] ?? 2000);
const gc = (globalThis as unknown as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");

function live(): number {
  for (let i = 0; i < 3; i++) gc!();
  return Deno.memoryUsage().heapUsed;
}

async function tempCert(dir: string) {
  const certFile = `${dir}/c.pem`, keyFile = `${dir}/k.pem`;
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
    stderr: "null",
  }).output();
  if (!out.success) throw new Error("openssl failed");
  return {
    cert: await Deno.readTextFile(certFile),
    key: await Deno.readTextFile(keyFile),
    pem: certFile,
  };
}

/** A client process that opens `n` connections, reads each greeting, optionally sends lines, and waits for stdin to close. */
const CLIENT = `
const [port, n, tls, lines, ca] = Deno.args;
const conns = [];
for (let i = 0; i < Number(n); i++) {
  const c = tls === "1"
    ? await Deno.connectTls({ hostname: "127.0.0.1", port: Number(port), caCerts: [await Deno.readTextFile(ca)] })
    : await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
  const b = new Uint8Array(256); await c.read(b);
  if (lines) await c.write(new TextEncoder().encode(lines.replaceAll("|", "\\r\\n")));
  conns.push(c);
}
console.log("ready");
await Deno.stdin.read(new Uint8Array(1));
for (const c of conns) try { c.close(); } catch {}
`;

async function measure(what: string, tls: boolean, lines: string) {
  const dir = await Deno.makeTempDir();
  const files = tls ? await tempCert(dir) : undefined;
  const held: (() => void)[] = [];
  const backend: Backend = {
    check: () =>
      new Promise<Outcome>((resolve) =>
        held.push(() => resolve({ kind: "rejected", reason: "bench" }))
      ),
    change: () => Promise.resolve({ kind: "ok" }),
  };
  const server = await serve({
    addresses: [{ hostname: "127.0.0.1", port: 0 }],
    ...(files
      ? { loadTls: () => Promise.resolve({ cert: files.cert, key: files.key }) }
      : {}),
    greeting: greetingBytes("bench"),
    backend,
    limits: {
      ...DEFAULT_LIMITS,
      maxSessions: N + 10,
      maxPerIp: 0,
      // Connecting thousands of TLS clients one by one takes minutes.
      idleTimeoutMs: 3_600_000,
      sessionTimeoutMs: 3_600_000,
      failDelayMs: 0,
    },
    sink: () => {},
  });
  const port = server.transports[0]!.address.port;
  const before = live();
  const client = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      CLIENT,
      String(port),
      String(N),
      tls ? "1" : "0",
      lines,
      files?.pem ?? "",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await reader.read();
  while (server.active() < N || (lines && held.length < N)) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const after = live();
  const rss = Deno.memoryUsage().rss;
  console.log(
    `${what}: N=${N} heap ${(before / 2 ** 20).toFixed(1)} -> ${
      (after / 2 ** 20).toFixed(1)
    } MiB, ${((after - before) / N / 1024).toFixed(1)} KiB/session, rss ${
      (rss / 2 ** 20).toFixed(0)
    } MiB`,
  );
  for (const release of held) release();
  await client.stdin.close();
  await client.status;
  reader.releaseLock();
  await client.stdout.cancel().catch(() => {});
  await server.shutdown();
  await Deno.remove(dir, { recursive: true });
}

// A first round warms up: code compiled on first use is not per session.
await measure("warm-up (not counted)", true, "user bench|pass secret|");
await measure("plain, waiting for user", false, "");
await measure("plain, check running", false, "user bench|pass secret|");
await measure("tls, waiting for user", true, "");
await measure("tls, check running", true, "user bench|pass secret|");
