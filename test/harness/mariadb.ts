/**
 * Private MariaDB instances for tests, each in its own temp dir with its own socket and port,
 * optionally inside a network namespace.
 *
 * `mariadb-install-db` runs once per machine and mariadbd version: the result (a "template"
 * datadir, with a password-less root@'%' so other namespaces can connect) is cached under
 * /tmp/wolf-test/cache and copied for each instance, so an instance is ready in about a second.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { waitUntil } from "../../lib/common/wait.ts";
import { freePort } from "./ports.ts";
import {
  HARNESS_ROOT,
  dieWithParentPrefix,
  execArgv,
  killPidsSync,
  LiveSet,
  pidAlive,
  procStartTime,
  runDir,
  runSync,
  signalPid,
  terminatePid,
  trackPid,
  untrackPid,
} from "./procs.ts";

/** Bump when the template recipe changes, so stale cached templates are not reused. */
const TEMPLATE_REVISION = 1;
const CACHE_DIR = join(HARNESS_ROOT, "cache");
/** Defaults sized for many small instances on a 2-core machine; extraArgs can override them (last wins). */
const SERVER_DEFAULTS = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=64M", "--skip-name-resolve"];
const SOCKET_PATH_MAX = 107;

export interface MariaDBOptions {
  /** Run mariadbd inside this network namespace (e.g. `host.ns` of a TestNet host). */
  netns?: string;
  /** TCP port; default: a free one (retried if another process takes it first). */
  port?: number;
  /** Default 127.0.0.1, or 0.0.0.0 inside a namespace (so other hosts on the LAN can connect). */
  bindAddress?: string;
  /** `--server-id`; replication needs distinct ones. Default: mariadbd's own (1). */
  serverId?: number;
  /** More mariadbd options, after ours (so they win), e.g. ["--log-bin", "--binlog-format=ROW"]. */
  extraArgs?: string[];
  /** Parent for the instance's temp dir; default this test process's run dir under /tmp/wolf-test. */
  baseDir?: string;
  /** Deadline for the server to answer a query. Default 30 s. */
  startTimeoutMs?: number;
}

export type Row = Record<string, unknown>;

export interface MariaDBInstance {
  readonly port: number;
  readonly socket: string;
  readonly datadir: string;
  /** The instance's temp dir (datadir, socket, error.log); removed by stop(). */
  readonly dir: string;
  /** PID of the running mariadbd (changes on restart); 0 when not running. */
  readonly pid: number;
  /** Address to connect to over TCP (from inside `netns` when one was given). */
  readonly host: string;
  readonly netns?: string;
  readonly running: boolean;
  /** Runs SQL over the unix socket as root; returns the rows (or mysql2's result header). */
  query<T = Row[]>(sql: string, params?: unknown[]): Promise<T>;
  /** Clean shutdown by PID (SIGTERM, SIGKILL after `graceMs`), then removes the temp dir. Idempotent. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL, keeping the datadir (crash tests; `restart()` brings it back). */
  kill(): Promise<void>;
  /** Clean shutdown if running, then start again on the same datadir and port. */
  restart(): Promise<void>;
  /** Last lines of the error log, for failure messages. */
  logTail(lines?: number): string;
}

// ---- the template datadir -----------------------------------------------------------------------

let templatePromise: Promise<string> | undefined;

/** The cached template datadir for the installed mariadbd, built on first use. */
export function mariadbTemplate(): Promise<string> {
  templatePromise ??= buildTemplate().catch((err) => {
    templatePromise = undefined;
    throw err;
  });
  return templatePromise;
}

function mariadbVersion(): string {
  const r = runSync(["mariadbd", "--version"]);
  const m = /Ver\s+(\S+)/.exec(r.stdout);
  if (r.code !== 0 || !m)
    throw new Error(`cannot run mariadbd --version (is mariadb-server installed?): ${r.stderr.trim()}`);
  return m[1]!.replace(/[^A-Za-z0-9.+_-]/g, "_");
}

