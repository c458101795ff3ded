/**
 * `wolf scale start`: one node of a wolf scale cluster.
 *
 *   cluster node (lib/cluster) ── log store: the WAL ── FSM: ScaleFsm (apply on the local MariaDB)
 *   leader: captures the local MariaDB's binlog into the log (LeaderCapture), checks its MariaDB
 *           and steps down when it is down; writes through the HTTP API are answered once the
 *           transaction's entry reached `replication.ack`.
 *   follower: applies entries in order; forwards API writes to the leader.
 *
 * A witness (`[cluster] witness = true`, witness.ts) runs only the cluster node, its WAL and the
 * API's status views: no MariaDB, no health check, no capture, no apply.
 *
 * This file wires the parts and keeps the node's own state (its MariaDB's health, divergence,
 * where the other nodes' APIs are); leading and handing over: leadership.ts; the API's SQL:
 * writes.ts; dumps and migrations between nodes: node-migration.ts; the HTTP API: api/server.ts
 * (through ApiBackend, which this class implements).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { ClusterNode } from "../cluster/node.ts";
import { type RunningCluster, startCluster } from "../cluster/start.ts";
import { FileStableStore } from "../cluster/stable-store.ts";
import type { FSM, Term } from "../cluster/types.ts";
import { DaemonClient } from "../common/daemon-client.ts";
import { errnoReason, WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { waitUntil } from "../common/wait.ts";
import { Wal } from "../wal/wal.ts";
import { apiUrlOf } from "./addresses.ts";
import { type ApiBackend, startApi } from "./api/server.ts";
import { Snowflake } from "./api/snowflake.ts";
import type { Statement } from "./api/statements.ts";
import type { NodeSnapshot } from "./api/views.ts";
import type { ScaleConfig } from "./config.ts";
import { connectOptions, describeDb, requireReplicationSettings, unreachableDbHint, withConnection } from "./db.ts";
import { Directory, type DirectoryEntry } from "./directory.ts";
import { ScaleFsm } from "./fsm.ts";
import { Leadership } from "./leadership.ts";
import type { LeaderMarker } from "./marker.ts";
import { type ConnectOptions, MysqlConnection } from "./mysql/connection.ts";
import { NodeMigration } from "./node-migration.ts";
import { WalLogStore } from "./wal-logstore.ts";
import { WITNESS_ROLE, WitnessFsm, witnessRefusal } from "./witness.ts";
import { type WriteOptions, type WriteOutcome, Writes } from "./writes.ts";

const log = logger("scale");

/** How long `scale start` waits for the local MariaDB (it may start after us at boot). */
const DATABASE_WAIT_MS = 300_000;
const DATABASE_LOG_EVERY_MS = 10_000;

export interface DaemonOptions {
  config: ScaleConfig;
  /** The config file it came from (named in hints). */
  configFile?: string;
  bootstrap?: boolean;
  /** `wolf scale join <host:port>`: one more static peer. */
  join?: string;
}

export class ScaleDaemon implements ApiBackend {
  readonly nodeId: number;
  readonly apiUrl: string;
  readonly connect: ConnectOptions;
  readonly snowflake: Snowflake;
  readonly directory: Directory;
  readonly startedAt = Date.now();
  readonly leadership: Leadership = new Leadership(this);
  readonly migration: NodeMigration = new NodeMigration(this);
  /** `[cluster] witness`: no database; `fsm` stays unset (witnessFsm instead). */
  readonly witness: boolean;
  node!: ClusterNode;
  running!: RunningCluster;
  fsm!: ScaleFsm;
  witnessFsm: WitnessFsm | undefined;
  wal!: Wal;
  store!: WalLogStore;
  writes!: Writes;
  dbUp = true;
  dbError: string | null = null;
  /** Why this node needs a migration, when it does. */
  diverged: string | null = null;
  mariadbVersion = "";
  stopped = false;
  private timers: Array<ReturnType<typeof setInterval>> = [];
  private healthConn: MysqlConnection | undefined;
  private healthBusy = false;
  /** Leader's API by node id, from markers (followers forward there). */
  private leaderApis = new Map<number, { api: string; term: Term }>();
  private api: ReturnType<typeof startApi> | undefined;

  private constructor(
    readonly cfg: ScaleConfig,
    private readonly configFile?: string,
  ) {
    this.nodeId = cfg.cluster.node_id;
    this.witness = cfg.cluster.witness;
    this.connect = connectOptions(cfg.database, configFile);
    this.snowflake = new Snowflake(this.nodeId);
    this.apiUrl = apiUrlOf(cfg);
    mkdirSync(cfg.node.data_dir, { recursive: true, mode: 0o750 });
    this.directory = new Directory(join(cfg.node.data_dir, "nodes.json"), {
      id: this.nodeId,
      api: this.apiUrl,
      witness: this.witness,
    });
  }

