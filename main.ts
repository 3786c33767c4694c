/**
 * qmail-poppass: a poppassd password-change server for Deno.
 *
 * `main.ts` turns argv and the environment into a `Config`, serves one
 * session on stdin/stdout or listens itself, and maps every ending to an
 * exit code: 0 normal end, 100 usage or configuration error, 111 temporary
 * or internal error. It is the only file that reads `Deno.args` and calls
 * `Deno.exit` (besides the `deno task start` launcher, `lib/demo/demo.ts`);
 * the process's own stdin/stdout are read and written only here and in
 * `lib/serve/stdio.ts`.
 *
 * @module
 */

import type { Backend } from "./lib/stores/backend.ts";
import {
  type Config,
  denoProbe,
  parseInvocation,
  UsageError,
} from "./lib/config/config.ts";
import {
  describe,
  serve,
  type ServeOptions,
  type Server,
} from "./lib/serve/listener.ts";
import { processLog, stderrSink } from "./lib/common/log.ts";
import { heapProblem } from "./lib/serve/heap.ts";
import {
  type TlsFiles,
  tlsProblem,
  tlsWarnings,
} from "./lib/serve/transports.ts";
import { asksFor, asksForListen, usageText } from "./lib/config/options.ts";
import { programBackend } from "./lib/stores/programs/programs.ts";
import { type Spawner, startSpawner } from "./lib/stores/programs/spawner.ts";
import { greetingBytes, replyBytes } from "./lib/protocol/replies.ts";
import { serveStdio, writeAll } from "./lib/serve/stdio.ts";
import { VERSION } from "./lib/common/version.ts";
import { formatNetwork } from "./lib/serve/cidr.ts";
import { checkPamSystem } from "./lib/stores/pam/config.ts";
import { errorMessage } from "./lib/common/errors.ts";

/** How a warning line starts, from config and from a store. */
const WARNING = "warning: ";

/** Our exit codes. */
export const EXIT = { ok: 0, usage: 100, temporary: 111 } as const;

/** Run the program; resolves to the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const sink = stderrSink();
  const log = processLog(sink, String(Deno.pid));
  const env = (name: string) => Deno.env.get(name);
  let config: Config;
  try {
    const invocation = parseInvocation(args, env, denoProbe);
    if (invocation.kind === "help") return print(usageText());
    if (invocation.kind === "version") return print(`qmail-poppass ${VERSION}`);
    config = invocation.config;
    if (invocation.kind === "check") return await checkConfig(config, log);
  } catch (error) {
    return await startupFailure(error, args, env, log);
  }
  // Said once per process start in listen mode. In stdio mode a process
  // starts per connection, and warnings on every connection teach admins
  // to ignore them: there `--check-config` prints them (the packaged
  // daemontools run script and socket unit run it at each service start).
  if (config.mode.kind === "listen") {
    for (const warning of config.warnings) log(`warning: ${warning}`);
  }
  const spawnerPath = config.backend.kind === "programs"
    ? config.backend.spawner
    : undefined;
  // Started at the first program run; ended after the last session.
  const spawner = spawnerPath === undefined
    ? undefined
    : startSpawner(spawnerPath, log);
  try {
    // A store's own startup warnings (clear-text passwd-file users) follow
    // the same rule: not on every stdio connection.
    const backendLog = config.mode.kind === "listen"
      ? log
      : (message: string) => {
        if (!message.startsWith(WARNING)) log(message);
      };
    const backend = await createBackend(config, backendLog, spawner);
    const greeting = greetingBytes(config.hostname);
    if (config.mode.kind === "listen") {
      await serveListen(
        config.mode,
        {
          greeting,
          backend,
          limits: config.limits,
          sink,
          ...(config.proxy ? { proxy: config.proxy } : {}),
        },
        (server) =>
          `${describe(server, config.limits)}; ${backendText(config)}${
            proxyText(config)
          }`,
        log,
      );
      return EXIT.ok;
    }
    await serveStdio({
      greeting,
      backend,
      limits: config.limits,
      sink,
      env,
      ...(config.proxy ? { proxy: config.proxy } : {}),
    });
    return EXIT.ok;
  } catch (error) {
    return await startupFailure(error, args, env, log);
  } finally {
    await spawner?.close();
  }
}

/** Listen until SIGTERM or SIGINT; SIGHUP reloads the TLS certificate and key. */
async function serveListen(
  mode: Extract<Config["mode"], { kind: "listen" }>,
  common: Omit<ServeOptions, "addresses" | "loadTls">,
  startupLine: (server: Server) => string,
  log: (message: string) => void,
): Promise<void> {
  const tls = mode.tls;
  const loadTls = tls
    ? () => readTlsFiles(tls.certFile, tls.keyFile, (w) => log(`warning: ${w}`))
    : undefined;
  const heap = await heapProblem(common.limits.maxSessions);
  if (heap) throw new UsageError(heap);
  const server = await serve({
    ...common,
    addresses: mode.addresses,
    ...(loadTls ? { loadTls } : {}),
  });
  log(startupLine(server));
  const stop = () => void server.shutdown();
  const reload = () =>
    server.reloadTls().catch((e) =>
      log(`TLS reload failed, keeping the old certificate: ${e.message}`)
    );
  const signals: [Deno.Signal, () => void][] = [["SIGTERM", stop], [
    "SIGINT",
    stop,
  ], ["SIGHUP", reload]];
  for (const [signal, handler] of signals) {
    Deno.addSignalListener(signal, handler);
  }
  await server.finished;
  for (const [signal, handler] of signals) {
    Deno.removeSignalListener(signal, handler);
  }
}

