/**
 * A local wolf scale cluster for tests, the benchmark and the demo: N private MariaDB instances
 * (ROW binlog, distinct server ids) and N `dist/wolf scale start` processes on loopback ports.
 * Node 1 bootstraps; the others join through static peers. Every process is stopped by PID.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../../lib/common/wait.ts";
import {
  apiRequest,
  freePort,
  runWolf,
  startMariaDB,
  type MariaDBInstance,
  type WolfProcess,
} from "../../harness/index.ts";
import { runDir } from "../../harness/procs.ts";

export interface LocalNode {
  id: number;
  db: MariaDBInstance;
  config: string;
  dataDir: string;
  api: string;
  clusterPort: number;
  proc?: WolfProcess;
}

export interface ClusterOptions {
  nodes?: number;
  ack?: "none" | "one" | "majority" | "all";
  heartbeatMs?: number;
  /** More mariadbd options for every instance. */
  mariadbArgs?: string[];
  /** Base directory (default: the harness run dir). */
  baseDir?: string;
  logLevel?: string;
  env?: Record<string, string>;
}

export interface NodeStatusView {
  id: number;
  role: string;
  state: string;
  term: number;
  leader: number | null;
  leaderApi?: string | null;
  lastLsn: number;
  commitLsn: number;
  appliedLsn: number;
  voters: number[];
  applyError: string | null;
  diverged: string | null;
  writable: boolean;
  database: { up: boolean };
  capture?: { transactions: number } | null;
}

export class LocalScaleCluster {
  readonly nodes: LocalNode[] = [];
  readonly token = randomBytes(18).toString("base64url");
  private readonly secret = randomBytes(32).toString("hex");
  private readonly name = `wolf-test-${randomBytes(3).toString("hex")}`;

  private constructor(
    readonly dir: string,
    readonly opts: ClusterOptions,
  ) {}

  /** Starts the MariaDB instances and writes the configs (wolf itself: startAll / startNode). */
  static async create(opts: ClusterOptions = {}): Promise<LocalScaleCluster> {
    const base = opts.baseDir ?? runDir();
    mkdirSync(base, { recursive: true });
    const c = new LocalScaleCluster(mkdtempSync(join(base, "scale-")), opts);
    try {
      const n = opts.nodes ?? 3;
      const dbs = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          startMariaDB({
            serverId: i + 1,
            baseDir: c.dir,
            extraArgs: ["--log-bin=mysql-bin", "--binlog-format=ROW", ...(opts.mariadbArgs ?? [])],
          }),
        ),
      );
      const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
      const apiPorts = await Promise.all(Array.from({ length: n }, () => freePort()));
      for (let i = 0; i < n; i++) {
        const id = i + 1;
        const dataDir = join(c.dir, `node${id}`);
        mkdirSync(dataDir, { recursive: true });
        const node: LocalNode = {
          id,
          db: dbs[i]!,
          config: join(c.dir, `scale${id}.toml`),
          dataDir,
          api: `http://127.0.0.1:${apiPorts[i]}`,
          clusterPort: ports[i]!,
        };
        c.nodes.push(node);
        writeFileSync(node.config, c.configText(node, ports, apiPorts[i]!));
      }
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private configText(node: LocalNode, ports: number[], apiPort: number): string {
    return `[node]
data_dir = "${node.dataDir}"
log_level = "${this.opts.logLevel ?? "info"}"

[cluster]
name = "${this.name}"
secret = "${this.secret}"
node_id = ${node.id}
bind_address = "127.0.0.1"
advertise_address = "127.0.0.1"
port = ${node.clusterPort}
peers = [${ports
      .filter((p) => p !== node.clusterPort)
      .map((p) => `"127.0.0.1:${p}"`)
      .join(", ")}]
discovery = false
heartbeat_ms = ${this.opts.heartbeatMs ?? 200}

[database]
socket = "${node.db.socket}"
user = "root"
health_interval_ms = 250

[replication]
ack = "${this.opts.ack ?? "one"}"
ack_timeout_ms = 5000

[api]
listen = "127.0.0.1:${apiPort}"
admin_token = "${this.token}"

[proxy]
enabled = false
`;
  }

