/**
 * The Jepsen-style fault run for wolf scale, shared by the CI test (scale-faults.test.ts) and the
 * soak (`npm run soak -- --minutes N`, scale-faults-soak.ts):
 *
 *   3 hosts in network namespaces on one LAN, each with its own MariaDB and `dist/wolf scale start`
 *   (its data dir on a small tmpfs). The client reaches each node's API through a unix socket
 *   (socat inside the node's namespace, to 127.0.0.1), so partitions between the nodes never cut
 *   the client off: it keeps writing to every node, the minority included.
 *
 *   Writers insert unique keys (each in one transaction with a tally bump) through /sql on every
 *   node; a watcher polls /status for who leads which term. N cycles of: fault (nemesis.ts) →
 *   workload continues → heal → settle (one writable leader every node agrees on, and progress).
 *   Then the checker (scale-checker.ts) compares the history with every node's MariaDB.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import type { NodeStatusView } from "../bench/scale-replication/local-cluster.ts";
import {
  apiRequest,
  type Host,
  type MariaDBInstance,
  runDir,
  runWolf,
  startMariaDB,
  TestNet,
  type WolfProcess,
} from "../harness/index.ts";
import {
  type ActiveFault,
  CpuHogs,
  type FaultableCluster,
  type FaultKind,
  Nemesis,
  nemesisSchedule,
  SmallDisk,
} from "../harness/nemesis.ts";
import {
  checkRun,
  explainFailure,
  History,
  type NodeHoldings,
  type RunVerdict,
  verdictLine,
} from "../harness/scale-checker.ts";

const CLUSTER_PORT = 7900;
const API_PORT = 8080;
export const HEARTBEAT_MS = 200;
/** Longest a follower waits before campaigning (election.ts: 2 heartbeats + rank steps + jitter). */
export const ELECTION_TIMEOUT_MS = 2 * HEARTBEAT_MS + 2 * (HEARTBEAT_MS / 2) + HEARTBEAT_MS / 2;
const TABLES = ["app.acked", "app.tally"];

interface NetNode {
  id: number;
  host: Host;
  db: MariaDBInstance;
  disk: SmallDisk;
  config: string;
  /** Unix socket forwarded to the node's API (socat in its namespace). */
  apiSocket: string;
  proc?: WolfProcess;
  /** Times this node's wolf was started (1 = the first start). */
  starts: number;
}

export interface ScaleNodeOptions {
  /** Extra `key = value` lines per section, for one node (e.g. { wal: ["fsync = false"] }). */
  extra?: Record<string, string[]>;
}

export class NetScaleCluster implements FaultableCluster {
  readonly nodes: NetNode[] = [];
  readonly token = randomBytes(18).toString("base64url");
  private readonly secret = randomBytes(32).toString("hex");

  private constructor(
    readonly net: TestNet,
    readonly dir: string,
  ) {}

  get ids(): number[] {
    return this.nodes.map((n) => n.id);
  }

