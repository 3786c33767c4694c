/**
 * A real OpenLDAP `slapd` (Debian's) for the LDAP store's tests: its own
 * temporary `slapd.conf` and mdb database, listening on 127.0.0.1 only,
 * stopped by pid. Users are added with `ldapadd` and passwords are checked
 * with `ldapwhoami`, the tools an administrator would use.
 *
 * The directory is `dc=example,dc=org` with users under
 * `ou=people,dc=example,dc=org`; the ACL lets each user write their own
 * `userPassword` (what the README recommends), and new passwords are
 * hashed by slapd (`password-hash {SSHA}`). With `ppolicy`, a default
 * policy refuses new passwords shorter than 8 characters.
 *
 * @module
 */

import { freePort } from "./client.ts";
import { sleep, waitUntil, within } from "./time.ts";
import { haveTool, type Tool } from "./tools.ts";
import { procInfo } from "./procs.ts";

/** What the LDAP tests run: slapd, the ldap-utils and openssl (tests/setup.sh). */
export const SLAPD_TOOLS: readonly Tool[] = [
  "slapd",
  "ldapadd",
  "ldapwhoami",
  "ldapsearch",
  "openssl",
];

/** slapd, the ldap-utils and openssl are installed (tests/setup.sh). */
export const HAVE_SLAPD = SLAPD_TOOLS.every(haveTool);

/** The suffix of the test directory. */
export const SUFFIX = "dc=example,dc=org";
/** Where the users live. */
export const PEOPLE = `ou=people,${SUFFIX}`;
/** The administrator (rootdn) and its password. */
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
/** The administrator's password (in the test's slapd.conf only). */
export const ADMIN_PW = "admin-secret-Q7";
/** A read-only account for the search form. */
export const SEARCH_DN = `cn=search,${SUFFIX}`;
/** Its password. */
export const SEARCH_PW = "search-secret-Q7";

/** TLS files for slapd (PEM paths). */
export interface SlapdTls {
  readonly cert: string;
  readonly key: string;
}

/** How to start slapd. */
export interface SlapdOptions {
  /** Serve StartTLS with this certificate. */
  readonly tls?: SlapdTls;
  /** Load the ppolicy overlay with pwdMinLength 8 (quality checked). */
  readonly ppolicy?: boolean;
  /** An ACL that lets users bind and read their password but not write it. */
  readonly readOnlyPasswords?: boolean;
}

/** One user to add. */
export interface LdapUser {
  readonly uid: string;
  readonly password: string;
  readonly mail?: string;
  /** RDN attribute value used in the DN; `uid` when absent. */
  readonly rdn?: string;
}

async function run(
  argv: readonly string[],
  input?: string,
): Promise<{ code: number; out: string; err: string }> {
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    out: new TextDecoder().decode(out.stdout),
    err: new TextDecoder().decode(out.stderr),
  };
}

/** A running slapd on 127.0.0.1; dispose stops it and removes its files. */
export class Slapd implements AsyncDisposable {
  readonly dir: string;
  readonly port: number;
  /** With `tls`: the port of the ldaps:// listener. */
  readonly tlsPort: number;
  readonly options: SlapdOptions;
  #child: Deno.ChildProcess | undefined;

  private constructor(dir: string, port: number, options: SlapdOptions) {
    this.dir = dir;
    this.port = port;
    this.tlsPort = freePort();
    this.options = options;
  }

  /** `ldap://127.0.0.1:PORT`. */
  get url(): string {
    return `ldap://127.0.0.1:${this.port}`;
  }

  /** `ldaps://127.0.0.1:PORT` (only with `tls`). */
  get ldapsUrl(): string {
    return `ldaps://127.0.0.1:${this.tlsPort}`;
  }

