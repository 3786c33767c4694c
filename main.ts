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
import { openStarter, programBackend } from "./lib/stores/programs/programs.ts";
import type { Starter } from "./lib/stores/programs/starter.ts";
import { greetingBytes, replyBytes } from "./lib/protocol/replies.ts";
import { serveStdio, writeAll } from "./lib/serve/stdio.ts";
import { VERSION } from "./lib/common/version.ts";
import { formatNetwork } from "./lib/serve/cidr.ts";
import { checkPamSystem } from "./lib/stores/pam/config.ts";
import { errorMessage } from "./lib/common/errors.ts";

/** How a warning line starts, from config and from a store. */
const WARNING = "warning: ";
import { describeTarget } from "./lib/stores/sql/url.ts";
import { sqlPermissionProblem } from "./lib/stores/sql/config.ts";
import { BACKEND_CLOSE_MS, SQL_POOL_SIZE } from "./lib/common/limits.ts";

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
  // How every program starts, chosen once; closed after the last session.
  let starter: Starter | undefined;
  try {
    if (config.backend.kind === "programs") {
      starter = openStarter(config.backend.starter, log);
    }
    // A store's own startup warnings (clear-text passwd-file users) follow
    // the same rule: not on every stdio connection.
    const backendLog = config.mode.kind === "listen"
      ? log
      : (message: string) => {
        if (!message.startsWith(WARNING)) log(message);
      };
    const backend = await createBackend(config, backendLog, starter);
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
          `${describe(server, config.limits)}; ${backendText(config, starter)}${
            proxyText(config)
          }`,
        log,
      );
      await closeBackend(backend);
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
    await closeBackend(backend);
    return EXIT.ok;
  } catch (error) {
    return await startupFailure(error, args, env, log);
  } finally {
    await starter?.close();
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
  // Opened to be named and checked, never run.
  const starter = config.backend.kind === "programs"
    ? openStarter(config.backend.starter, log)
    : undefined;
  try {
    await createBackend(config, (message) => {
      if (message.startsWith(WARNING)) {
        warnings.push(message.slice(WARNING.length));
      } else log(message);
    }, starter);
    if (config.backend.kind === "passwdFile") {
      // The store reads the file at the first check, not at startup.
      const { passwdFileWarnings } = await loadPasswdFileStore();
      warnings.push(...await passwdFileWarnings(config.backend.path));
    }
    for (const warning of warnings) log(`warning: ${warning}`);
    log(
      `check-config: the settings are valid (${mode.kind} mode, ${
        backendText(config, starter)
      }); ${warnings.length} warning${warnings.length === 1 ? "" : "s"}`,
    );
  } finally {
    await starter?.close();
  }
  return EXIT.ok;
}

/** The back end, for the startup line. */
function backendText(config: Config, starter: Starter | undefined): string {
  const backend = config.backend;
  if (backend.kind === "passwdFile") return `passwd-file ${backend.path}`;
  if (backend.kind === "pam") {
    return `PAM service ${backend.service}, uid >= ${backend.minUid}`;
  }
  if (backend.kind === "ldap") return `ldap ${backend.urls.join(" ")}`;
  if (backend.kind === "sql") {
    return `sql ${describeTarget(backend.sql.target)}`;
  }
  return starter?.name ?? "";
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

/** The external programs, or a built-in store (passwd-file, PAM, LDAP, SQL). */
async function createBackend(
  config: Config,
  log: (message: string) => void,
  starter: Starter | undefined,
): Promise<Backend> {
  const backend = config.backend;
  if (backend.kind === "programs") {
    return programBackend({
      checkArgv: backend.checkArgv,
      setArgv: backend.setArgv,
      childTimeoutMs: config.limits.childTimeoutMs,
      starter: starter!,
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
  if (backend.kind === "sql") {
    const problem = sqlPermissionProblem(backend.sql.target);
    if (problem) throw new UsageError(problem);
    const listen = config.mode.kind === "listen";
    // The drivers load only here. Their Node built-ins cost ~0.1 s of CPU,
    // so stdio mode loads them, and connects once, at the first check.
    const kind = backend.sql.target.kind;
    const load = async () => {
      const { createSqlBackend } = await import("./lib/stores/sql/backend.ts");
      // Each driver is a module of its own: PostgreSQL's 72 KB need not
      // wait for MySQL's 1.4 MB.
      const drivers = kind === "postgresql"
        ? {
          postgresql:
            (await import("./lib/stores/sql/postgres.ts")).openPostgres,
        }
        : kind === "mysql"
        ? { mysql: (await import("./lib/stores/sql/mysql.ts")).openMysql }
        : {};
      return await createSqlBackend({
        drivers,
        ...backend.sql,
        scheme: backend.scheme,
        minPasswordLength: backend.minPasswordLength,
        poolSize: listen ? SQL_POOL_SIZE : 1,
        probe: listen,
        log,
      });
    };
    return listen ? await load() : onFirstUse(load);
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(backend.path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UsageError(
        `--passwd-file ${JSON.stringify(backend.path)} does not exist`,
      );
    }
    throw error;
  }
  // A folder would fail at every check: a configuration error, not one for
  // systemd to retry.
  if (!info.isFile) {
    throw new UsageError(
      `--passwd-file ${JSON.stringify(backend.path)} is not a regular file`,
    );
  }
  // Loaded at the first check, not here: a connection that never sends
  // `pass` (a probe, a `quit`) pays for neither the hash code nor the file.
  return onFirstUse(async () =>
    (await loadPasswdFileStore()).createPasswdFileBackend({
      path: backend.path,
      scheme: backend.scheme,
      minPasswordLength: backend.minPasswordLength,
      log,
    })
  );
}

/** A store made by `load` at its first check or change, not before. */
function onFirstUse(load: () => Promise<Backend>): Backend {
  let loaded: Promise<Backend> | undefined;
  const store = () => loaded ??= load();
  return {
    check: async (...args) => await (await store()).check(...args),
    change: async (...args) => await (await store()).change(...args),
    close: async () => {
      if (loaded) await closeBackend(await loaded);
    },
  };
}

/**
 * Say goodbye to the database (a store with connections has `close`), so
 * its log does not count an aborted connection per session; bounded, since
 * a hung database must not keep the process alive.
 */
async function closeBackend(backend: Backend): Promise<void> {
  if (!backend.close) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    backend.close().catch(() => {}),
    new Promise<void>((resolve) =>
      timer = setTimeout(resolve, BACKEND_CLOSE_MS)
    ),
  ]);
  clearTimeout(timer);
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

/** The passwd-file store's module, loaded on first use (one import for the bundle to embed). */
function loadPasswdFileStore() {
  return import("./lib/stores/passwdfile/backend.ts");
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