  static async start(opts: DaemonOptions): Promise<ScaleDaemon> {
    const d = new ScaleDaemon(opts.config, opts.configFile);
    try {
      await d.init(opts);
    } catch (err) {
      await d.stop();
      throw err;
    }
    return d;
  }

  /** Waits for MariaDB (it may still be starting), saying why it cannot connect: at once, then every ~10 s. */
  private async waitForDatabase(where: string): Promise<void> {
    const timeoutMs = DATABASE_WAIT_MS;
    const started = Date.now();
    const check = this.configFile
      ? unreachableDbHint(this.configFile)
      : "is MariaDB running? check [database] host/port/socket in the config";
    let loggedAt: number | undefined;
    await waitUntil(
      async () => {
        try {
          return await withConnection(this.connect, async (c) => (this.mariadbVersion = c.serverVersion) || true);
        } catch (err) {
          if (loggedAt === undefined || Date.now() - loggedAt >= DATABASE_LOG_EVERY_MS) {
            loggedAt = Date.now();
            const left = Math.max(0, Math.round((timeoutMs - (loggedAt - started)) / 1000));
            log.warn(`node ${this.nodeId}: ${errnoReason(err)}; ${check} (retrying, giving up in ${left} s)`);
          }
          throw err;
        }
      },
      { timeoutMs, intervalMs: 500, what: `${where} to accept connections (${check})` },
    );
  }