  /** slapd's pid (while running). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Start on a free port with an empty tree (suffix, people, search account). */
  static async start(options: SlapdOptions = {}): Promise<Slapd> {
    const dir = await Deno.makeTempDir({ prefix: "slapd-test-" });
    const slapd = new Slapd(dir, freePort(), options);
    try {
      await Deno.mkdir(`${dir}/db`);
      await Deno.writeTextFile(`${dir}/slapd.conf`, slapd.#conf());
      await slapd.#spawn();
      await slapd.add(slapd.#baseLdif());
      return slapd;
    } catch (error) {
      await slapd.stop();
      throw error;
    }
  }

  #conf(): string {
    const { tls, ppolicy, readOnlyPasswords } = this.options;
    const schema = ["core", "cosine", "inetorgperson", "nis"].map((s) =>
      `include /etc/ldap/schema/${s}.schema`
    );
    return [
      ...schema,
      "modulepath /usr/lib/ldap",
      "moduleload back_mdb",
      ...(ppolicy ? ["moduleload ppolicy"] : []),
      `pidfile ${this.dir}/slapd.pid`,
      `argsfile ${this.dir}/slapd.args`,
      "password-hash {SSHA}",
      ...(tls
        ? [
          `TLSCertificateFile ${tls.cert}`,
          `TLSCertificateKeyFile ${tls.key}`,
        ]
        : []),
      "database mdb",
      `suffix "${SUFFIX}"`,
      `rootdn "${ADMIN_DN}"`,
      `rootpw ${ADMIN_PW}`,
      `directory ${this.dir}/db`,
      "maxsize 16777216",
      ...(ppolicy
        ? [
          "overlay ppolicy",
          `ppolicy_default "cn=default,ou=policies,${SUFFIX}"`,
        ]
        : []),
      // The README's recipe: users write their own password; anyone may
      // bind with it; nobody reads it.
      "access to attrs=userPassword",
      readOnlyPasswords ? "  by self read" : "  by self write",
      "  by anonymous auth",
      "  by * none",
      "access to * by * read",
      "",
    ].join("\n");
  }

  #baseLdif(): string {
    const policy = this.options.ppolicy
      ? `
dn: ou=policies,${SUFFIX}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,${SUFFIX}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMinLength: 8
pwdCheckQuality: 2
`
      : "";
    return `dn: ${SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ${PEOPLE}
objectClass: organizationalUnit
ou: people

dn: ${SEARCH_DN}
objectClass: applicationProcess
objectClass: simpleSecurityObject
cn: search
userPassword: ${SEARCH_PW}
${policy}`;
  }

  async #spawn(): Promise<void> {
    const urls = `ldap://127.0.0.1:${this.port}/` +
      (this.options.tls ? ` ldaps://127.0.0.1:${this.tlsPort}/` : "");
    // -d 0 keeps slapd in the foreground (so we hold its pid) and quiet.
    this.#child = new Deno.Command("/usr/sbin/slapd", {
      args: ["-f", `${this.dir}/slapd.conf`, "-h", urls, "-d", "0"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    this.#child.status.then(() => (exited = true));
    // Poll with a real anonymous request until slapd answers (bounded).
    const end = performance.now() + 20_000;
    while (performance.now() < end) {
      if (exited) throw new Error("slapd exited at startup");
      if ((await run(["ldapwhoami", "-x", "-H", this.url])).code === 0) return;
      await sleep(50);
    }
    throw new Error("slapd did not answer within 20 s");
  }

  /** Add entries as the administrator; throws with ldapadd's message. */
  async add(ldif: string): Promise<void> {
    const result = await run(
      ["ldapadd", "-x", "-H", this.url, "-D", ADMIN_DN, "-w", ADMIN_PW],
      ldif,
    );
    if (result.code !== 0) {
      throw new Error(`ldapadd failed (${result.code}): ${result.err}`);
    }
  }

  /** Add users under `ou=people` with clear-text passwords (slapd hashes changes). */
  async addUsers(users: readonly LdapUser[]): Promise<void> {
    await this.add(
      users.map((u) =>
        [
          `dn: ${userDn(u)}`,
          "objectClass: inetOrgPerson",
          `uid: ${u.uid}`,
          `cn: ${u.uid}`,
          "sn: Test",
          ...(u.mail ? [`mail: ${u.mail}`] : []),
          `userPassword: ${u.password}`,
          "",
        ].join("\n")
      ).join("\n"),
    );
  }

  /**
   * Does `password` bind as `dn`? Asks `ldapwhoami` (password from a file,
   * not argv). Returns the DN it prints, or undefined when the bind fails.
   */
  async whoami(dn: string, password: string): Promise<string | undefined> {
    const file = await Deno.makeTempFile({ dir: this.dir });
    try {
      await Deno.writeTextFile(file, password);
      const result = await run([
        "ldapwhoami",
        "-x",
        "-H",
        this.url,
        "-D",
        dn,
        "-y",
        file,
      ]);
      return result.code === 0 ? result.out.trim() : undefined;
    } finally {
      await Deno.remove(file);
    }
  }