/** Read the PEM files; a missing or unreadable file is a configuration error. */
async function readTlsFiles(
  certFile: string,
  keyFile: string,
  warn: (warning: string) => void,
): Promise<TlsFiles> {
  const read = async (what: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (error) {
      throw new UsageError(
        `cannot read ${what} ${JSON.stringify(path)}: ${
          (error as Error).message
        }`,
      );
    }
  };
  const files = {
    cert: await read("--tls-cert", certFile),
    key: await read("--tls-key", keyFile),
  };
  const problem = await tlsProblem(files);
  if (problem) throw new UsageError(problem);
  for (const warning of await tlsWarnings(files)) warn(warning);
  return files;
}

/**
 * `--check-config`: everything a start would check (options, programs,
 * TLS files, the store), then every warning, without serving. Resolves to
 * 0 when the settings are valid, warnings or not; a setting a start would
 * refuse throws, and `startupFailure` makes that 100 (or 111).
 */
async function checkConfig(
  config: Config,
  log: (message: string) => void,
): Promise<number> {
  const warnings = [...config.warnings];
  const mode = config.mode;
  if (mode.kind === "listen" && mode.tls) {
    await readTlsFiles(
      mode.tls.certFile,
      mode.tls.keyFile,
      (w) => warnings.push(w),
    );
  }
  if (mode.kind === "listen") {
    const heap = await heapProblem(config.limits.maxSessions);
    if (heap) throw new UsageError(heap);
  }
  await createBackend(config, (message) => {
    if (message.startsWith(WARNING)) {
      warnings.push(message.slice(WARNING.length));
    } else log(message);
  }, undefined);
  for (const warning of warnings) log(`warning: ${warning}`);
  log(
    `check-config: the settings are valid (${mode.kind} mode, ${
      backendText(config)
    }); ${warnings.length} warning${warnings.length === 1 ? "" : "s"}`,
  );
  return EXIT.ok;
}

/** The back end, for the startup line. */
function backendText(config: Config): string {
  const backend = config.backend;
  if (backend.kind === "passwdFile") return `passwd-file ${backend.path}`;
  if (backend.kind === "pam") {
    return `PAM service ${backend.service}, uid >= ${backend.minUid}`;
  }
  if (backend.kind === "ldap") return `ldap ${backend.urls.join(" ")}`;
  if (backend.spawner !== undefined) return `fd-3 spawner ${backend.spawner}`;
  return backend.helper === undefined
    ? "fd-3 shim /bin/sh"
    : `fd-3 helper ${backend.helper}`;
}

/**
 * The trusted PROXY-protocol senders, for the startup line; with TLS the
 * header is read in clear before the handshake.
 */
function proxyText(config: Config): string {
  if (!config.proxy) return "";
  const tls = config.mode.kind === "listen" && config.mode.tls
    ? " (header before TLS)"
    : "";
  return `; proxy-protocol from ${
    config.proxy.map(formatNetwork).join(",")
  }${tls}`;
}

/** The external programs, or a built-in store (passwd-file, PAM, LDAP). */
async function createBackend(
  config: Config,
  log: (message: string) => void,
  spawner: Spawner | undefined,
): Promise<Backend> {
  const backend = config.backend;
  if (backend.kind === "programs") {
    return programBackend({
      checkArgv: backend.checkArgv,
      setArgv: backend.setArgv,
      childTimeoutMs: config.limits.childTimeoutMs,
      ...(backend.helper === undefined ? {} : { helper: backend.helper }),
      ...(spawner === undefined ? {} : { spawner }),
    });
  }
  if (backend.kind === "pam") {
    for (const warning of checkPamSystem(backend.service)) {
      log(`warning: ${warning}`);
    }
    // Loaded on first use like the passwd-file store; it is also the
    // module each PAM worker runs.
    const { createPamBackend } = await import("./lib/stores/pam/backend.ts");
    return createPamBackend({
      service: backend.service,
      minUid: backend.minUid,
      timeoutMs: config.limits.childTimeoutMs,
    });
  }
  if (backend.kind === "ldap") {
    // Loaded on first use, like the passwd-file store: its npm client is
    // parsed only by servers configured for LDAP.
    const { createLdapBackend } = await import(
      "./lib/stores/ldap/backend.ts"
    );
    return await createLdapBackend({ config: backend });
  }
  try {
    await Deno.stat(backend.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(
        `--passwd-file ${JSON.stringify(backend.path)} does not exist`,
      );
    }
    throw error;
  }
  // Loaded on first use: the programs back end (one process per connection
  // under tcpserver) never pays for the hash libraries.
  const { createPasswdFileBackend } = await import(
    "./lib/stores/passwdfile/backend.ts"
  );
  return await createPasswdFileBackend({
    path: backend.path,
    scheme: backend.scheme,
    minPasswordLength: backend.minPasswordLength,
    log,
  });
}

/** Log one clear line, tell a stdio client with one `500` line, pick the exit code. */
async function startupFailure(
  error: unknown,
  args: readonly string[],
  env: (name: string) => string | undefined,
  log: (message: string) => void,
): Promise<number> {
  const usage = error instanceof UsageError;
  const message = errorMessage(error);
  log(`fatal: ${message}`);
  const listening = asksForListen(args) ||
    (env("POPPASS_LISTEN") ?? "").trim() !== "";
  // --check-config talks to an admin, not to a poppassd client.
  if (
    !listening && !asksFor(args, "check-config") && !Deno.stdout.isTerminal()
  ) {
    await writeAll(
      Deno.stdout,
      replyBytes(usage ? "misconfigured" : "authTemporary"),
    ).catch(() => {});
  }
  return usage ? EXIT.usage : EXIT.temporary;
}

function print(text: string): number {
  console.log(text);
  return EXIT.ok;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
