/**
 * What a newcomer reads (issue 17 item 5): the man page names installed
 * paths (FILES, NOTES) and only pages a Debian host has in SEE ALSO; the
 * README says once how to get `deno` with only Node/npm; the daemontools
 * recipe names `daemontools-run` and the `qmaill` user; every option is
 * documented; the stdio service recipes run `--check-config` once per
 * service start.
 */

import assert from "node:assert/strict";
import { OPTIONS } from "../../lib/config/options.ts";

const ROOT = new URL("../../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

/** The text of one `.SH` section of the man page. */
function section(man: string, name: string): string {
  const start = man.indexOf(`\n.SH ${name}\n`);
  assert.ok(start >= 0, `no .SH ${name}`);
  const end = man.indexOf("\n.SH ", start + 1);
  return man.slice(start, end < 0 ? undefined : end);
}

Deno.test("man page: FILES lists the installed files; NOTES names no source path", async () => {
  const man = await read("qmail-poppass.8");
  const files = section(man, "FILES");
  for (
    const path of [
      "/usr/sbin/qmail-poppass",
      "/usr/lib/qmail-poppass/",
      "fd3exec",
      "fd3spawn",
      "/etc/default/qmail-poppass",
      "/lib/systemd/system/qmail-poppass.socket",
      "/lib/systemd/system/qmail-poppass@.service",
      "/lib/systemd/system/qmail-poppass.service",
      "/usr/share/doc/qmail-poppass/examples/daemontools/",
      "/usr/share/doc/qmail-poppass/examples/fail2ban/",
    ]
  ) assert.ok(files.includes(path), `FILES lacks ${path}`);
  assert.doesNotMatch(man, /packaging\/|\blib\/[a-z]+\.(ts|c)\b/);
});

Deno.test("man page: SEE ALSO names Debian pages, and says where the others live", async () => {
  const see = section(await read("qmail-poppass.8"), "SEE ALSO");
  const [debian, others] = see.split("Not packaged by Debian:");
  assert.ok(others, "SEE ALSO says which pages Debian does not ship");
  // Pages shipped by Debian packages (ucspi-tcp, daemontools, systemd,
  // dovecot-core, fail2ban, libpam-runtime, libpam-modules, slapd,
  // ldap-utils).
  const known = new Set([
    "tcpserver(1)",
    "tcprules(1)",
    "envdir(8)",
    "multilog(8)",
    "svscan(8)",
    "systemd.socket(5)",
    "systemd.exec(5)",
    "doveadm-pw(1)",
    "fail2ban-regex(1)",
    "pam(8)",
    "pam_unix(8)",
    "slapd(8)",
    "ldapwhoami(1)",
  ]);
  const named = debian!.replaceAll("\\-", "-").match(/[\w.-]+\(\d\)/g) ?? [];
  assert.ok(named.length > 0);
  for (const page of named) assert.ok(known.has(page), `${page} on Debian?`);
  for (const page of ["checkpassword(8)", "vchkpass(8)", "vsetpass(8)"]) {
    assert.ok(others.includes(page), page);
  }
  assert.match(others, /https:\/\/cr\.yp\.to\/checkpwd\.html/);
});

Deno.test("every option is in the man page and in the README's table", async () => {
  const man = (await read("qmail-poppass.8")).replaceAll("\\-", "-");
  const readme = await read("README.md");
  for (const option of OPTIONS) {
    assert.ok(man.includes(`--${option.name}`), `man page: --${option.name}`);
    assert.ok(
      readme.includes(`\`--${option.name}`),
      `README: --${option.name}`,
    );
    if (option.env) {
      assert.ok(man.includes(option.env), `man page: ${option.env}`);
      assert.ok(readme.includes(option.env), `README: ${option.env}`);
    }
  }
});

Deno.test("README: how to get deno with only Node/npm, said once", async () => {
  const readme = await read("README.md");
  assert.equal(readme.split("npm install -g deno@2.9.6").length - 1, 1);
  assert.match(readme, /rm demo\/passwd/);
});

Deno.test("daemontools recipe: names daemontools-run and creates the qmaill user", async () => {
  for (const path of ["README.md", "packaging/daemontools/README"]) {
    const text = await read(path);
    assert.match(text, /apt-get install daemontools daemontools-run ucspi-tcp/);
    assert.match(text, /id qmaill \|\| useradd --system/);
  }
  assert.match(await read("packaging/daemontools/log/run"), /qmaill/);
});

Deno.test("the stdio service recipes check the settings once per service start", async () => {
  assert.match(
    await read("packaging/daemontools/run"),
    /\n\s*\/usr\/sbin\/qmail-poppass --check-config "\$host" \$CHECKPASSWORD \|\| :\n\s*exec tcpserver /,
  );
  const socket = await read("packaging/systemd/qmail-poppass.socket");
  assert.match(
    socket,
    /\nExecStartPre=-\/usr\/sbin\/qmail-poppass --check-config \$\{HOSTNAME\} \$CHECKPASSWORD\n/,
  );
  assert.match(socket, /\nEnvironmentFile=-\/etc\/default\/qmail-poppass\n/);
});
