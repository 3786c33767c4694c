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
import { type TlsFiles, tlsProblem } from "./lib/serve/transports.ts";
import { asksForListen, usageText } from "./lib/config/options.ts";
import { openStarter, programBackend } from "./lib/stores/programs/programs.ts";
import type { Starter } from "./lib/stores/programs/starter.ts";
import { greetingBytes, replyBytes } from "./lib/protocol/replies.ts";
import { serveStdio, writeAll } from "./lib/serve/stdio.ts";
import { VERSION } from "./lib/common/version.ts";
import { formatNetwork } from "./lib/serve/cidr.ts";
import { checkPamSystem } from "./lib/stores/pam/config.ts";
import { errorMessage } from "./lib/common/errors.ts";

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
  } catch (error) {
    return await startupFailure(error, args, env, log);
  }
  for (const warning of config.warnings) log(`warning: ${warning}`);
  // How every program starts, chosen once; closed after the last session.
  let starter: Starter | undefined;
  try {
    if (config.backend.kind === "programs") {
      starter = openStarter(config.backend.starter, log);
    }
    const backend = await createBackend(config, log, starter);
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
    ? () => readTlsFiles(tls.certFile, tls.keyFile)
    : undefined;
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
  return files;
}

/** The back end, for the startup line. */
function backendText(config: Config, starter: Starter | undefined): string {
  const backend = config.backend;
  if (backend.kind === "passwdFile") return `passwd-file ${backend.path}`;
  if (backend.kind === "pam") {
    return `PAM service ${backend.service}, uid >= ${backend.minUid}`;
  }
  if (backend.kind === "ldap") return `ldap ${backend.urls.join(" ")}`;
  return starter?.name ?? "";
}

/** The trusted PROXY-protocol senders, for the startup line. */
function proxyText(config: Config): string {
  return config.proxy
    ? `; proxy-protocol from ${config.proxy.map(formatNetwork).join(",")}`
    : "";
}

/** The external programs, or a built-in store (passwd-file, PAM, LDAP). */
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
  if (!listening && !Deno.stdout.isTerminal()) {
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
