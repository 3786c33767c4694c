/**
 * `deno task start`: a working server on a fresh machine. Creates
 * `demo/passwd` with the user `demo` and a random password (printed once to
 * the log) on first run, then listens on 127.0.0.1:10106 with the built-in
 * passwd-file back end. Later runs keep the account and say how to get a
 * fresh one.
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

/** The line for a run that finds the demo account already there. */
export const DEMO_EXISTS =
  `demo account exists in ${DEMO_FILE}: its password was printed at the first start ` +
  `(or is the one you set since); for a fresh account and password: rm ${DEMO_FILE} && deno task start`;

if (import.meta.main) {
  const log = processLog(stderrSink(), String(Deno.pid));
  await Deno.mkdir("demo", { recursive: true, mode: 0o700 });
  const existed = await Deno.lstat(DEMO_FILE).then(() => true, (error) => {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  });
  if (existed) log(DEMO_EXISTS);
  else await ensureDemoPasswdFile(DEMO_FILE, log);
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
