/**
 * Which outside tools a test can use (doveadm, openssl, mkpasswd …), so
 * tests that need one are ignored with a clear reason instead of failing.
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