async function buildTemplate(): Promise<string> {
  const final = join(CACHE_DIR, `mariadb-${mariadbVersion()}-r${TEMPLATE_REVISION}`);
  if (existsSync(join(final, "data", "mysql"))) return join(final, "data");
  // Built inside our run dir (swept if we die), then renamed into the cache in one step.
  const work = mkdtempSync(join(runDir(), "mariadb-template-"));
  const datadir = join(work, "data");
  const install = await execArgv(
    [
      "mariadb-install-db",
      "--no-defaults",
      `--datadir=${datadir}`,
      "--user=root",
      "--auth-root-authentication-method=normal",
      "--skip-test-db",
      ...SERVER_DEFAULTS,
    ],
    { timeoutMs: 60_000 },
  );
  if (install.code !== 0) throw new Error(`mariadb-install-db failed:\n${install.stdout}${install.stderr}`);
  const server = await launch({ dir: work, datadir, port: 0, bindAddress: "127.0.0.1", args: ["--skip-networking"] });
  try {
    await waitReady(server, 30_000);
    const r = await execArgv(
      [
        "mariadb",
        "--no-defaults",
        `--socket=${server.socket}`,
        "-uroot",
        "-e",
        `DROP USER IF EXISTS ''@'localhost';
         DROP USER IF EXISTS ''@'${hostname()}';
         CREATE USER 'root'@'%';
         GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
         FLUSH PRIVILEGES;`,
      ],
      { timeoutMs: 30_000 },
    );
    if (r.code !== 0) throw new Error(`preparing the MariaDB template failed: ${r.stderr}`);
  } finally {
    await terminatePid(server.proc.pid, { graceMs: 20_000, exited: server.proc.exited, startTime: server.startTime });
    untrackPid(server.proc.pid);
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  try {
    renameSync(work, final);
  } catch {
    // A concurrent test process published one first: use that, drop ours.
    rmSync(work, { recursive: true, force: true });
  }
  for (const leftover of ["mysqld.sock", "mariadbd.pid", "tmp"])
    rmSync(join(final, leftover), { recursive: true, force: true });
  if (!existsSync(join(final, "data", "mysql"))) throw new Error(`MariaDB template ${final} is incomplete`);
  return join(final, "data");
}

// ---- launching ----------------------------------------------------------------------------------

interface Launched {
  proc: Bun.Subprocess<"ignore", "ignore", Bun.BunFile>;
  startTime?: string;
  socket: string;
  errorLog: string;
}

async function launch(o: {
  dir: string;
  datadir: string;
  port: number;
  bindAddress: string;
  netns?: string;
  args: string[];
}): Promise<Launched> {
  const socket = join(o.dir, "mysqld.sock");
  if (socket.length > SOCKET_PATH_MAX)
    throw new Error(`socket path too long for a unix socket (use a shorter baseDir): ${socket}`);
  const errorLog = join(o.dir, "error.log");
  mkdirSync(join(o.dir, "tmp"), { recursive: true });
  const argv = [
    ...dieWithParentPrefix(),
    ...(o.netns ? ["ip", "netns", "exec", o.netns] : []),
    "mariadbd",
    "--no-defaults",
    `--datadir=${o.datadir}`,
    `--socket=${socket}`,
    `--port=${o.port}`,
    "--user=root",
    `--bind-address=${o.bindAddress}`,
    `--pid-file=${join(o.dir, "mariadbd.pid")}`,
    `--log-error=${errorLog}`,
    `--tmpdir=${join(o.dir, "tmp")}`,
    ...SERVER_DEFAULTS,
    ...o.args,
  ];
  // mariadbd writes to stderr only before --log-error is open; keep that too.
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: Bun.file(join(o.dir, "stderr.log")) });
  const startTime = procStartTime(proc.pid);
  trackPid(proc.pid, `mariadbd ${o.datadir}`);
  return { proc, startTime, socket, errorLog };
}

