/**
 * `wolf scale start`: one node of a wolf scale cluster.
 *
 *   cluster node (lib/cluster) ── log store: the WAL ── FSM: ScaleFsm (apply on the local MariaDB)
 *   leader: captures the local MariaDB's binlog into the log (LeaderCapture), checks its MariaDB
 *           and steps down when it is down; writes through the HTTP API are answered once the
 *           transaction's entry reached `replication.ack`.
 *   follower: applies entries in order; forwards API writes to the leader.
 *
 * Becoming leader: wait until every entry before this term is applied, make sure this MariaDB has
 * nothing the cluster lacks (origin.ts), append a marker (API address, own binlog state), then
 * capture from the own binlog position. Losing leadership: stop capture first, then apply again.
 * Handing leadership over (the core's handback to the lowest ID, or an operator's handover): the
 * core first asks us to drain (drainForHandover: no new writes, capture everything committed in
 * our MariaDB), then stops appends and lets the target take over.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import mysql from "mysql2/promise";
import type { ClusterNode } from "../cluster/node.ts";
import { termAt } from "../cluster/replication.ts";
import { type RunningCluster, startCluster } from "../cluster/start.ts";
import { FileStableStore } from "../cluster/stable-store.ts";
import type { AckLevel, ClusterMembers, Lsn, Role, Term } from "../cluster/types.ts";
import { NotLeaderError } from "../cluster/types.ts";
import { errnoReason, UsageError, WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { waitUntil } from "../common/wait.ts";
import { Wal } from "../wal/wal.ts";
import { Snowflake } from "./api/snowflake.ts";
import type { Statement } from "./api/statements.ts";
import type { ScaleConfig } from "./config.ts";
import { connectOptions, describeDb, requireReplicationSettings, unreachableDbHint, withConnection } from "./db.ts";
import { Directory } from "./directory.ts";
import { ScaleFsm } from "./fsm.ts";
import { LeaderCapture } from "./leader-capture.ts";
import { encodeMarker, type LeaderMarker } from "./marker.ts";
import { type BinlogPosition, type DumpMeta, dumpResponse, loadDump } from "./migrate.ts";
import { MysqlConnection, type ConnectOptions } from "./mysql/connection.ts";
import { formatOwn } from "./origin.ts";
import { WalLogStore } from "./wal-logstore.ts";
import { apiUrlOf } from "./addresses.ts";
import { startApi } from "./api/server.ts";

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

export interface WriteOptions {
  database?: string;
  /** Overrides replication.ack for this write (header X-Wolf-Ack). */
  ack?: AckLevel;
  /** Multi-statement text (no params) is allowed for /sql. */
  multi?: boolean;
}

export interface WriteOutcome {
  result: unknown;
  gtid: string | null;
  lsn: Lsn | null;
  ack: string;
  ms: number;
}

interface Counters {
  writes: number;
  writeErrors: number;
  forwarded: number;
  ackTimeouts: number;
}

export class ScaleDaemon {
  readonly nodeId: number;
  readonly apiUrl: string;
  readonly connect: ConnectOptions;
  readonly snowflake: Snowflake;
  readonly directory: Directory;
  readonly counters: Counters = { writes: 0, writeErrors: 0, forwarded: 0, ackTimeouts: 0 };
  readonly startedAt = Date.now();
  node!: ClusterNode;
  running!: RunningCluster;
  fsm!: ScaleFsm;
  wal!: Wal;
  store!: WalLogStore;
  pool!: mysql.Pool;
  capture: LeaderCapture | undefined;
  /** Leader and capturing: writes are accepted. */
  leaderReady = false;
  dbUp = true;
  dbError: string | null = null;
  /** Why this node needs a migration, when it does. */
  diverged: string | null = null;
  mariadbVersion = "";
  private leaderGen = 0;
  private activeGen = -1;
  private inflightWrites = 0;
  private writesBlocked = false;
  private timers: Array<ReturnType<typeof setInterval>> = [];
  private healthConn: MysqlConnection | undefined;
  private healthBusy = false;
  private stopped = false;
  /** Leader's API by node id, from markers (followers forward there). */
  private leaderApis = new Map<number, { api: string; term: Term }>();
  private api: ReturnType<typeof startApi> | undefined;