  /**
   * Adds `key = value` lines to `section` of a node's config (before it starts), e.g. the
   * [replication] settings `wolf ctl scale binlog-setup` prints for binlog mode. Returns a function
   * that puts the config back as it was.
   */
  configure(id: number, section: string, lines: string[]): () => void {
    const n = this.node(id);
    const text = readFileSync(n.config, "utf8");
    const header = `[${section}]\n`;
    const at = text.indexOf(header);
    const added = lines.map((l) => `${l}\n`).join("");
    writeFileSync(
      n.config,
      at < 0
        ? `${text}\n${header}${added}`
        : `${text.slice(0, at + header.length)}${added}${text.slice(at + header.length)}`,
    );
    return () => writeFileSync(n.config, text);
  }

  node(id: number): LocalNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  /** Starts `wolf scale start` for a node and waits until its API answers. */
  async startNode(id: number, opts: { bootstrap?: boolean } = {}): Promise<WolfProcess> {
    const n = this.node(id);
    if (n.proc?.running) throw new Error(`node ${id} is already running`);
    n.proc = runWolf(["scale", "start", "--config", n.config, ...(opts.bootstrap ? ["--bootstrap"] : [])], {
      env: { NO_COLOR: "1", ...this.opts.env },
    });
    // Ready when its API answers (not a log line: log_level may hide it).
    const proc = n.proc;
    await waitUntil(
      async () => {
        if (!proc.running) throw new Error(`node ${id} exited during start:\n${proc.output().slice(-3000)}`);
        return (await this.status(id)) !== undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50, what: `node ${id}'s API to answer` },
    );
    return proc;
  }

  /** Node 1 bootstraps, then the others join; resolves when all are voters, Active and applied. */
  async startAll(): Promise<void> {
    await this.startNode(1, { bootstrap: true });
    await this.waitLeader([1]);
    await Promise.all(this.nodes.slice(1).map((n) => this.startNode(n.id)));
    await this.waitConverged();
  }

  async api<T = Record<string, unknown>>(
    id: number,
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = 15_000,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; body: T }> {
    return apiRequest<T>({ url: `${this.node(id).api}${path}`, token: this.token, method, body, timeoutMs, headers });
  }

  async status(id: number): Promise<NodeStatusView | undefined> {
    try {
      const r = await this.api<NodeStatusView>(id, "GET", "/status", undefined, 2000);
      return r.status === 200 ? r.body : undefined;
    } catch {
      return undefined;
    }
  }

  running(): LocalNode[] {
    return this.nodes.filter((n) => n.proc?.running);
  }

  /** The node every running node agrees leads (and that accepts writes). */
  async waitLeader(among = this.running().map((n) => n.id), timeoutMs = 30_000): Promise<number> {
    return waitUntil(
      async () => {
        const all = await Promise.all(among.map((id) => this.status(id)));
        const leader = all.find((s) => s?.role === "leader" && s.writable);
        if (!leader) return undefined;
        return all.every((s) => s && s.leader === leader.id) ? leader.id : undefined;
      },
      { timeoutMs, intervalMs: 50, what: `one writable leader among nodes ${among.join(", ")}` },
    );
  }

  /** Every running node is a voter, Active, and has applied the leader's last entry. */
  async waitConverged(timeoutMs = 60_000, ids = this.running().map((n) => n.id)): Promise<NodeStatusView[]> {
    return waitUntil(
      async () => {
        const all = await Promise.all(ids.map((id) => this.status(id)));
        if (all.some((s) => !s)) return undefined;
        const leader = all.find((s) => s!.role === "leader");
        if (!leader) return undefined;
        for (const s of all) {
          if (s!.applyError) throw new Error(`node ${s!.id} stopped applying: ${s!.applyError}`);
          if (
            s!.state !== "Active" ||
            !s!.voters.includes(s!.id) ||
            s!.appliedLsn < leader.lastLsn ||
            s!.lastLsn !== leader.lastLsn
          )
            return undefined;
        }
        return all as NodeStatusView[];
      },
      { timeoutMs, intervalMs: 50, what: `nodes ${ids.join(", ")} to converge` },
    );
  }

  async checksums(id: number, tables: string[]): Promise<Record<string, unknown>> {
    const rows = await this.node(id).db.query<Array<{ Table: string; Checksum: unknown }>>(
      `CHECKSUM TABLE ${tables.join(", ")} EXTENDED`,
    );
    return Object.fromEntries(rows.map((r) => [r.Table, r.Checksum]));
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.proc?.stop(5000)));
    await Promise.allSettled(this.nodes.map((n) => n.db.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
