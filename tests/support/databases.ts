/**
 * Real database servers for tests, from Debian's `postgresql` and
 * `mariadb-server` packages: each in its own temporary folder, listening
 * only on a unix socket there, running as the packages' service user,
 * stopped by PID and removed by `close()` (or `await using`).
 *
 * @module
 */

import { sleep, within } from "./time.ts";

/** The line that installs PostgreSQL's server and client. */
export const POSTGRES_APT_LINE = "apt-get install postgresql";
/** The line that installs MariaDB's server and client. */
export const MARIADB_APT_LINE = "apt-get install mariadb-server";

/** Bounded wait for a server to accept connections (loaded CI machines). */
const READY_MS = 60_000;
/** Bounded wait for a server process to exit after a signal. */
const EXIT_MS = 30_000;

function postgresBin(): string | undefined {
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")]
      .map((e) => e.name).filter((n) => /^\d+$/.test(n))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const dir = `/usr/lib/postgresql/${v}/bin`;
      if (isFile(`${dir}/postgres`) && isFile(`${dir}/initdb`)) return dir;
    }
  } catch { /* not installed */ }
  return undefined;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function isRoot(): boolean {
  return Deno.uid() === 0;
}

/**
 * Why PostgreSQL tests cannot run here (the apt-get line that fixes it), or
 * undefined when they can. As root the server runs as `postgres`, otherwise
 * as the current user.
 */
export function postgresMissing(): string | undefined {
  if (!postgresBin() || !isFile("/usr/bin/psql")) {
    return `PostgreSQL is not installed: ${POSTGRES_APT_LINE}`;
  }
  return undefined;
}

/** Why MariaDB tests cannot run here, or undefined when they can. */
export function mariadbMissing(): string | undefined {
  for (
    const p of [
      "/usr/sbin/mariadbd",
      "/usr/bin/mariadb-install-db",
      "/usr/bin/mariadb",
    ]
  ) {
    if (!isFile(p)) return `MariaDB is not installed: ${MARIADB_APT_LINE}`;
  }
  return undefined;
}

/**
 * MariaDB's administrator over the socket: mariadb-install-db gives `root`
 * and the installing OS user unix_socket authentication.
 */
function mariadbAdmin(): string {
  return isRoot() ? "root" : (Deno.env.get("USER") ?? "root");
}

function idsOf(user: string): { uid: number; gid: number } {
  for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
    const f = line.split(":");
    if (f[0] === user) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`no user ${user}`);
}