  private constructor(
    readonly cfg: ScaleConfig,
    private readonly configFile?: string,
  ) {
    this.nodeId = cfg.cluster.node_id;
    this.connect = connectOptions(cfg.database, configFile);
    this.snowflake = new Snowflake(this.nodeId);
    this.apiUrl = apiUrlOf(cfg);
    mkdirSync(cfg.node.data_dir, { recursive: true, mode: 0o750 });
    this.directory = new Directory(join(cfg.node.data_dir, "nodes.json"), { id: this.nodeId, api: this.apiUrl });
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
    log.info(`node ${this.nodeId}: waiting for ${where}`);
    await this.waitForDatabase(where);
    await requireReplicationSettings(this.connect, where);

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
    this.fsm = await ScaleFsm.open({
      connect: this.connect,
      nodeId: this.nodeId,
      store: this.store,
      baselineFile: join(cfg.node.data_dir, "origin.json"),
      onMarker: (m) => this.onMarker(m),
      onDiverged: (msg) => this.markDiverged(msg),
    });
    const origin = await this.fsm.originCheck();
    const clusterCfg = { ...cfg.cluster, peers: [...cfg.cluster.peers, ...(opts.join ? [opts.join] : [])] };
    this.running = await startCluster(
      clusterCfg,
      { logStore: this.store, stableStore: stable, fsm: this.fsm },
      { bootstrap: opts.bootstrap },
    );
    this.node = this.running.node;
    this.node.events.onRoleChange = (role, term) => this.onRoleChange(role, term);
    // The core hands leadership to a lower ID (or where an operator asked) only after this drain.
    this.node.events.prepareHandover = (target) => this.drainForHandover(target);
    if (origin.message && origin.ref.foreignAfter)
      this.markDiverged(`${origin.message}, and the log holds other nodes' transactions after them: it diverged`);
    else if (origin.message)
      log.warn(`${origin.message}; they are captured if this node leads next, otherwise it will need a migration`);

    this.pool = this.makePool();

    this.api = startApi(this);
    this.timers.push(setInterval(() => void this.healthCheck(), cfg.database.health_interval_ms));
    this.timers.push(setInterval(() => void this.register(), 2000));
    if (cfg.replication.auto_migrate) this.timers.push(setInterval(() => void this.autoMigrate(), 1000));
    void this.register();
    this.timers.push(setInterval(() => this.directory.save(), 5000));
    for (const t of this.timers) t.unref?.();
    log.info(
      `node ${this.nodeId}: ready — cluster ${this.running.address}, API ${this.apiUrl}, ${where} (server_id ${this.fsm.serverId}), ack=${cfg.replication.ack}`,
    );
  }

