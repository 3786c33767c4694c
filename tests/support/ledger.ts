/**
 * The ledger that `tests/support/fixtures/fakeauth` keeps: one tab-separated line
 * per run (mode, pid, ppid, argv as hex joined by ",", fd-3 octets as hex,
 * `K=V` fields, exit). This module reads it back into octets.
 *
 * @module
 */

import { unhex } from "./bytes.ts";

/** One run of fakeauth. */
export interface LedgerEntry {
  /** `check` or `set` (argv[1]). */
  readonly mode: string;
  readonly pid: number;
  /**
   * The process that started it: the server (or fd3spawn), the parent of
   * the group leader (the shim or fd3exec, which wait for fakeauth).
   */
  readonly ppid: number;
  /** The arguments after the program name, as octets. */
  readonly argv: readonly Uint8Array[];
  /** Everything the program read from fd 3 (empty when it never read). */
  readonly payload: Uint8Array;
  /** FD0, FD1 (link targets), the ucspi-tcp variables, GRANDCHILD… */
  readonly env: Readonly<Record<string, string>>;
  /** The exit code it was about to use, or `SIGKILL` / `hang`. */
  readonly exit: string;
}

/** Parse ledger text; throws on a malformed line (a torn write would be a bug). */
function parseLedger(text: string): LedgerEntry[] {
  return text.split("\n").filter((line) => line !== "").map(parseLine);
}

function parseLine(line: string): LedgerEntry {
  const fields = line.split("\t");
  if (fields.length < 6) {
    throw new SyntaxError(`malformed ledger line: ${JSON.stringify(line)}`);
  }
  const [mode, pid, ppid, argv, payload, ...rest] = fields as [
    string,
    string,
    string,
    string,
    string,
    ...string[],
  ];
  const exit = rest.pop()!;
  const env: Record<string, string> = {};
  for (const pair of rest) {
    const eq = pair.indexOf("=");
    if (eq < 1) throw new SyntaxError(`malformed K=V field: ${pair}`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return {
    mode,
    pid: Number(pid),
    ppid: Number(ppid),
    argv: argv === "" ? [] : argv.split(",").map(unhex),
    payload: unhex(payload),
    env,
    exit,
  };
}

/** Read the ledger file; a file that does not exist means no runs. */
export async function readLedger(path: string): Promise<LedgerEntry[]> {
  try {
    return parseLedger(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}
