/**
 * The package launcher's choices (packaging/deb/launcher.sh) without
 * installing the package: a copy whose runtime is a stub that prints the
 * flags it got and the fd-3 starters it was given.
 */

import assert from "node:assert/strict";

const LAUNCHER = new URL("../../packaging/deb/launcher.sh", import.meta.url)
  .pathname;

async function launch(
  args: string[],
  env: Record<string, string> = {},
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "launcher-test-" });
  try {
    await Deno.writeTextFile(
      `${dir}/deno`,
      '#!/bin/sh\necho "$@"\necho "helper=${POPPASS_FD3_HELPER-unset} spawner=${POPPASS_FD3_SPAWNER-unset}"\n',
      { mode: 0o755 },
    );
    for (const name of ["fd3exec", "fd3spawn"]) {
      await Deno.writeTextFile(`${dir}/${name}`, "", { mode: 0o755 });
    }
    const script = (await Deno.readTextFile(LAUNCHER))
      .replace(/^runtime=.*$/m, `runtime=${dir}/deno`)
      .replaceAll("/usr/lib/qmail-poppass/fd3", `${dir}/fd3`);
    await Deno.writeTextFile(`${dir}/launcher.sh`, script);
    const out = await new Deno.Command("/bin/sh", {
      args: [`${dir}/launcher.sh`, ...args],
      env: { PATH: "/usr/bin:/bin", ...env },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10_000),
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    return new TextDecoder().decode(out.stdout).replaceAll(dir, "DIR");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const BASE =
  "run --no-config --no-remote --no-npm --no-prompt --allow-env --allow-run --allow-read";
const PROGRAM = "/usr/lib/qmail-poppass/qmail-poppass.js";

Deno.test("launcher: the LDAP store gets --allow-net in both modes and no fd-3 starter", async () => {
  const dn = "uid=%n,ou=people,dc=example,dc=org";
  assert.equal(
    await launch([
      "--ldap-url",
      "ldap://127.0.0.1",
      "--ldap-starttls",
      "--ldap-user-dn",
      dn,
      "host",
    ]),
    `${BASE} --allow-net ${PROGRAM} --ldap-url ldap://127.0.0.1 --ldap-starttls --ldap-user-dn ${dn} host\n` +
      "helper=unset spawner=unset\n",
  );
  assert.equal(
    await launch(["host"], {
      POPPASS_LDAP_URL: "ldap://127.0.0.1",
      POPPASS_LISTEN: "127.0.0.1:106",
    }),
    `${BASE} --allow-net --v8-flags=--max-old-space-size=64 ${PROGRAM} host\n` +
      "helper=unset spawner=unset\n",
  );
  // The programs back end is unchanged: no network in stdio mode, fd3exec.
  assert.equal(
    await launch(["host", "/bin/check"]),
    `${BASE} ${PROGRAM} host /bin/check\nhelper=DIR/fd3exec spawner=unset\n`,
  );
});