  /** The stored `userPassword` of `dn`, read as the administrator. */
  async storedPassword(dn: string): Promise<string | undefined> {
    const result = await run([
      "ldapsearch",
      "-x",
      "-LLL",
      "-H",
      this.url,
      "-D",
      ADMIN_DN,
      "-w",
      ADMIN_PW,
      "-b",
      dn,
      "-s",
      "base",
      "userPassword",
    ]);
    const b64 = /^userPassword:: (\S+)$/m.exec(result.out)?.[1];
    if (b64) return atob(b64);
    return /^userPassword: (.*)$/m.exec(result.out)?.[1];
  }

  /** SIGKILL slapd and wait for it to be gone (the database stays). */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await within(child.status, 10_000, "slapd to exit");
  }

  /** Start slapd again on the same port with the same database. */
  async restart(): Promise<void> {
    await this.kill();
    await this.#spawn();
  }

  /**
   * Freeze (SIGSTOP) or thaw (SIGCONT) slapd, and wait (bounded) until the
   * kernel reports it stopped or running: frozen, it still accepts
   * connections (the kernel completes them) but never answers.
   */
  async freeze(frozen: boolean): Promise<void> {
    const pid = this.#child?.pid;
    if (pid === undefined) return;
    this.#child?.kill(frozen ? "SIGSTOP" : "SIGCONT");
    const settled = await waitUntil(
      () => (procInfo(pid)?.state === "T") === frozen,
      5_000,
      5,
    );
    if (!settled) throw new Error(`slapd did not ${frozen ? "stop" : "go on"}`);
  }

  /** Stop slapd (SIGKILL after SIGCONT) and remove its files. */
  async stop(): Promise<void> {
    await this.freeze(false).catch(() => {});
    await this.kill();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** `uid=NAME,ou=people,dc=example,dc=org` (the RDN value as given). */
export function userDn(user: { uid: string; rdn?: string }): string {
  return `uid=${user.rdn ?? user.uid},${PEOPLE}`;
}

/** PEM files of a test CA and a server certificate it signed. */
export interface TestCa {
  /** The CA certificate (what `--ldap-ca` names). */
  readonly ca: string;
  /** The server's certificate and key (subjectAltName IP:127.0.0.1). */
  readonly cert: string;
  readonly key: string;
  /** A second CA that did not sign the server certificate. */
  readonly otherCa: string;
  /** A certificate from the right CA for another name (DNS:other.example). */
  readonly wrongNameCert: string;
}

/** Make a CA and a server certificate for 127.0.0.1 with openssl in `dir`. */
export async function makeTestCa(dir: string): Promise<TestCa> {
  const openssl = async (...args: string[]) => {
    const result = await run(["openssl", ...args]);
    if (result.code !== 0) throw new Error(`openssl: ${result.err}`);
  };
  const ca = `${dir}/ca.pem`;
  const caKey = `${dir}/ca.key`;
  const otherCa = `${dir}/other-ca.pem`;
  const key = `${dir}/server.key`;
  const csr = `${dir}/server.csr`;
  const cert = `${dir}/server.pem`;
  const ext = `${dir}/server.ext`;
  for (
    const [file, keyFile, name] of [[ca, caKey, "Test CA"], [
      otherCa,
      `${dir}/other-ca.key`,
      "Other CA",
    ]] as const
  ) {
    await openssl(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-keyout",
      keyFile,
      "-out",
      file,
    );
  }
  await openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    key,
    "-out",
    csr,
  );
  const sign = async (san: string, out: string) => {
    await Deno.writeTextFile(
      ext,
      `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`,
    );
    await openssl(
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      ca,
      "-CAkey",
      caKey,
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      ext,
      "-out",
      out,
    );
  };
  const wrongNameCert = `${dir}/wrong-name.pem`;
  await sign("IP:127.0.0.1", cert);
  await sign("DNS:other.example", wrongNameCert);
  return { ca, cert, key, otherCa, wrongNameCert };
}
