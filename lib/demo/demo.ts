/**
 * `deno task start`: a working server on a fresh machine. Creates
 * `demo/passwd` with the user `demo` and a random password (printed once to
 * the log) on first run, then listens on 127.0.0.1:10106 with the built-in
 * passwd-file back end.
 *
 * @module
 */

import { main } from "../../main.ts";
import { processLog, stderrSink } from "../common/log.ts";
import { ensureDemoPasswdFile } from "../stores/passwdfile/backend.ts";

/** Where the demo keeps its passwd-file, relative to the working folder. */
export const DEMO_FILE = "demo/passwd";

/** The demo's listen address: loopback, an unprivileged port. */
export const DEMO_LISTEN = "127.0.0.1:10106";

if (import.meta.main) {
  await Deno.mkdir("demo", { recursive: true, mode: 0o700 });
  await ensureDemoPasswdFile(
    DEMO_FILE,
    processLog(stderrSink(), String(Deno.pid)),
  );
  Deno.exit(
    await main([
      "--listen",
      DEMO_LISTEN,
      "--passwd-file",
      DEMO_FILE,
      ...Deno.args,
      "localhost",
    ]),
  );
}
