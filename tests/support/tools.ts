/**
 * Outside tools: which ones a test can use (doveadm, openssl, mkpasswd …),
 * so tests that need one are ignored with a clear reason instead of
 * failing, and running one to its end.
 *
 * @module
 */

/** Is `name` an executable file in a folder of PATH? */
export function hasTool(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch { /* not in this folder */ }
  }
  return false;
}

/** Run a program to its end (bounded by its own simplicity); throws on failure. */
export async function run(argv: readonly string[]): Promise<string> {
  const out = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `${argv.join(" ")}: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}