/** Polls until a query over the socket succeeds; fails at once if mariadbd exits. */
async function waitReady(server: Launched, timeoutMs: number): Promise<void> {
  const outcome = await waitUntil(
    async () => {
      if (server.proc.exitCode !== null || server.proc.signalCode !== null) return "exited" as const;
      if (!existsSync(server.socket)) return undefined;
      const conn = await mysql.createConnection({ socketPath: server.socket, user: "root", connectTimeout: 2000 });
      try {
        await conn.query("SELECT 1");
      } finally {
        conn.destroy();
      }
      return "ready" as const;
    },
    { timeoutMs, intervalMs: 50, what: `mariadbd (${server.socket}) to accept queries` },
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${tail(server.errorLog, 15)}`);
  });
  if (outcome === "exited") {
    throw new Error(`mariadbd exited with code ${server.proc.exitCode} during startup:\n${tail(server.errorLog, 15)}`);
  }
}

function tail(file: string, lines: number): string {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return "(no error log)";
  }
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

// ---- instances ----------------------------------------------------------------------------------

const liveInstances: LiveSet<Instance> = new LiveSet<Instance>({
  what: "MariaDB instance(s)",
  order: 50,
  destroySync: (instance) => instance.destroySync(),
  stop: (instance) => instance.stop(5000),
});

class Instance implements MariaDBInstance {
  private server?: Launched;
  private conn?: Promise<mysql.Connection>;
  private stopping?: Promise<void>;

  constructor(
    readonly dir: string,
    readonly datadir: string,
    public port: number,
    private readonly bindAddress: string,
    private readonly args: string[],
    private readonly portChosen: boolean,
    readonly netns?: string,
  ) {}

  get socket(): string {
    return join(this.dir, "mysqld.sock");
  }

  get pid(): number {
    return this.running ? this.server!.proc.pid : 0;
  }

  get running(): boolean {
    return this.server !== undefined && pidAlive(this.server.proc.pid, this.server.startTime);
  }

  get host(): string {
    return this.bindAddress === "0.0.0.0" || this.bindAddress === "::" ? "127.0.0.1" : this.bindAddress;
  }

  async start(timeoutMs: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const server = await launch({
        dir: this.dir,
        datadir: this.datadir,
        port: this.port,
        bindAddress: this.bindAddress,
        netns: this.netns,
        args: this.args,
      });
      this.server = server;
      try {
        await waitReady(server, timeoutMs);
        return;
      } catch (err) {
        await this.halt("SIGKILL");
        const portTaken = /Address already in use|Bind on TCP\/IP port/.test(this.logTail(20));
        if (!portTaken || !this.portChosen || attempt >= 3) throw err;
        this.port = await freePort(); // another process took our free port first
      }
    }
  }

  async query<T = Row[]>(sql: string, params?: unknown[]): Promise<T> {
    if (!this.running) throw new Error(`MariaDB on port ${this.port} is not running`);
    this.conn ??= mysql.createConnection({ socketPath: this.socket, user: "root", multipleStatements: true });
    const conn = this.conn;
    try {
      const [rows] = await (await conn).query(sql, params);
      return rows as T;
    } catch (err) {
      // A broken connection (server restarted) is dropped; the next query reconnects.
      if ((err as { fatal?: boolean }).fatal || !this.running) this.dropConnection();
      throw err;
    }
  }

  logTail(lines = 20): string {
    return tail(join(this.dir, "error.log"), lines);
  }

  stop(graceMs = 20_000): Promise<void> {
    this.stopping ??= (async () => {
      await this.halt("SIGTERM", graceMs);
      rmSync(this.dir, { recursive: true, force: true });
      liveInstances.delete(this);
    })();
    return this.stopping;
  }

  async kill(): Promise<void> {
    await this.halt("SIGKILL");
  }

  async restart(): Promise<void> {
    if (this.stopping) throw new Error("MariaDB instance was stopped; start a new one");
    await this.halt("SIGTERM");
    await this.start(30_000);
  }

  /** Synchronous SIGKILL and removal, for exit handlers. */
  destroySync(): void {
    if (this.server) killPidsSync([{ pid: this.server.proc.pid, startTime: this.server.startTime }]);
    rmSync(this.dir, { recursive: true, force: true });
    liveInstances.delete(this);
  }

  private dropConnection(): void {
    const conn = this.conn;
    this.conn = undefined;
    void conn?.then((c) => c.destroy()).catch(() => {});
  }

  private async halt(signal: "SIGTERM" | "SIGKILL", graceMs = 20_000): Promise<void> {
    this.dropConnection();
    const server = this.server;
    if (!server) return;
    if (signal === "SIGKILL") signalPid(server.proc.pid, "SIGKILL");
    await terminatePid(server.proc.pid, { graceMs, exited: server.proc.exited, startTime: server.startTime });
    untrackPid(server.proc.pid);
    this.server = undefined;
  }
}

/** Starts a private MariaDB and resolves once it answers queries. Stop it with `stop()` (afterAll). */
export async function startMariaDB(opts: MariaDBOptions = {}): Promise<MariaDBInstance> {
  const template = await mariadbTemplate();
  const parent = opts.baseDir ?? runDir();
  mkdirSync(parent, { recursive: true });
  const dir = mkdtempSync(join(parent, "mariadb-"));
  const datadir = join(dir, "data");
  const args = [...(opts.serverId !== undefined ? [`--server-id=${opts.serverId}`] : []), ...(opts.extraArgs ?? [])];
  const bindAddress = opts.bindAddress ?? (opts.netns ? "0.0.0.0" : "127.0.0.1");
  const port = opts.port ?? (await freePort());
  const instance = new Instance(dir, datadir, port, bindAddress, args, opts.port === undefined, opts.netns);
  liveInstances.add(instance);
  try {
    const cp = await execArgv(["cp", "-a", "--reflink=auto", template, datadir], { timeoutMs: 60_000 });
    if (cp.code !== 0) throw new Error(`copying the MariaDB template failed: ${cp.stderr}`);
    await instance.start(opts.startTimeoutMs ?? 30_000);
  } catch (err) {
    await instance.stop();
    throw err;
  }
  return instance;
}