  static async create(count = 3, perNode: Record<number, ScaleNodeOptions> = {}): Promise<NetScaleCluster> {
    const net = await TestNet.create();
    const c = new NetScaleCluster(net, mkdtempSync(join(runDir(), "faults-")));
    try {
      for (let id = 1; id <= count; id++) {
        const host = await net.addHost(`n${id}`);
        const dir = join(c.dir, `n${id}`);
        mkdirSync(dir, { recursive: true });
        const db = await startMariaDB({
          netns: host.ns,
          serverId: id,
          baseDir: dir,
          extraArgs: ["--log-bin=mysql-bin", "--binlog-format=ROW"],
        });
        const disk = await SmallDisk.mount(join(dir, "data"), 48);
        const node: NetNode = {
          id,
          host,
          db,
          disk,
          config: join(dir, "scale.toml"),
          apiSocket: join(dir, "api.sock"),
          starts: 0,
        };
        c.nodes.push(node);
        host.spawn(["socat", `UNIX-LISTEN:${node.apiSocket},fork,mode=600`, `TCP:127.0.0.1:${API_PORT}`], {
          stdout: "ignore",
          stderr: "ignore",
        });
      }
      for (const n of c.nodes) writeFileSync(n.config, c.configText(n, perNode[n.id]?.extra ?? {}));
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private configText(n: NetNode, extra: Record<string, string[]>): string {
    const add = (section: string) => (extra[section] ?? []).map((l) => `${l}\n`).join("");
    const peers = this.nodes.filter((x) => x.id !== n.id).map((x) => `"${x.host.ip}:${CLUSTER_PORT}"`);
    return `[node]
data_dir = "${n.disk.dir}"
log_level = "info"

[cluster]
name = "wolf-faults"
secret = "${this.secret}"
node_id = ${n.id}
bind_address = "0.0.0.0"
advertise_address = "${n.host.ip}"
port = ${CLUSTER_PORT}
peers = [${peers.join(", ")}]
discovery = false
heartbeat_ms = ${HEARTBEAT_MS}
${add("cluster")}
[database]
socket = "${n.db.socket}"
user = "root"
health_interval_ms = 250
${add("database")}
[wal]
segment_size_mb = 4
${add("wal")}
[replication]
ack = "majority"
ack_timeout_ms = 3000
auto_migrate = true
${add("replication")}
[api]
listen = "0.0.0.0:${API_PORT}"
admin_token = "${this.token}"

[proxy]
enabled = false
`;
  }

  node(id: number): NetNode {
    const n = this.nodes.find((x) => x.id === id);
    if (!n) throw new Error(`no node ${id}`);
    return n;
  }

  host(id: number): Host {
    return this.node(id).host;
  }

  wolf(id: number): WolfProcess | undefined {
    return this.node(id).proc;
  }

  db(id: number): MariaDBInstance {
    return this.node(id).db;
  }

  disk(id: number): SmallDisk {
    return this.node(id).disk;
  }

  /** Rewrites one node's config with `extra` lines (takes effect at its next start). */
  reconfigure(id: number, extra: Record<string, string[]>): void {
    const n = this.node(id);
    writeFileSync(n.config, this.configText(n, extra));
  }

  async startWolf(id: number, bootstrap = false): Promise<void> {
    const n = this.node(id);
    if (n.proc?.running) throw new Error(`node ${id}'s wolf is already running`);
    n.starts++;
    const proc = runWolf(["scale", "start", "--config", n.config, ...(bootstrap ? ["--bootstrap"] : [])], {
      netns: n.host.ns,
      env: { NO_COLOR: "1" },
    });
    n.proc = proc;
    await waitUntil(
      async () => {
        if (!proc.running) throw new Error(`node ${id} exited during start:\n${proc.output().slice(-3000)}`);
        return (await this.status(id)) !== undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50, what: `node ${id}'s API to answer` },
    );
  }

  async startAll(): Promise<void> {
    await this.startWolf(1, true);
    await this.waitLeader([1]);
    for (const n of this.nodes.slice(1)) await this.startWolf(n.id);
    await this.waitConverged();
  }

  async api<T = Record<string, unknown>>(
    id: number,
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = 10_000,
  ): Promise<{ status: number; body: T }> {
    const unix = this.node(id).apiSocket;
    return apiRequest<T>({ url: `http://wolf${path}`, unix, token: this.token, method, body, timeoutMs });
  }

  async status(id: number, timeoutMs = 2000): Promise<NodeStatusView | undefined> {
    try {
      const r = await this.api<NodeStatusView>(id, "GET", "/status", undefined, timeoutMs);
      return r.status === 200 ? r.body : undefined;
    } catch {
      return undefined;
    }
  }

  async leader(): Promise<number | undefined> {
    const all = await Promise.all(this.ids.map((id) => this.status(id, 1000)));
    const leaders = all.filter((s) => s?.role === "leader").sort((a, b) => b!.term - a!.term);
    return leaders[0]?.id;
  }

  /** One writable leader that every node in `among` names. */
  async waitLeader(among = this.ids, timeoutMs = 30_000): Promise<number> {
    return waitUntil(
      async () => {
        const all = await Promise.all(among.map((id) => this.status(id)));
        const leader = all.find((s) => s?.role === "leader" && s.writable);
        if (!leader) return undefined;
        return all.every((s) => s && s.leader === leader.id) ? leader.id : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `one writable leader among nodes ${among.join(", ")}` },
    );
  }

  /**
   * Every node recovered from the last fault by itself while the writes go on: an Active voter
   * (within lag_entries of the leader), applying, not needing a migration (auto_migrate done).
   */
  async waitHealthy(timeoutMs: number): Promise<void> {
    await waitUntil(
      async () => {
        const all = await Promise.all(this.ids.map((id) => this.status(id)));
        if (!all.some((s) => s?.role === "leader") || all.some((s) => !s)) return undefined;
        return all.every((s) => s!.state === "Active" && !s!.applyError && !s!.diverged && s!.voters.includes(s!.id))
          ? true
          : undefined;
      },
      { timeoutMs, intervalMs: 200, what: `nodes ${this.ids.join(", ")} to recover (Active, applying)` },
    );
  }

  /** Every node is an Active voter and has applied the leader's last entry. */
  async waitConverged(timeoutMs = 90_000): Promise<void> {
    await waitUntil(
      async () => {
        const all = await Promise.all(this.ids.map((id) => this.status(id)));
        const leader = all.find((s) => s?.role === "leader");
        if (!leader || all.some((s) => !s)) return undefined;
        return all.every(
          (s) =>
            s!.state === "Active" &&
            !s!.applyError &&
            s!.voters.includes(s!.id) &&
            s!.appliedLsn >= leader.lastLsn &&
            s!.lastLsn === leader.lastLsn,
        );
      },
      { timeoutMs, intervalMs: 100, what: `nodes ${this.ids.join(", ")} to converge` },
    ).catch(async (err: Error) => {
      const all = await Promise.all(this.ids.map((id) => this.status(id)));
      throw new Error(`${err.message}\nstatuses: ${JSON.stringify(all)}`);
    });
  }

  async holdings(id: number): Promise<NodeHoldings> {
    const db = this.db(id);
    const rows = await db.query<Array<{ k: string; n: number }>>("SELECT k, COUNT(*) AS n FROM app.acked GROUP BY k");
    const [t] = await db.query<Array<{ n: number }>>("SELECT n FROM app.tally WHERE id = 1");
    const sums = await db.query<Array<{ Table: string; Checksum: unknown }>>(
      `CHECKSUM TABLE ${TABLES.join(", ")} EXTENDED`,
    );
    const keys = new Map(rows.map((r) => [r.k, Number(r.n)]));
    return {
      id,
      keys,
      rows: [...keys.values()].reduce((a, b) => a + b, 0),
      tally: Number(t?.n ?? -1),
      checksums: Object.fromEntries(sums.map((s) => [s.Table, s.Checksum])),
    };
  }

  /** The tail of every node's wolf output, for a failure report. */
  logs(chars = 5000): string {
    return this.nodes
      .map(
        (n) => `--- node ${n.id} (${n.proc?.running ? "running" : "stopped"}) ---\n${n.proc?.output().slice(-chars)}`,
      )
      .join("\n");
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.nodes.map((n) => n.proc?.stop(5000)));
    await Promise.allSettled(this.nodes.map((n) => n.db.stop()));
    await this.net.destroy();
    await Promise.allSettled(this.nodes.map((n) => n.disk.close()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Concurrent writers with unique keys through /sql on every node, recorded in `history`. */
export class Workload {
  private stopped = false;
  private readonly done: Promise<void[]>;

  constructor(
    private readonly c: NetScaleCluster,
    readonly history: History,
    writers: number,
    prefix: string,
  ) {
    this.done = Promise.all(Array.from({ length: writers }, (_, w) => this.writer(w, prefix)));
  }

  private async writer(w: number, prefix: string): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const ids = this.c.ids;
      const node = ids[(i + w) % ids.length]!;
      const key = `${prefix}-${w}-${i}`;
      const startedAt = Date.now();
      try {
        const r = await this.c.api<{ ok: boolean; lsn?: number; ack?: string; error?: string }>(
          node,
          "POST",
          "/sql",
          {
            sql: `START TRANSACTION; INSERT INTO app.acked (k, w) VALUES ('${key}', ${w}); UPDATE app.tally SET n = n + 1 WHERE id = 1; COMMIT`,
          },
          8000,
        );
        const ok = r.status === 200 && r.body.ok === true;
        this.history.record({
          key,
          node,
          startedAt,
          endedAt: Date.now(),
          outcome: ok ? "ok" : "error",
          status: r.status,
          lsn: r.body.lsn,
          ack: r.body.ack,
          error: ok ? undefined : (r.body.error ?? JSON.stringify(r.body)).slice(0, 200),
        });
        if (ok) continue;
      } catch (err) {
        this.history.record({
          key,
          node,
          startedAt,
          endedAt: Date.now(),
          outcome: "unknown",
          error: (err as Error).message.slice(0, 200),
        });
      }
      await Bun.sleep(50); // client backoff after a failed request (no leader for a moment)
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

/** Polls every node's /status and records who says it leads which term. */
export class LeaderWatch {
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(c: NetScaleCluster, history: History, intervalMs = 150) {
    this.done = (async () => {
      while (!this.stopped) {
        await Promise.all(
          c.ids.map(async (id) => {
            const s = await c.status(id, 1000);
            if (s?.role === "leader")
              history.observeLeader({ node: id, term: s.term, writable: s.writable, at: Date.now() });
          }),
        );
        await Bun.sleep(intervalMs); // sampling period of the observer, not synchronisation
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

export interface FaultRunOptions {
  seed: number;
  /** Number of cycles, or run until `untilMs` (wall clock) passes. */
  cycles?: number;
  untilMs?: number;
  writers?: number;
  /** Run with CPU-bound `yes` processes beside the cluster for these cycles (1-based, inclusive). */
  cpuHogCycles?: [number, number];
  kinds?: readonly FaultKind[];
  log?: (line: string) => void;
  /**
   * Strike again as soon as the cluster is writable, while nodes a fault left needing a migration
   * may still be copying data (default false: each fault is survived and healed by itself first).
   * Overlapping recoveries can leave two of three nodes NeedsMigration at once; the one healthy
   * node cannot commit then, so nothing recovers without an operator (a known limitation).
   */
  overlap?: boolean;
}

export interface FaultRunResult {
  seed: number;
  cycles: number;
  verdict: RunVerdict;
  line: string;
  /** Cycles per fault kind. */
  perKind: Record<string, number>;
  /** What each cycle did. */
  steps: string[];
  /** Details of a failure (lost writes, who acknowledged them, leaders seen). */
  explanation?: string;
  history: History;
}

export async function createSchema(c: NetScaleCluster): Promise<void> {
  const leader = await c.waitLeader();
  const r = await c.api(leader, "POST", "/sql", {
    sql: `CREATE DATABASE app;
          CREATE TABLE app.acked (id BIGINT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(64) NOT NULL, w INT NOT NULL,
            at DATETIME(6) NOT NULL DEFAULT NOW(6), INDEX k_idx (k)) ENGINE=InnoDB;
          CREATE TABLE app.tally (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
          INSERT INTO app.tally VALUES (1, 0)`,
  });
  if (r.status !== 200) throw new Error(`creating the schema failed: ${JSON.stringify(r.body)}`);
  await c.waitConverged();
}

/**
 * Runs the nemesis cycles against a started cluster (schema created), then heals, waits for
 * convergence and checks. Never throws for a safety violation: the verdict says it.
 */
export async function runFaults(c: NetScaleCluster, opts: FaultRunOptions): Promise<FaultRunResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const history = new History();
  const nemesis = new Nemesis(c);
  const maxCycles = opts.cycles ?? 1_000_000;
  const schedule = nemesisSchedule(opts.seed, Math.min(maxCycles, 100_000), {
    minHoldMs: 1500,
    maxHoldMs: 3000,
    pauseMs: ELECTION_TIMEOUT_MS * 2,
    kinds: opts.kinds,
  });
  const watch = new LeaderWatch(c, history);
  const load = new Workload(c, history, opts.writers ?? 4, `s${opts.seed}`);
  const perKind: Record<string, number> = {};
  const steps: string[] = [];
  let hogs: CpuHogs | undefined;
  let cycles = 0;
  /** Why the run stopped early: the cluster did not recover after a heal (a liveness failure). */
  let stuck: string | undefined;
  try {
    for (const plan of schedule) {
      if (opts.untilMs !== undefined && Date.now() >= opts.untilMs) break;
      if (opts.cpuHogCycles && plan.cycle === opts.cpuHogCycles[0]) hogs = new CpuHogs(2);
      const t0 = Date.now();
      let fault: ActiveFault | undefined;
      try {
        fault = await nemesis.inject(plan);
        await Bun.sleep(plan.holdMs); // the fault lasts this long while the workload goes on
        await fault.heal();
      } finally {
        if (!fault) await nemesis.healAll();
      }
      // Any wolf that exited during the fault (e.g. on a full disk) is restarted, as systemd would.
      await nemesis.healAll();
      const healedAt = Date.now();
      try {
        await c.waitLeader(c.ids, 60_000);
        await waitUntil(() => history.ackedSince(healedAt) >= 3, { timeoutMs: 60_000, what: "writes acknowledged" });
        if (!opts.overlap) await c.waitHealthy(90_000);
      } catch (err) {
        const statuses = await Promise.all(c.ids.map((id) => c.status(id)));
        stuck = `the cluster did not recover within 60 s after healing cycle ${plan.cycle} (${fault.what}): ${(err as Error).message}; statuses: ${JSON.stringify(statuses.map((s) => s && { id: s.id, role: s.role, state: s.state, term: s.term, leader: s.leader, writable: s.writable, lastLsn: s.lastLsn, commitLsn: s.commitLsn, appliedLsn: s.appliedLsn, diverged: s.diverged, applyError: s.applyError }))}`;
        steps.push(`cycle ${plan.cycle}: ${fault.what}; NOT RECOVERED`);
        log(`[faults] ${stuck}`);
        break;
      }
      cycles++;
      perKind[plan.kind] = (perKind[plan.kind] ?? 0) + 1;
      const step = `cycle ${plan.cycle}${hogs ? " (cpu hogs)" : ""}: ${fault.what}; settled in ${Date.now() - healedAt} ms (cycle ${Date.now() - t0} ms, ${history.acknowledged.length} acked so far)`;
      steps.push(step);
      log(`[faults] ${step}`);
      if (hogs && opts.cpuHogCycles && plan.cycle === opts.cpuHogCycles[1]) {
        await hogs.stop();
        hogs = undefined;
      }
    }
  } finally {
    await hogs?.stop();
    await load.stop();
    await nemesis.healAll();
  }
  let converged = true;
  try {
    await c.waitConverged(stuck ? 30_000 : 120_000);
  } catch (err) {
    converged = false;
    stuck ??= `the nodes did not converge after the final heal: ${(err as Error).message}`;
  }
  await watch.stop();
  // Without convergence, compare only the nodes that apply (a node stuck needing a migration
  // lacks recent writes by design; that is the liveness failure reported, not a loss).
  const statuses = await Promise.all(c.ids.map((id) => c.status(id)));
  const checked = converged
    ? c.ids
    : c.ids.filter((_id, i) => statuses[i] && statuses[i]!.state === "Active" && !statuses[i]!.applyError);
  const holdings = await Promise.all(
    checked.map(async (id) => {
      const h = await c.holdings(id);
      // Not converged: a checked node may not have applied writes a majority acknowledged yet.
      if (!converged) h.appliedLsn = statuses[c.ids.indexOf(id)]?.appliedLsn;
      return h;
    }),
  );
  const verdict = checkRun(history, holdings, stuck);
  const line = verdictLine(opts.seed, cycles, verdict);
  return {
    seed: opts.seed,
    cycles,
    verdict,
    line,
    perKind,
    steps,
    explanation: verdict.ok ? undefined : explainFailure(history, verdict),
    history,
  };
}

/** The seed of this run: SCALE_FAULTS_SEED to replay one, else a fresh one. */
export function faultSeed(): number {
  const env = process.env.SCALE_FAULTS_SEED;
  if (env !== undefined && env !== "") {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
      throw new Error(`SCALE_FAULTS_SEED must be an integer 0..4294967295 (got "${env}")`);
    return n;
  }
  return randomBytes(4).readUInt32BE(0);
}

/** True when this machine can run the suite, else why not. */
export function faultSuiteSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (namespaces, nftables, tmpfs)";
  for (const tool of ["ip", "nft", "socat", "mariadbd", "fallocate"])
    if (Bun.which(tool) === null) return `needs ${tool}`;
  return undefined;
}