async function run(
  argv: string[],
  options: { user?: string; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const full = options.user && isRoot()
    ? [
      "setpriv",
      `--reuid=${options.user}`,
      `--regid=${options.user}`,
      "--init-groups",
      ...argv,
    ]
    : argv;
  const child = new Deno.Command(full[0]!, {
    args: full.slice(1),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

async function must(
  argv: string[],
  options: { user?: string; stdin?: string; cwd?: string } = {},
): Promise<string> {
  const r = await run(argv, options);
  if (r.code !== 0) {
    throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  }
  return r.stdout;
}

async function waitFor(
  what: string,
  ms: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await probe()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** True while `pid` is a live (non-zombie) process. */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** What every test database offers. */
export interface TestDatabase extends AsyncDisposable {
  readonly kind: "postgresql" | "mariadb";
  /** The folder holding data, socket and log. */
  readonly dir: string;
  /** The folder of the unix socket. */
  readonly socketDir: string;
  /** The server's PID while it runs. */
  readonly pid: number | undefined;
  /** A URL for our `--sql-url` that reaches database `db` as the app user. */
  url(db: string): string;
  /** The same over TCP on 127.0.0.1 (only when created with `tcp: true`). */
  tcpUrl(db: string): string;
  /** Run SQL as the administrator in `db`; rows as tab-separated lines. */
  sql(db: string, text: string): Promise<string>;
  /** Start (again) on the same data. */
  start(): Promise<void>;
  /** Kill the server hard (SIGKILL to every server process) and wait. */
  kill(): Promise<void>;
  /** Stop every server process (SIGSTOP): it hangs without closing anything. */
  freeze(): Promise<void>;
  /** Let a frozen server go on (SIGCONT). */
  thaw(): void;
  /** Stop and remove everything. */
  close(): Promise<void>;
}

abstract class Base implements TestDatabase {
  abstract readonly kind: "postgresql" | "mariadb";
  #child: Deno.ChildProcess | undefined;
  #status: Promise<Deno.CommandStatus> | undefined;
  constructor(readonly dir: string) {}
  get socketDir(): string {
    return `${this.dir}/run`;
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  abstract url(db: string): string;
  abstract tcpUrl(db: string): string;
  abstract sql(db: string, text: string): Promise<string>;
  protected abstract argv(): string[];
  protected abstract user(): string;
  protected abstract ready(): Promise<boolean>;

  async start(): Promise<void> {
    if (this.#child) throw new Error("already running");
    // Servers refuse root: as root, run them as their service user.
    const argv = isRoot()
      ? [
        "setpriv",
        `--reuid=${idsOf(this.user()).uid}`,
        `--regid=${idsOf(this.user()).gid}`,
        "--init-groups",
        ...this.argv(),
      ]
      : this.argv();
    const log = await Deno.open(`${this.dir}/server.log`, {
      append: true,
      create: true,
    });
    log.close();
    this.#child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#status = this.#child.status;
    const status = this.#status;
    let exited = false;
    void status.then(() => exited = true);
    await waitFor(`${this.kind} to start`, READY_MS, async () => {
      if (exited) {
        const tail = await Deno.readTextFile(`${this.dir}/server.log`)
          .catch(() => "");
        throw new Error(`${this.kind} exited at start:\n${tail.slice(-2000)}`);
      }
      return await this.ready();
    });
  }

  /** Signal the server and every process of its user under our data folder. */
  async #signal(signal: Deno.Signal): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const pid = child.pid;
    // PostgreSQL's backends are children of the postmaster; kill them too
    // so a restart finds no old process holding the shared memory.
    const kids = childrenOf(pid);
    try {
      child.kill(signal);
    } catch { /* gone */ }
    for (const k of kids) {
      try {
        Deno.kill(k, signal);
      } catch { /* gone */ }
    }
    await within(
      this.#status!,
      EXIT_MS,
      `${this.kind} ${pid} to exit on ${signal}`,
    );
    await waitFor(
      "server processes to go",
      EXIT_MS,
      () => Promise.resolve(kids.every((k) => !running(k))),
    );
    this.#child = undefined;
    this.#status = undefined;
  }

  async kill(): Promise<void> {
    await this.#signal("SIGKILL");
  }

  /** The server and its child processes (PostgreSQL runs one per connection). */
  #pids(): number[] {
    const pid = this.#child?.pid;
    if (pid === undefined) throw new Error(`${this.kind} is not running`);
    return [pid, ...childrenOf(pid)];
  }

  #each(signal: Deno.Signal): void {
    for (const p of this.#pids()) {
      try {
        Deno.kill(p, signal);
      } catch { /* gone */ }
    }
  }

  /**
   * Stop the server and its children (SIGSTOP) and wait, bounded, until the
   * kernel reports every thread of them stopped: a signal is not a stop,
   * and a query sent in between would still be answered.
   */
  async freeze(): Promise<void> {
    this.#each("SIGSTOP");
    const deadline = Date.now() + 10_000;
    while (!this.#pids().every(allThreadsStopped)) {
      if (Date.now() > deadline) throw new Error(`${this.kind} did not stop`);
      await sleep(5);
    }
  }

  thaw(): void {
    this.#each("SIGCONT");
  }

  async close(): Promise<void> {
    if (this.#child) this.thaw();
    try {
      await this.#signal("SIGTERM");
    } catch {
      await this.#signal("SIGKILL");
    }
    await Deno.remove(this.dir, { recursive: true });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
function freeTcpPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === pid) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

async function tempDirFor(user: string, prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  await Deno.chmod(dir, 0o755);
  await Deno.mkdir(`${dir}/run`, { mode: 0o755 });
  if (isRoot()) {
    const { uid, gid } = idsOf(user);
    await Deno.chown(dir, uid, gid);
    await Deno.chown(`${dir}/run`, uid, gid);
  }
  return dir;
}

/**
 * A PostgreSQL cluster on its unix socket (and on 127.0.0.1 with `tcp`),
 * trust authentication.
 */
export class Postgres extends Base {
  readonly kind = "postgresql";
  readonly #bin: string;
  /** The TCP port on 127.0.0.1, or 0 for the unix socket only. */
  readonly port: number;
  private constructor(dir: string, bin: string, port: number) {
    super(dir);
    this.#bin = bin;
    this.port = port;
  }

  /**
   * initdb as `postgres` in a new temporary folder, start, and make `db`
   * databases; `tcp` adds a listener on 127.0.0.1 at a free port.
   */
  static async create(
    databases: readonly string[] = [],
    options: { tcp?: boolean } = {},
  ): Promise<Postgres> {
    const bin = postgresBin();
    if (!bin) throw new Error(postgresMissing());
    const dir = await tempDirFor("postgres", "poppass-pg-");
    const pg = new Postgres(dir, bin, options.tcp ? freeTcpPort() : 0);
    try {
      await must([
        `${bin}/initdb`,
        "-D",
        `${dir}/data`,
        "-U",
        "postgres",
        "--auth=trust",
        "--no-sync",
        "-E",
        "UTF8",
        "--locale=C",
      ], { user: "postgres" });
      await pg.start();
      for (const db of databases) {
        await pg.sql("postgres", `CREATE DATABASE ${db}`);
      }
      return pg;
    } catch (error) {
      await pg.close().catch(() => {});
      throw error;
    }
  }

  protected user(): string {
    return "postgres";
  }

  protected argv(): string[] {
    return [
      `${this.#bin}/postgres`,
      "-D",
      `${this.dir}/data`,
      "-k",
      this.socketDir,
      "-h",
      this.port ? "127.0.0.1" : "",
      "-p",
      String(this.port || 5432),
      "-F",
      "-c",
      "max_connections=60",
      "-c",
      `logging_collector=off`,
      "-c",
      "log_destination=stderr",
    ];
  }

  protected async ready(): Promise<boolean> {
    const r = await run([
      "/usr/bin/psql",
      "-h",
      this.socketDir,
      "-p",
      String(this.port || 5432),
      "-U",
      "postgres",
      "-d",
      "postgres",
      "-Atc",
      "SELECT 1",
    ]);
    return r.code === 0;
  }

  url(db: string): string {
    return `postgresql://postgres@/${db}?host=${this.socketDir}${
      this.port ? `&port=${this.port}` : ""
    }`;
  }

  tcpUrl(db: string): string {
    if (!this.port) throw new Error("created without tcp");
    return `postgresql://postgres:unused@127.0.0.1:${this.port}/${db}?sslmode=prefer`;
  }

  async sql(db: string, text: string): Promise<string> {
    return await must([
      "/usr/bin/psql",
      "-h",
      this.socketDir,
      "-p",
      String(this.port || 5432),
      "-U",
      "postgres",
      "-d",
      db,
      "-v",
      "ON_ERROR_STOP=1",
      "-AtqF",
      "\t",
      "-f",
      "-",
    ], { stdin: text });
  }
}

/**
 * A MariaDB server with `--skip-networking` (or on 127.0.0.1 with `tcp`);
 * the app user `poppass` (password `dbsecret`) may use every database.
 */
export class Mariadb extends Base {
  readonly kind = "mariadb";
  /** The app user's password (in URLs of tests only). */
  static readonly PASSWORD = "dbsecret";

  /** The TCP port on 127.0.0.1, or 0 for the unix socket only. */
  readonly port: number;
  private constructor(dir: string, port: number) {
    super(dir);
    this.port = port;
  }

  /**
   * mariadb-install-db in a new temporary folder, start, make databases;
   * `tcp` adds a listener on 127.0.0.1 at a free port.
   */
  static async create(
    databases: readonly string[] = [],
    options: { tcp?: boolean } = {},
  ): Promise<Mariadb> {
    const missing = mariadbMissing();
    if (missing) throw new Error(missing);
    const dir = await tempDirFor("mysql", "poppass-mariadb-");
    const db = new Mariadb(dir, options.tcp ? freeTcpPort() : 0);
    try {
      await must([
        "/usr/bin/mariadb-install-db",
        "--no-defaults",
        ...(isRoot() ? ["--user=mysql"] : []),
        `--datadir=${dir}/data`,
        "--skip-test-db",
        "--auth-root-authentication-method=socket",
      ], { cwd: "/usr" });
      await db.start();
      const creates = databases.map((d) => `CREATE DATABASE ${d};`).join("");
      await db.sql(
        "mysql",
        `${creates}CREATE USER 'poppass'@'localhost' IDENTIFIED BY '${Mariadb.PASSWORD}';` +
          `GRANT ALL ON *.* TO 'poppass'@'localhost';` +
          `CREATE USER 'poppass'@'127.0.0.1' IDENTIFIED BY '${Mariadb.PASSWORD}';` +
          `GRANT ALL ON *.* TO 'poppass'@'127.0.0.1';`,
      );
      return db;
    } catch (error) {
      await db.close().catch(() => {});
      throw error;
    }
  }

  get socket(): string {
    return `${this.socketDir}/mysqld.sock`;
  }

  protected user(): string {
    // mariadbd drops to --user itself; started as root, it would.
    return "mysql";
  }

  protected argv(): string[] {
    return [
      "/usr/sbin/mariadbd",
      "--no-defaults",
      `--datadir=${this.dir}/data`,
      `--socket=${this.socket}`,
      `--pid-file=${this.dir}/run/mariadbd.pid`,
      `--log-error=${this.dir}/server.log`,
      ...(this.port
        ? ["--bind-address=127.0.0.1", `--port=${this.port}`]
        : ["--skip-networking"]),
      "--skip-log-bin",
      "--innodb-buffer-pool-size=16M",
      "--innodb-log-file-size=8M",
      "--max-connections=80",
    ];
  }

  protected async ready(): Promise<boolean> {
    const r = await run([
      "/usr/bin/mariadb-admin",
      "--no-defaults",
      `--socket=${this.socket}`,
      `-u${mariadbAdmin()}`,
      "ping",
    ]);
    return r.code === 0;
  }

  url(db: string): string {
    return `mysql://poppass:${Mariadb.PASSWORD}@localhost/${db}?socket=${this.socket}`;
  }

  tcpUrl(db: string): string {
    if (!this.port) throw new Error("created without tcp");
    return `mysql://poppass:${Mariadb.PASSWORD}@127.0.0.1:${this.port}/${db}`;
  }

  async sql(db: string, text: string): Promise<string> {
    return await must([
      "/usr/bin/mariadb",
      "--no-defaults",
      `--socket=${this.socket}`,
      `-u${mariadbAdmin()}`,
      "-N",
      "-B",
      db,
    ], { stdin: text });
  }
}

/** Is every thread of `pid` stopped (state T), or the process gone? */
function allThreadsStopped(pid: number): boolean {
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const stat = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/stat`);
      const state = stat.slice(
        stat.lastIndexOf(")") + 2,
        stat.lastIndexOf(")") + 3,
      );
      if (state !== "T" && state !== "t" && state !== "Z") return false;
    }
    return true;
  } catch {
    return true; // gone
  }
}