  private makePool(): mysql.Pool {
    return mysql.createPool({
      ...(this.connect.socketPath
        ? { socketPath: this.connect.socketPath }
        : { host: this.connect.host, port: this.connect.port }),
      user: this.connect.user,
      password: this.connect.password,
      multipleStatements: true,
      dateStrings: true,
      supportBigNumbers: true,
      bigNumberStrings: true,
      connectionLimit: this.cfg.database.pool_size,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Leadership

  private onRoleChange(role: Role, term: Term): void {
    const gen = ++this.leaderGen;
    if (role === "leader") void this.activate(gen, term);
    else if (this.activeGen >= 0 || this.capture) void this.deactivate();
  }

  private isLeaderIn(gen: number): boolean {
    return gen === this.leaderGen && this.node.getRole() === "leader" && !this.stopped;
  }

  private async activate(gen: number, term: Term): Promise<void> {
    const t0 = Date.now();
    try {
      // 1. Everything before this term (and our own noop) applied here first.
      const outcome = await waitUntil(
        () =>
          !this.isLeaderIn(gen)
            ? "lost"
            : this.node.applied() >= this.node.lastLsn() && !this.fsm.busy
              ? "applied"
              : undefined,
        { timeoutMs: 120_000, intervalMs: 10, what: "the new leader to apply every entry it holds" },
      );
      if (outcome === "lost") return;
      if (!this.dbUp) return this.node.stepDown(`its MariaDB is down: ${this.dbError}`);
      // 2. Our MariaDB must hold nothing the cluster lacks, unless we can still capture it now.
      const origin = await this.fsm.originCheck();
      if (!this.isLeaderIn(gen)) return;
      if (origin.message && origin.ref.foreignAfter) return this.markDiverged(`${origin.message}: it diverged`);
      const pos = await withConnection(
        this.connect,
        async (c) => (await c.queryObjects("SELECT @@gtid_binlog_pos AS p"))[0]!.p ?? "",
      );
      let resume = origin.message ? origin.ref.pos : pos;
      const own = formatOwn(origin.message ? origin.ref.own : this.fsm.actualOwn);
      if (this.cfg.replication.mode === "binlog" && this.cfg.replication.binlog_file && !this.logHasData()) {
        const f = this.cfg.replication.binlog_file.replace(/[^A-Za-z0-9._-]/g, "");
        resume = await withConnection(
          this.connect,
          async (c) =>
            (await c.queryObjects(`SELECT BINLOG_GTID_POS('${f}', ${this.cfg.replication.binlog_position}) AS p`))[0]!
              .p ?? "",
        );
        log.info(
          `binlog mode: first capture starts at ${this.cfg.replication.binlog_file}:${this.cfg.replication.binlog_position} (GTID ${resume || "beginning"})`,
        );
      }
      if (!this.isLeaderIn(gen)) return;
      if (origin.message)
        log.warn(`${origin.message}; capturing them now (this node leads again and nobody else wrote)`);
      // 3. Marker, then capture.
      const marker: LeaderMarker = {
        v: 1,
        node: this.nodeId,
        term,
        serverId: this.fsm.serverId,
        api: this.apiUrl,
        pos: resume,
        own,
        at: Date.now(),
      };
      const markerEntry = this.node.append(encodeMarker(marker));
      this.fsm.enterLazy();
      const capture = new LeaderCapture(
        this.node,
        {
          connect: this.connect,
          serverId: this.cfg.replication.capture_server_id || 1_000_000 + this.nodeId,
          resumeFrom: resume,
          heartbeatMs: 1000,
        },
        undefined,
      );
      capture.startAt(resume, this.fsm.serverId, markerEntry);
      capture.onFailed = (err) => {
        if (!this.isLeaderIn(gen)) return;
        this.node.setEligible(false, "capture failed");
        setTimeout(() => this.node.setEligible(true, "capture failed"), 10_000).unref?.();
        this.node.stepDown(`binlog capture failed: ${err.message}`);
      };
      this.capture = capture;
      this.activeGen = gen;
      capture.start();
      if (!this.isLeaderIn(gen)) return void this.deactivate();
      this.leaderReady = true;
      log.info(
        `node ${this.nodeId}: leading term ${term}; capturing from GTID ${resume || "(binlog start)"} after ${Date.now() - t0} ms`,
      );
    } catch (err) {
      log.error(`node ${this.nodeId}: could not start leading: ${(err as Error).message}`);
      if (this.isLeaderIn(gen)) this.node.stepDown((err as Error).message);
    }
  }

  private async deactivate(): Promise<void> {
    this.leaderReady = false;
    this.activeGen = -1;
    const capture = this.capture;
    this.capture = undefined;
    await capture?.stop();
    this.fsm.leaveLazy();
    // Sessions remember their last GTID; start the next leadership with fresh ones.
    const old = this.pool;
    this.pool = this.makePool();
    void old.end().catch(() => {});
  }

  private logHasData(): boolean {
    for (let lsn = this.store.lastLsn(); lsn > this.store.base().lsn; lsn--)
      if (this.store.get(lsn)?.kind === "data") return true;
    return this.store.base().lsn > 0;
  }

  private onMarker(m: LeaderMarker): void {
    this.leaderApis.set(m.node, { api: m.api, term: m.term });
    this.directory.set(m.node, m.api);
    this.directory.save();
    if (m.node !== this.nodeId) void this.register(); // tell the new leader where our API is
    if (m.node !== this.nodeId && m.serverId === this.fsm.serverId) {
      log.error(
        `node ${m.node}'s MariaDB has the same server_id (${m.serverId}) as ours: give every node's MariaDB its own --server-id`,
      );
    }
  }

  private markDiverged(message: string): void {
    if (this.diverged === null)
      log.error(`node ${this.nodeId}: ${message}. Run: wolf ctl scale migrate --from <healthy node>`);
    this.diverged = message;
    this.node?.markNeedsMigration(message);
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
      return;
    }
    log.error(`node ${this.nodeId}: MariaDB is down (${error}); this node will not lead until it is back`);
    if (this.node.getRole() === "leader") {
      this.leaderReady = false;
      this.node.stepDown(`its MariaDB is down: ${error}`);
    }
  }

  /**
   * Tells the leader (or, if its API is not known yet, any node we know) where our API is, and
   * learns every node's API from the answer.
   */
  private async register(): Promise<void> {
    if (this.stopped || this.node.getRole() === "leader") return;
    const others = this.directory.all().filter((e) => e.id !== this.nodeId);
    const api = this.leaderApi() ?? others[this.registerRound++ % Math.max(1, others.length)]?.api;
    if (!api || api === this.apiUrl) return;
    try {
      const res = await fetch(`${api}/cluster/register`, {
        method: "POST",
        headers: { authorization: `Bearer ${this.cfg.api.admin_token}`, "content-type": "application/json" },
        body: JSON.stringify({ id: this.nodeId, api: this.apiUrl }),
        signal: AbortSignal.timeout(2000),
      });
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
  // Writes (leader)

  /** Waits (briefly) for this node to be a capturing leader; throws NotLeaderError otherwise. */
  async awaitLeaderReady(timeoutMs: number): Promise<void> {
    const ok = await waitUntil(
      () => (this.leaderReady && !this.writesBlocked ? true : this.node.getRole() === "leader" ? undefined : "no"),
      { timeoutMs, intervalMs: 10, what: "this node to start capturing as leader" },
    ).catch(() => "no" as const);
    if (ok !== true) throw new NotLeaderError(`node ${this.nodeId} is not the leader`, this.node.leader());
  }

  /** Runs a write on the leader's MariaDB and waits until its entry reached the ack level. */
  async write(stmt: Statement, opts: WriteOptions = {}): Promise<WriteOutcome> {
    const t0 = performance.now();
    const ackTimeout = this.cfg.replication.ack_timeout_ms;
    await this.awaitLeaderReady(Math.min(ackTimeout, 5000));
    const capture = this.capture!;
    this.inflightWrites++;
    let result: unknown;
    let gtid = "";
    try {
      const conn = await this.pool.getConnection();
      let reusable = !opts.database;
      try {
        if (opts.database) await conn.query(`USE \`${opts.database.replace(/`/g, "``")}\``);
        if (stmt.params.length > 0) [result] = await conn.execute(stmt.sql, stmt.params);
        else [result] = await conn.query(stmt.sql);
        const [rows] = await conn.query("SELECT @@last_gtid AS g, @@in_transaction AS t");
        const st = (rows as Array<{ g: string; t: number | string }>)[0]!;
        gtid = st.g ?? "";
        if (Number(st.t) === 1) {
          await conn.query("ROLLBACK");
          throw new UsageError(
            "the statements left a transaction open; it was rolled back (end it with COMMIT in the same request)",
          );
        }
      } catch (err) {
        reusable = false;
        throw err;
      } finally {
        if (reusable) conn.release();
        else conn.destroy();
      }
    } catch (err) {
      this.counters.writeErrors++;
      throw err;
    } finally {
      this.inflightWrites--;
    }
    this.counters.writes++;
    const ack = opts.ack ?? this.cfg.replication.ack;
    if (!gtid) return { result, gtid: null, lsn: null, ack, ms: performance.now() - t0 };
    try {
      const entry = await capture.entryOf(gtid, ackTimeout);
      const left = Math.max(1, ackTimeout - (performance.now() - t0));
      await this.node.waitFor(entry, ack, left);
      return { result, gtid, lsn: entry.lsn, ack, ms: performance.now() - t0 };
    } catch (err) {
      this.counters.ackTimeouts++;
      throw new WolfError(
        "state",
        `committed on the leader as ${gtid} but not acknowledged (ack=${ack}): ${(err as Error).message}`,
        {
          hint: "the outcome is unknown: check for the row before retrying a non-idempotent write",
        },
      );
    }
  }

  /** A read on this node's MariaDB (local, may lag the leader). */
  async read(sql: string, params: unknown[], database?: string): Promise<unknown> {
    const conn = await this.pool.getConnection();
    try {
      if (database) await conn.query(`USE \`${database.replace(/`/g, "``")}\``);
      await conn.query("SET SESSION TRANSACTION READ ONLY");
      await conn.query("START TRANSACTION READ ONLY");
      try {
        const [rows] = params.length ? await conn.execute(sql, params as never[]) : await conn.query(sql);
        return rows;
      } finally {
        await conn.query("ROLLBACK").catch(() => {});
      }
    } finally {
      conn.destroy();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Admin

  /** Make this node the leader (the current leader hands over once this node is caught up). */
  async promote(): Promise<string> {
    this.node.setEligible(true, "demoted");
    if (this.node.getRole() === "leader") return `node ${this.nodeId} already leads`;
    const api = this.leaderApi();
    if (!api) throw new WolfError("state", "no leader right now; retry shortly");
    const res = await fetch(`${api}/admin/handover`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.cfg.api.admin_token}`, "content-type": "application/json" },
      body: JSON.stringify({ to: this.nodeId }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = (await res.json()) as { ok: boolean; error?: string };
    if (!body.ok) throw new WolfError("state", `the leader refused the handover: ${body.error}`);
    await waitUntil(() => this.node.getRole() === "leader", {
      timeoutMs: 10_000,
      what: `node ${this.nodeId} to become leader`,
    });
    return `node ${this.nodeId} leads (term ${this.node.currentTerm()})`;
  }

  /**
   * Leader: hand leadership to `to` (default: the most caught-up follower). The cluster core drains
   * first (drainForHandover), so nothing committed in our MariaDB is left uncaptured. This node
   * stays out of the running for `holdMs` afterwards, so the automatic handback to the lowest ID
   * does not undo an operator's choice at once.
   */
  async handOver(to: number | undefined, holdMs: number): Promise<string> {
    if (this.node.getRole() !== "leader") throw new WolfError("state", `node ${this.nodeId} is not the leader`);
    this.node.setEligible(false, "demoted");
    let moved = false;
    try {
      const target = this.node.transferLeadership(to);
      const outcome = await waitUntil(
        () =>
          this.node.getRole() !== "leader"
            ? "moved"
            : this.node.status().handoverTo === target
              ? undefined
              : "abandoned",
        { timeoutMs: 60_000, intervalMs: 10, what: `the handover to node ${target}` },
      );
      if (outcome === "abandoned")
        throw new WolfError(
          "state",
          `the handover to node ${target} was abandoned (it did not catch up in time); node ${this.nodeId} keeps leading`,
        );
      moved = true;
      return `node ${this.nodeId} handed leadership to node ${target}`;
    } finally {
      if (moved && holdMs > 0) setTimeout(() => this.node.setEligible(true, "demoted"), holdMs).unref?.();
      else this.node.setEligible(true, "demoted");
    }
  }

  /**
   * events.prepareHandover: before leadership moves, every transaction committed in our MariaDB
   * must be in the log (otherwise it would be stranded here and this node would diverge). Blocks
   * new API writes, waits for the ones in progress, then for capture to reach the binlog's end.
   * The core refuses appends after this resolves and calls the returned function once the
   * handover is over (moved or abandoned).
   */
  private async drainForHandover(target: number): Promise<() => void> {
    const t0 = Date.now();
    this.writesBlocked = true;
    const resume = () => {
      this.writesBlocked = false;
    };
    try {
      // A leadership still starting (applying, origin check) finishes first: it appends a marker.
      await waitUntil(() => this.leaderReady || this.node.getRole() !== "leader" || this.stopped, {
        timeoutMs: 30_000,
        intervalMs: 5,
        what: "this leader to start capturing",
      });
      await waitUntil(() => this.inflightWrites === 0, {
        timeoutMs: 10_000,
        intervalMs: 2,
        what: "writes in progress to finish",
      });
      const capture = this.capture;
      if (capture && this.node.getRole() === "leader") {
        const pos = await withConnection(
          this.connect,
          async (c) => (await c.queryObjects("SELECT @@gtid_binlog_pos AS p"))[0]!.p ?? "",
        );
        await waitUntil(() => !pos || capture.stats.gtidState === pos || capture.failed !== undefined, {
          timeoutMs: 10_000,
          intervalMs: 2,
          what: "capture to reach the end of the binlog",
        });
        if (capture.failed) throw capture.failed;
      }
      log.info(`node ${this.nodeId}: drained for the handover to node ${target} in ${Date.now() - t0} ms`);
      return resume;
    } catch (err) {
      resume();
      throw err;
    }
  }

  /** Operator: clear an apply error (after fixing its cause) and apply again. */
  reset(): string {
    if (this.node.retryApply()) return "apply error cleared; applying again";
    return "nothing to reset (no apply error)";
  }

  // ---------------------------------------------------------------------------------------------
  // Migration

  /**
   * Source side: a consistent dump of this node, with the LSN it corresponds to. `after`: the
   * target's last LSN. A follower source first applies that far (as far as its own log goes): the
   * target may have acknowledged those entries, and a dump holding less would drop its copy of
   * them. (A leader's snapshot always covers them: they were captured before the request.)
   */
  async dump(after = 0): Promise<Response> {
    const s = this.node.status();
    if (this.diverged || s.state === "NeedsMigration")
      throw new WolfError("state", `node ${this.nodeId} needs a migration itself`);
    if (s.applyError) throw new WolfError("state", `node ${this.nodeId} stopped applying: ${s.applyError}`);
    if (s.role === "leader") return this.leaderDump();
    const need = Math.min(after, this.node.lastLsn());
    await waitUntil(() => this.node.applied() >= need, {
      timeoutMs: 30_000,
      intervalMs: 10,
      what: `node ${this.nodeId} to apply up to LSN ${need} (the target's last entry)`,
    }).catch(() => {
      throw new WolfError(
        "state",
        `node ${this.nodeId} has applied only up to LSN ${this.node.applied()}, behind the target (LSN ${need})`,
        {
          hint: "retry in a moment, or migrate from the leader or another follower",
        },
      );
    });
    const release = await this.fsm.pause();
    try {
      const lsn = await this.fsm.syncProgress();
      const term = termAt(this.store, lsn);
      if (term === undefined) throw new WolfError("state", `entry ${lsn} is no longer in this node's log`);
      return await dumpResponse(
        this.cfg.database,
        this.connect,
        { meta: { lsn, term, members: this.membersView(), node: this.nodeId } },
        release,
      );
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * The leader's dump. Its MariaDB runs ahead of the log (a transaction commits before capture
   * appends it; in binlog mode clients write to it directly, past anything wolf could block), so
   * an LSN read before the snapshot opens could miss a transaction the snapshot then holds. The
   * snapshot names its own position instead: Binlog_snapshot_file/position, which MariaDB keeps
   * consistent with the InnoDB snapshot (binlog order is commit order). The snapshot holds
   * exactly the binlog up to there; capture appends in binlog order, so that is exactly the log up
   * to the entry of the newest transaction within it, plus the entries without SQL that follow
   * (LeaderCapture.entryThrough). That entry must be committed before it is announced (a target
   * takes it as committed). Writes are not blocked.
   */
  private async leaderDump(): Promise<Response> {
    await waitUntil(() => (this.leaderReady && this.capture) || this.node.getRole() !== "leader" || this.stopped, {
      timeoutMs: 30_000,
      intervalMs: 10,
      what: "this leader to start capturing",
    });
    const capture = this.capture;
    if (!capture || this.node.getRole() !== "leader")
      throw new NotLeaderError(
        `node ${this.nodeId} stopped leading; take the dump from another node`,
        this.node.leader(),
      );
    const atSnapshot = async ({ file, pos }: BinlogPosition): Promise<DumpMeta> => {
      const f = file.replace(/[^A-Za-z0-9._-]/g, "");
      const gtid = await withConnection(
        this.connect,
        async (c) => (await c.queryObjects(`SELECT BINLOG_GTID_POS('${f}', ${Math.trunc(pos)}) AS p`))[0]?.p,
      );
      if (gtid === null || gtid === undefined)
        throw new WolfError("state", `binlog position ${file}:${pos} of the dump's snapshot is not in the binlog`);
      const entry = await capture.entryThrough(gtid, 30_000);
      // Committed, not "acknowledged by a majority of today's voters": while a voter is added, that
      // majority can need the very nodes being migrated (they refuse entries until loaded).
      await waitUntil(() => this.node.committed() >= entry.lsn, {
        timeoutMs: 30_000,
        intervalMs: 5,
        what: `entry ${entry.lsn} to commit`,
      });
      if (termAt(this.store, entry.lsn) !== entry.term)
        throw new NotLeaderError(
          `entry ${entry.lsn} was replaced (leadership changed); take the dump again`,
          this.node.leader(),
        );
      log.info(
        `node ${this.nodeId}: dump snapshot at ${file}:${pos} (GTID ${gtid || "none"}) holds the log up to LSN ${entry.lsn}`,
      );
      return { lsn: entry.lsn, term: entry.term, members: this.membersView(), node: this.nodeId, progressGtid: gtid };
    };
    return dumpResponse(this.cfg.database, this.connect, { atSnapshot }, () => {});
  }

  /** Voters with their cluster addresses (a migrated node starts from them). */
  private membersView(): ClusterMembers {
    const s = this.node.status();
    return {
      voters: s.voters.map((id) => ({
        id,
        addr: id === this.nodeId ? this.running.address : (s.peers.find((p) => p.id === id)?.addr ?? ""),
      })),
    };
  }

  private migrating = false;
  private autoMigrateAt = 0;
  private autoMigrateBackoffMs = 0;

  /** replication.auto_migrate: a node that needs a migration copies the leader's data by itself. */
  private async autoMigrate(): Promise<void> {
    if (this.stopped || this.migrating || Date.now() < this.autoMigrateAt) return;
    if (this.diverged === null && !this.node.needsMigration()) return;
    const leader = this.node.leader();
    if (leader === null || leader === this.nodeId) return;
    const why = this.diverged ?? "the leader no longer has the entries it needs, or they conflict";
    log.warn(
      `node ${this.nodeId}: auto_migrate: copying node ${leader}'s data (${why}); what only this node's MariaDB holds is discarded`,
    );
    try {
      await this.migrateFrom(String(leader));
      this.autoMigrateBackoffMs = 0;
    } catch (err) {
      this.autoMigrateBackoffMs = Math.min(60_000, Math.max(2000, this.autoMigrateBackoffMs * 2));
      this.autoMigrateAt = Date.now() + this.autoMigrateBackoffMs;
      log.error(
        `node ${this.nodeId}: auto_migrate from node ${leader} failed: ${(err as Error).message}; retrying in ${this.autoMigrateBackoffMs / 1000} s`,
      );
    }
  }

  /** Target side: replace this node's data with a healthy node's dump and resume from its LSN. */
  async migrateFrom(from: string): Promise<string> {
    if (this.node.getRole() === "leader")
      throw new WolfError("state", `node ${this.nodeId} leads; it cannot be migrated (demote it first)`);
    if (this.migrating) throw new WolfError("state", `node ${this.nodeId} is already being migrated`);
    this.migrating = true;
    try {
      return await this.migrateFromUnguarded(from);
    } finally {
      this.migrating = false;
    }
  }

  private async migrateFromUnguarded(from: string): Promise<string> {
    const isUrl = /^https?:\/\//.test(from);
    if (!isUrl && !this.directory.get(Number(from))) {
      // Just joined: the API addresses arrive with the next registration round; wait a little.
      await waitUntil(
        async () => {
          await this.register();
          return this.directory.get(Number(from)) !== undefined;
        },
        { timeoutMs: 5000, intervalMs: 250, what: `node ${from}'s API address` },
      ).catch(() => {});
    }
    const url = isUrl ? from.replace(/\/$/, "") : this.directory.get(Number(from));
    if (!url)
      throw new UsageError(
        `unknown node "${from}"`,
        `known nodes: ${this.directory
          .all()
          .map((e) => `${e.id} (${e.api})`)
          .join(", ")}; or give the source's API URL`,
      );
    if (url === this.apiUrl) throw new UsageError("a node cannot be migrated from itself");
    const after = this.node.lastLsn();
    this.node.setEligible(false, "migrating");
    this.node.markNeedsMigration("an operator is migrating it");
    const release = await this.fsm.pause();
    const t0 = Date.now();
    try {
      await waitUntil(() => !this.node.isApplying(), { timeoutMs: 60_000, what: "the entry being applied to finish" });
      const res = await fetch(`${url}/dump?after=${after}`, {
        headers: { authorization: `Bearer ${this.cfg.api.admin_token}` },
      });
      if (!res.ok || !res.body) {
        const text = await res.text().catch(() => "");
        throw new WolfError("network", `${url}/dump answered ${res.status}: ${text.slice(0, 500)}`);
      }
      const lsn = Number(res.headers.get("x-wolf-lsn"));
      const term = Number(res.headers.get("x-wolf-term"));
      const members = JSON.parse(res.headers.get("x-wolf-members") ?? "null") as ClusterMembers | null;
      if (!Number.isInteger(lsn) || !Number.isInteger(term))
        throw new WolfError("protocol", `${url}/dump sent no LSN/term headers`);
      const bytes = await loadDump(this.cfg.database, this.connect, res.body, lsn);
      this.node.migrated(lsn, term, members ?? undefined);
      await this.fsm.reload({ lsn, own: "", pos: "" });
      this.diverged = null;
      const msg = `node ${this.nodeId} migrated from ${url}: ${bytes} bytes loaded in ${Date.now() - t0} ms; resuming after LSN ${lsn}`;
      log.info(msg);
      return msg;
    } finally {
      release();
      this.node.setEligible(true, "migrating");
    }
  }

  // ---------------------------------------------------------------------------------------------

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.leaderReady = false;
    for (const t of this.timers) clearInterval(t);
    this.api?.stop(true);
    await this.capture?.stop().catch(() => {});
    this.running?.stop();
    this.fsm?.close();
    this.healthConn?.destroy();
    await this.pool?.end().catch(() => {});
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