  private async init(opts: DaemonOptions): Promise<void> {
    const cfg = this.cfg;
    const where = describeDb(cfg.database);
    if (this.witness) {
      this.dbUp = false; // there is none: [database] is ignored
    } else {
      log.info(`node ${this.nodeId}: waiting for ${where}`);
      await this.waitForDatabase(where);
      await requireReplicationSettings(this.connect, where);
    }

    this.wal = await Wal.open({
      dir: cfg.wal.dir || join(cfg.node.data_dir, "wal"),
      fsync: cfg.wal.fsync,
      segmentBytes: cfg.wal.segment_size_mb * 1024 * 1024,
      compression: cfg.wal.compression,
      retention: { maxAgeHours: cfg.wal.retention_hours, maxBytes: cfg.wal.retention_mb * 1024 * 1024 },
      // Never drop what this node has not applied yet.
      protectFromLsn: () => (this.node ? this.node.applied() + 1 : 1),
    });
    this.store = new WalLogStore(this.wal);
    this.store.onTruncate = () => this.fsm?.invalidateOrigin();
    const stable = new FileStableStore(join(cfg.node.data_dir, "cluster-state.json"));
    let fsm: FSM;
    if (this.witness) {
      this.witnessFsm = new WitnessFsm(this.store, join(cfg.node.data_dir, "witness-applied.json"), (m) =>
        this.onMarker(m),
      );
      fsm = this.witnessFsm;
    } else {
      this.fsm = await ScaleFsm.open({
        connect: this.connect,
        nodeId: this.nodeId,
        store: this.store,
        baselineFile: join(cfg.node.data_dir, "origin.json"),
        onMarker: (m) => this.onMarker(m),
        onDiverged: (msg) => this.markDiverged(msg),
      });
      fsm = this.fsm;
    }
    const origin = this.witness ? undefined : await this.fsm.originCheck();
    const clusterCfg = { ...cfg.cluster, peers: [...cfg.cluster.peers, ...(opts.join ? [opts.join] : [])] };
    this.running = await startCluster(
      clusterCfg,
      { logStore: this.store, stableStore: stable, fsm },
      { bootstrap: opts.bootstrap },
    );
    this.node = this.running.node;
    if (this.witness) {
      // A witness leads only to bring a database node up to date: it never captures, so there is
      // nothing to start on leading and nothing to drain before handing over.
      this.node.events.prepareHandover = async () => {};
    } else {
      this.node.events.onRoleChange = (role, term) => this.leadership.onRoleChange(role, term);
      // The core hands leadership to a lower ID (or where an operator asked) only after this drain.
      this.node.events.prepareHandover = (target) => this.leadership.drainForHandover(target);
    }
    if (origin?.message && origin.ref.foreignAfter)
      this.markDiverged(`${origin.message}, and the log holds other nodes' transactions after them: it diverged`);
    else if (origin?.message)
      log.warn(`${origin.message}; they are captured if this node leads next, otherwise it will need a migration`);

    this.writes = new Writes(cfg, this.connect, this);

    this.api = startApi(this);
    if (!this.witness) {
      this.timers.push(setInterval(() => void this.healthCheck(), cfg.database.health_interval_ms));
      if (cfg.replication.auto_migrate) this.timers.push(setInterval(() => void this.migration.autoMigrate(), 1000));
    }
    this.timers.push(setInterval(() => void this.registerWithLeader(), 2000));
    void this.registerWithLeader();
    this.timers.push(setInterval(() => this.directory.save(), 5000));
    for (const t of this.timers) t.unref?.();
    log.info(
      this.witness
        ? `node ${this.nodeId}: ready as a ${WITNESS_ROLE} — cluster ${this.running.address}, API ${this.apiUrl}`
        : `node ${this.nodeId}: ready — cluster ${this.running.address}, API ${this.apiUrl}, ${where} (server_id ${this.fsm.serverId}), ack=${cfg.replication.ack}`,
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Markers, divergence, where the APIs are

  private onMarker(m: LeaderMarker): void {
    this.leaderApis.set(m.node, { api: m.api, term: m.term });
    this.directory.set(m.node, m.api);
    this.directory.save();
    if (m.node !== this.nodeId) void this.registerWithLeader(); // tell the new leader where our API is
    if (!this.witness && m.node !== this.nodeId && m.serverId === this.fsm.serverId) {
      log.error(
        `node ${m.node}'s MariaDB has the same server_id (${m.serverId}) as ours: give every node's MariaDB its own --server-id`,
      );
    }
  }

  markDiverged(message: string): void {
    if (this.diverged === null)
      log.error(`node ${this.nodeId}: ${message}. Run: wolf ctl scale migrate --from <healthy node>`);
    this.diverged = message;
    // Its WAL is sound, only its MariaDB holds what the cluster lacks: it keeps storing entries, so
    // the others can commit (and serve its dump) even when most nodes diverged at once.
    this.node?.markNeedsMigration(message, true);
  }

  /** The leader's API URL, if known. */
  leaderApi(): string | undefined {
    const id = this.node.leader();
    if (id === null) return undefined;
    return this.directory.get(id) ?? this.leaderApis.get(id)?.api;
  }

  // ---------------------------------------------------------------------------------------------
  // Health, registration

  private async healthCheck(): Promise<void> {
    if (this.healthBusy || this.stopped) return;
    this.healthBusy = true;
    const timeout = Math.max(1000, this.cfg.database.health_interval_ms * 2);
    try {
      this.healthConn ??= await MysqlConnection.connect({ ...this.connect, connectTimeoutMs: timeout });
      const conn = this.healthConn;
      await Promise.race([
        conn.query("SELECT 1"),
        new Promise((_, reject) =>
          setTimeout(() => reject(new WolfError("network", `no answer within ${timeout} ms`)), timeout).unref?.(),
        ),
      ]);
      this.setDbUp(true, null);
    } catch (err) {
      this.healthConn?.destroy();
      this.healthConn = undefined;
      this.setDbUp(false, (err as Error).message);
    } finally {
      this.healthBusy = false;
    }
  }

  private setDbUp(up: boolean, error: string | null): void {
    this.dbError = error;
    if (up === this.dbUp) return;
    this.dbUp = up;
    this.node.setEligible(up, "database down");
    if (up) {
      log.info(`node ${this.nodeId}: MariaDB is back`);
      // An apply that failed because the server went away (e.g. a connection reset outside the
      // apply's own retry loop) is tried again now; a divergence is not retried (it needs a migration).
      if (this.diverged === null && this.node.status().applyError !== null) this.node.retryApply();
      return;
    }
    log.error(`node ${this.nodeId}: MariaDB is down (${error}); this node will not lead until it is back`);
    this.leadership.databaseDown(error);
  }

  /**
   * Tells the leader (or, if its API is not known yet, any node we know) where our API is, and
   * learns every node's API from the answer.
   */
  async registerWithLeader(): Promise<void> {
    if (this.stopped || this.node.getRole() === "leader") return;
    const others = this.directory.all().filter((e) => e.id !== this.nodeId);
    const api = this.leaderApi() ?? others[this.registerRound++ % Math.max(1, others.length)]?.api;
    if (!api || api === this.apiUrl) return;
    try {
      const res = await new DaemonClient({ base: api, token: this.cfg.api.admin_token }).send(
        "POST",
        "/cluster/register",
        { body: { id: this.nodeId, api: this.apiUrl, ...(this.witness ? { witness: true } : {}) }, timeoutMs: 2000 },
      );
      if (res.ok) {
        this.directory.merge(((await res.json()) as { nodes: [] }).nodes);
        this.directory.save();
      }
    } catch {
      // the leader is changing or unreachable; next round
    }
  }
  private registerRound = 0;

  // ---------------------------------------------------------------------------------------------
  // ApiBackend

  /** This node's cluster address (a migrated node starts from the voters' addresses). */
  get address(): string {
    return this.running.address;
  }

  clearDiverged(): void {
    this.diverged = null;
  }

  leaderId(): number | null {
    return this.node.leader();
  }

  snapshot(): NodeSnapshot {
    const capture = this.leadership.capture;
    const fsm = this.witnessFsm;
    return {
      witness: this.witness,
      cluster: this.node.status(),
      held: this.node.heldBack(),
      leaderApi: this.leaderApi() ?? null,
      api: this.apiUrl,
      address: this.running.address,
      diverged: this.diverged,
      writable: this.leadership.ready,
      ack: this.cfg.replication.ack,
      mode: this.cfg.replication.mode,
      database: fsm
        ? { up: false, error: null, applyWaiting: null, version: "", serverId: 0 }
        : {
            up: this.dbUp,
            error: this.dbError,
            applyWaiting: this.fsm.dbError,
            version: this.mariadbVersion,
            serverId: this.fsm.serverId,
          },
      capture: capture ? capture.stats : null,
      apply: fsm ? { ...fsm.stats, lazy: false } : { ...this.fsm.stats, lazy: this.fsm.isLazy },
      writes: { ...this.writes.counters },
      wal: this.wal.stats(),
      apis: new Map(this.directory.all().map((e) => [e.id, e.api])),
      witnesses: new Set(
        this.directory
          .all()
          .filter((e) => e.witness === true)
          .map((e) => e.id),
      ),
      uptimeMs: Date.now() - this.startedAt,
    };
  }

  write(stmt: Statement, opts: WriteOptions = {}): Promise<WriteOutcome> {
    if (this.witness) return Promise.reject(this.refuse("writes"));
    return this.writes.write(stmt, opts);
  }

  read(sql: string, params: unknown[], database?: string): Promise<unknown> {
    if (this.witness) return Promise.reject(this.refuse("reads"));
    return this.writes.read(sql, params, database);
  }

  /** A witness's answer to what only a database node serves. */
  private refuse(what: string): WolfError {
    return witnessRefusal(this.nodeId, what, { id: this.node.leader(), api: this.leaderApi() });
  }

  countForwarded(): void {
    this.writes.counters.forwarded++;
  }

  registerNode(id: number, api: string, witness = false): void {
    this.directory.set(id, api, Date.now(), witness);
    this.directory.save();
  }

  knownNodes(): DirectoryEntry[] {
    return this.directory.all();
  }

  promote(to: number | undefined, clear: boolean): Promise<string> {
    if (this.witness && !clear && (to === undefined || to === this.nodeId))
      return Promise.reject(this.refuse("as leader (promote a database node instead)"));
    if (!clear && to !== undefined && this.directory.all().some((e) => e.id === to && e.witness === true))
      return Promise.reject(
        new WolfError("state", `node ${to} is a witness: it never leads (promote a database node)`),
      );
    return this.leadership.promote(to, clear);
  }

  demote(to: number | undefined): Promise<string> {
    return this.leadership.demote(to);
  }

  handOver(to: number | undefined, holdMs: number): Promise<string> {
    return this.leadership.handOver(to, holdMs);
  }

  /** Operator: clear an apply error (after fixing its cause) and apply again. */
  reset(): string {
    if (this.node.retryApply()) return "apply error cleared; applying again";
    return "nothing to reset (no apply error)";
  }

  dump(after = 0): Promise<Response> {
    if (this.witness) return Promise.reject(this.refuse("dumps (migrate from a database node)"));
    return this.migration.dump(after);
  }

  migrateFrom(from: string): Promise<string> {
    if (this.witness) return Promise.reject(this.refuse("migrations (it has no data to replace)"));
    return this.migration.migrateFrom(from);
  }

  // ---------------------------------------------------------------------------------------------

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.leadership.ready = false;
    for (const t of this.timers) clearInterval(t);
    this.api?.stop(true);
    await this.leadership.stop();
    this.running?.stop();
    this.fsm?.close();
    this.witnessFsm?.close();
    this.healthConn?.destroy();
    await this.writes?.close();
    this.directory.save();
    await this.wal?.close().catch(() => {});
  }
}

/** `wolf scale start`: runs the node until SIGTERM/SIGINT. */
export async function runDaemon(opts: DaemonOptions): Promise<number> {
  const d = await ScaleDaemon.start(opts);
  return await new Promise<number>((resolve) => {
    const finish = (sig: string) => {
      log.info(`node ${d.nodeId}: ${sig}; stopping`);
      void d.stop().then(() => resolve(0));
    };
    process.once("SIGTERM", () => finish("SIGTERM"));
    process.once("SIGINT", () => finish("SIGINT"));
  });
}
