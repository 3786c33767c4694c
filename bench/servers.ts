/**
 * Starting the servers the bench measures on a loopback port: listen mode
 * with each starter (fd3spawn, fd3exec, the /bin/sh shim), stdio mode under
 * tcpserver, and the C baseline. Every tcpserver here runs as
 * `tcpserver -R -H -l localhost`: without those flags it looks names up in
 * DNS, which would leave the machine.
 *
 * @module
 */

import { HOSTNAME, type Kit, type Target } from "./kit.ts";
import { kit_work, LogFile, Output } from "./logs.ts";

/** How a server starts its back ends: fd3spawn, fd3exec or the /bin/sh shim. */
export type Starter = "spawner" | "fd3exec" | "sh";

/**
 * The options for `starter`, as far as it was built: `--fd3-spawner`
 * (listen mode only), else `--fd3-helper`, else none (the shell shim).
 */
export function starterArgs(kit: Kit, starter: Starter): string[] {
  if (starter === "spawner" && kit.fd3spawn) {
    return ["--fd3-spawner", kit.fd3spawn];
  }
  return kit.fd3exec && starter !== "sh" ? ["--fd3-helper", kit.fd3exec] : [];
}

/**
 * Our server in listen mode on 127.0.0.1, port chosen by the OS, caps
 * lifted; back ends started by fd3spawn (as the package does) unless
 * another `starter` is asked for.
 */
export function startListen(
  kit: Kit,
  name = "listen",
  starter: Starter = "spawner",
): Promise<Target> {
  const args = ["run", "--allow-all", `${kit.repo}/main.ts`];
  args.push(...starterArgs(kit, starter));
  args.push("--listen", "127.0.0.1:0", "--max-sessions", "5000");
  args.push("--max-per-ip", "0", HOSTNAME, kit.backend);
  return startServer(name, kit.deno, args, kit.repo, serverEnv(kit), {
    from: "stderr",
    pattern: /listening on 127\.0\.0\.1:(\d+)/,
  });
}

/**
 * `program…` under tcpserver, one process per connection; with `nobody`
 * the whole tcpserver runs as nobody with `HOME=/nonexistent`.
 */
export function startTcpserver(
  kit: Kit,
  name: string,
  program: readonly string[],
  options: {
    readonly cwd?: string;
    readonly nobody?: boolean;
    readonly env?: Record<string, string>;
  } = {},
): Promise<Target> {
  if (!kit.tcpserver) throw new Error("tcpserver is not installed");
  const drop = options.nobody ? kit.asNobody : [];
  if (!drop) throw new Error("cannot drop to nobody");
  // -1 prints the chosen port; -c and -b leave room for 200 sessions at once.
  const words = [...drop, kit.tcpserver, "-R", "-H", "-l", "localhost", "-1"];
  words.push("-c", "500", "-b", "256", "127.0.0.1", "0", ...program);
  const home = options.nobody ? { HOME: "/nonexistent" } : {};
  const env = serverEnv(kit, { ...home, ...options.env });
  return startServer(
    name,
    words[0]!,
    words.slice(1),
    options.cwd ?? kit.work,
    env,
    {
      from: "stdout",
      pattern: /^(\d+)$/,
    },
  );
}

/** The stdio-mode command line, from `main.ts` or from the bundle. */
export function stdioCommand(
  kit: Kit,
  bundled: boolean,
  flags: readonly string[] = [],
): string[] {
  const entry = bundled ? kit.bundle! : `${kit.repo}/main.ts`;
  const run = [kit.deno, "run", "--allow-all", ...flags];
  return [...run, entry, ...starterArgs(kit, "fd3exec"), HOSTNAME, kit.backend];
}

function serverEnv(kit: Kit, extra: Record<string, string> = {}) {
  return { NO_COLOR: "1", PASSWORD_COMMAND: kit.backend, ...extra };
}

/** Spawn a server and resolve once a line on `ready.from` gives its port. */
async function startServer(
  name: string,
  program: string,
  args: readonly string[],
  cwd: string,
  env: Record<string, string>,
  ready: { readonly from: "stdout" | "stderr"; readonly pattern: RegExp },
): Promise<Target> {
  // The log (fd 2) goes to a file, as with multilog: read back through a
  // pipe, every line would also wake and tax the load generator, and
  // more so for the servers that log more lines per session.
  const logFile = `${kit_work.dir}/${name.replace(/\W+/g, "-")}-${++kit_work
    .count}.log`;
  const child = new Deno.Command("/bin/sh", {
    args: [
      "-c",
      'f=$1; shift; exec "$@" 2>>"$f"',
      "sh",
      logFile,
      program,
      ...args,
    ],
    cwd,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let found: (port: number) => void = () => {};
  const port = new Promise<number>((resolve) => (found = resolve));
  let exited = false;
  child.status.then(() => (exited = true));
  const stdout = new Output(child.stdout);
  const log = new LogFile(logFile);
  const source = ready.from === "stdout" ? stdout : log;
  void source.waitFor(ready.pattern, () => exited).then((match) => {
    if (match) found(Number(match[1]));
  });
  const tail = (separator: string) =>
    [stdout.tail(), log.tail()].join(separator);
  const stop = async () => {
    const kill = (signal: Deno.Signal) => {
      try {
        Deno.kill(child.pid, signal);
      } catch {
        // already gone
      }
    };
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 10_000);
    await child.status;
    clearTimeout(timer);
  };
  const failed = (why: string) => new Error(`${name}: ${why}: ${tail(" | ")}`);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const first = await Promise.race([
    port,
    child.status.then((s) => failed(`exited ${s.code}`)),
    new Promise<Error>((r) =>
      timer = setTimeout(() => r(failed("no port")), 30_000)
    ),
  ]);
  clearTimeout(timer);
  if (first instanceof Error) {
    await stop();
    throw first;
  }
  return {
    name,
    port: first,
    pid: child.pid,
    tail: () => tail("\n"),
    running: () => !exited,
    stop,
  };
}
