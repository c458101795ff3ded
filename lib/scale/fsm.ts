/**
 * wolf scale's state machine: every committed log entry, in LSN order, reaches the local MariaDB
 * exactly once.
 *
 *  - A transaction captured on another node is replayed by the Applier (BINLOG statements and the
 *    progress row in one transaction, sql_log_bin = 0).
 *  - A transaction captured from this node's own MariaDB is already there (its GTID is in our
 *    binlog): only progress moves. While this node leads and captures, that happens in memory
 *    ("lazy" mode) and the progress row is brought forward in one jump from time to time and when
 *    leadership ends — a restart re-checks own entries by GTID, so nothing depends on that jump.
 *  - Markers, noops and config entries carry no SQL: only progress moves.
 *  - MariaDB unreachable: the entry waits and is retried when the server is back (the node shows
 *    "database down"); any other failure stops applying with the error (never skipped).
 *  - Before a foreign transaction is applied on top of own transactions the cluster never
 *    received (origin.ts), the node is declared diverged instead (NeedsMigration).
 */
import type { FSM, LogEntry, LogStore, Lsn } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { sleep, waitUntil } from "../common/wait.ts";
import { Applier, ApplyError, PROGRESS_DB } from "./apply/applier.ts";
import { formatGtid } from "./binlog/events.ts";
import { positionOf } from "./binlog/gtid-set.ts";
import { type CapturedTxn, decodeTxn } from "./binlog/txn.ts";
import { decodeMarker, isMarker, type LeaderMarker } from "./marker.ts";
import { type ConnectOptions, MysqlConnection, ServerError } from "./mysql/connection.ts";
import {
  type Baseline,
  coverOf,
  extrasOf,
  formatOwn,
  type OriginCheck,
  type OwnRef,
  type OwnState,
  originMessage,
  ownFromBinlogState,
  readBaseline,
  scanOwnRef,
  writeBaseline,
} from "./origin.ts";

const log = logger("scale");

/** Server errors after which the same apply may simply be tried again. */
const TRANSIENT_ERRNOS = new Set([1040, 1053, 1152, 1158, 1159, 1160, 1161, 1205, 1213, 1317, 1927, 2006, 2013]);

function isTransientDbError(err: unknown): boolean {
  const e = err instanceof ApplyError && err.cause !== undefined ? err.cause : err;
  if (e instanceof ServerError) return TRANSIENT_ERRNOS.has(e.errno);
  if (e instanceof WolfError) return e.code === "network";
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" && /^E(CONNREFUSED|CONNRESET|PIPE|NOENT|TIMEDOUT|HOSTUNREACH)$/.test(code);
}

class DivergedError extends WolfError {
  constructor(message: string) {
    super("state", message, {
      hint: "copy a consistent dump from a healthy node: wolf ctl scale migrate --from <node>",
    });
    this.name = "DivergedError";
  }
}

export interface ScaleFsmOptions {
  connect: ConnectOptions;
  nodeId: number;
  store: LogStore;
  /** File keeping the origin baseline (origin.ts). */
  baselineFile: string;
  /** Called for every committed leader marker (followers learn the leader's API from it). */
  onMarker?: (m: LeaderMarker, lsn: Lsn) => void;
  /** Called once when this node is found diverged, before the apply fails. */
  onDiverged?: (message: string) => void;
  /** Pause between attempts while MariaDB is unreachable (ms). */
  retryMs?: number;
}

export interface FsmStats {
  applied: number;
  ownSkipped: number;
  retries: number;
  lastApplyMs: number;
}

export class ScaleFsm implements FSM {
  /** The local MariaDB's @@server_id (our own GTIDs carry it). */
  serverId = 0;
  private applier: Applier | undefined;
  private appliedLsnValue = 0;
  /** Progress as stored in MariaDB (lags appliedLsnValue in lazy mode). */
  private dbLsn = 0;
  private lazy = false;
  private lazyGtid = "";
  private lazyFlushedAt = 0;
  private closed = false;
  private inFlight = false;
  private pauses = 0;
  private gateWaiters: Array<() => void> = [];
  private actual: OwnState = new Map();
  /** This MariaDB's @@gtid_binlog_state as last read (all server ids: divergence compares it). */
  private actualState = "";
  private ref: OwnRef | undefined;
  private baseline: Baseline | undefined;
  private baselineAt = 0;
  /** Why applying is waiting right now (MariaDB unreachable), if it is. */
  dbError: string | null = null;
  readonly stats: FsmStats = { applied: 0, ownSkipped: 0, retries: 0, lastApplyMs: 0 };

  private constructor(private readonly opts: ScaleFsmOptions) {}

  /** Needs MariaDB up: reads the progress row and this server's identity. */
  static async open(opts: ScaleFsmOptions): Promise<ScaleFsm> {
    const fsm = new ScaleFsm(opts);
    fsm.applier = await Applier.open({ connect: opts.connect });
    fsm.dbLsn = fsm.appliedLsnValue = fsm.applier.applied.lsn;
    const conn = await MysqlConnection.connect(opts.connect);
    try {
      const row = (await conn.queryObjects("SELECT @@server_id AS id, @@gtid_binlog_state AS st"))[0]!;
      fsm.serverId = Number(row.id);
      fsm.noteBinlogState(row.st ?? "");
      fsm.baseline = readBaseline(opts.baselineFile);
      if (!fsm.baseline) {
        // First start of this node: what its binlog holds now is its starting point.
        fsm.baseline = {
          lsn: opts.store.lastLsn(),
          own: formatOwn(coverOf(fsm.actualState)),
          pos: positionOf(fsm.actualState),
        };
        writeBaseline(opts.baselineFile, fsm.baseline);
      }
    } finally {
      conn.close();
    }
    return fsm;
  }

  appliedLsn(): Lsn {
    return this.appliedLsnValue;
  }

  /** This MariaDB's own state as last read (origin.ts). */
  get actualOwn(): OwnState {
    return this.actual;
  }

  get isLazy(): boolean {
    return this.lazy;
  }

  get busy(): boolean {
    return this.inFlight;
  }

  async apply(entry: LogEntry): Promise<void> {
    this.inFlight = true;
    const t0 = performance.now();
    try {
      await this.gate();
      await this.applyEntry(entry);
      this.stats.applied++;
      this.stats.lastApplyMs = performance.now() - t0;
    } finally {
      this.inFlight = false;
    }
  }

  /**
   * Several committed entries (the cluster core passes what is ready): runs of consecutive foreign
   * row transactions are applied as one MariaDB transaction each (Applier.applyMany: one round
   * trip, one commit, progress moved with them); everything else one entry at a time as in apply().
   */
  async applyBatch(entries: LogEntry[]): Promise<void> {
    this.inFlight = true;
    const t0 = performance.now();
    try {
      await this.gate();
      for (let i = 0; i < entries.length; ) {
        const run = this.foreignRowRun(entries, i);
        if (run.length > 1) await this.applyRun(run);
        else await this.applyEntry(entries[i]!);
        i += Math.max(1, run.length);
        this.stats.applied += Math.max(1, run.length);
      }
      this.stats.lastApplyMs = performance.now() - t0;
    } finally {
      this.inFlight = false;
    }
  }

  /** Consecutive entries from `i` that are foreign row transactions with the same format description. */
  private foreignRowRun(entries: LogEntry[], i: number): LogEntry[] {
    const run: LogEntry[] = [];
    let fde: Uint8Array | undefined;
    for (let j = i; j < entries.length; j++) {
      const e = entries[j]!;
      if (e.kind !== "data" || isMarker(e.data)) break;
      const txn = decodeTxn(e.data);
      if (txn.gtid.serverId === this.serverId || !Applier.batchable(txn)) break;
      if (fde && Buffer.compare(fde, txn.formatDescription) !== 0) break;
      fde = txn.formatDescription;
      run.push(e);
    }
    return run;
  }

  private async applyRun(run: LogEntry[]): Promise<void> {
    if (this.lazy) this.leaveLazy();
    await this.withDb(run[0]!.lsn, run[run.length - 1]!.lsn, async (a, from) => {
      const todo = run.filter((e) => e.lsn >= from);
      await this.refuseIfDiverged(decodeTxn(todo[0]!.data));
      if (todo.length === 1) await a.apply(todo[0]!.lsn, todo[0]!.data);
      else await a.applyMany(todo);
    });
  }

  private async applyEntry(entry: LogEntry): Promise<void> {
    if (entry.kind !== "data" || isMarker(entry.data)) {
      if (entry.kind === "data") this.opts.onMarker?.(decodeMarker(entry.data), entry.lsn);
      if (this.lazy) return void (this.appliedLsnValue = entry.lsn);
      return this.withDb(entry.lsn, entry.lsn, (a) => a.skipEntry(entry.lsn));
    }
    const txn = decodeTxn(entry.data);
    const own = txn.gtid.serverId === this.serverId;
    if (this.lazy) {
      if (own) {
        this.appliedLsnValue = entry.lsn;
        this.lazyGtid = txn.gtidState;
        this.stats.ownSkipped++;
        if (Date.now() - this.lazyFlushedAt > 2000) await this.flushLazy();
        return;
      }
      this.leaveLazy();
    }
    await this.withDb(entry.lsn, entry.lsn, async (a) => {
      if (own && (await this.inOwnBinlog(txn))) {
        this.stats.ownSkipped++;
        return a.skipEntry(entry.lsn);
      }
      if (!own) await this.refuseIfDiverged(txn);
      await a.apply(entry.lsn, entry.data);
    });
  }

  /**
   * Runs the work for entries first..last against MariaDB, waiting out outages; exactly once via
   * the progress row: `work` gets the first LSN still to do (after a reconnect part of the range may
   * already be committed).
   */
  private async withDb(first: Lsn, last: Lsn, work: (a: Applier, from: Lsn) => Promise<void>): Promise<void> {
    const lsn = last;
    for (;;) {
      if (this.closed) throw new WolfError("state", "node is stopping");
      try {
        const a = await this.ensureApplier();
        const done = a.applied.lsn;
        if (lsn <= done) {
          // Committed before a reconnect (or a restart) — the progress row says so.
          this.appliedLsnValue = lsn;
          return;
        }
        if (first > done + 1) await this.jumpOwnGap(done, first - 1);
        await work(await this.ensureApplier(), Math.max(first, done + 1));
        this.appliedLsnValue = this.dbLsn = lsn;
        if (this.dbError !== null) log.info(`MariaDB is reachable again; applying resumed at LSN ${lsn}`);
        this.dbError = null;
        return;
      } catch (err) {
        if (err instanceof DivergedError || !isTransientDbError(err)) throw err;
        if (this.dbError === null)
          log.warn(`MariaDB unreachable while applying LSN ${lsn} (${(err as Error).message}); waiting for it`);
        this.dbError = (err as Error).message;
        this.stats.retries++;
        this.applier?.destroy();
        this.applier = undefined;
        await sleep(this.opts.retryMs ?? 500); // reconnect backoff, not synchronisation
      }
    }
  }

  private async ensureApplier(): Promise<Applier> {
    if (!this.applier) {
      this.applier = await Applier.open({ connect: this.opts.connect });
      this.dbLsn = this.applier.applied.lsn;
    }
    return this.applier;
  }

  /**
   * Entries from..to (exclusive..inclusive) were applied in memory only (lazy mode, or a restart
   * after it): they must all be own transactions or carry no SQL. Moves progress in one jump.
   */
  private async jumpOwnGap(from: Lsn, to: Lsn): Promise<void> {
    let gtid: string | undefined;
    for (let lsn = from + 1; lsn <= to; lsn++) {
      const e = this.opts.store.get(lsn);
      if (!e) throw new ApplyError(lsn, "?", "entry is missing from the log while moving progress forward");
      if (e.kind !== "data" || isMarker(e.data)) continue;
      const txn = decodeTxn(e.data);
      if (txn.gtid.serverId !== this.serverId || !(await this.inOwnBinlog(txn))) {
        throw new ApplyError(
          lsn,
          formatGtid(txn.gtid),
          `progress is at ${from} but entry ${lsn} was never applied here`,
        );
      }
      gtid = txn.gtidState;
    }
    await this.setProgress(from, to, gtid);
  }

  private async setProgress(from: Lsn, to: Lsn, gtid: string | undefined): Promise<void> {
    const conn = await MysqlConnection.connect(this.opts.connect);
    try {
      await conn.query("SET SESSION sql_log_bin = 0");
      const g = gtid === undefined ? "" : `, gtid = '${gtid.replace(/[^0-9,-]/g, "")}'`;
      const res = await conn.query(
        `UPDATE ${PROGRESS_DB}.applied SET lsn = ${to}${g}, applied_at = NOW(6) WHERE id = 1 AND lsn = ${from}`,
      );
      if (res.affectedRows !== 1)
        throw new ApplyError(to, "(none)", `the progress row is not at ${from} (another applier running?)`);
    } finally {
      conn.close();
    }
    this.applier?.close();
    this.applier = undefined;
    this.dbLsn = to;
  }

  /** Own transaction already in this MariaDB (its GTID is in our binlog)? */
  private async inOwnBinlog(txn: CapturedTxn): Promise<boolean> {
    const covered = () => (this.actual.get(txn.gtid.domainId) ?? -1n) >= txn.gtid.seqNo;
    if (covered()) return true;
    await this.refreshActual();
    return covered();
  }

  /**
   * Re-reads this MariaDB's own GTIDs over a connection kept for it (a new connection per check
   * cost milliseconds on the apply path); calls are serialized, a broken connection is replaced.
   */
  private refreshActual(): Promise<void> {
    const run = async () => {
      try {
        this.probe ??= await MysqlConnection.connect(this.opts.connect);
        const row = (await this.probe.queryObjects("SELECT @@gtid_binlog_state AS st"))[0]!;
        this.noteBinlogState(row.st ?? "");
      } catch (err) {
        this.probe?.destroy();
        this.probe = undefined;
        throw err;
      }
    };
    const p = this.probing.then(run, run);
    this.probing = p.catch(() => {});
    return p;
  }
  private probe: MysqlConnection | undefined;

  private noteBinlogState(state: string): void {
    this.actualState = state;
    this.actual = ownFromBinlogState(state, this.serverId);
  }
  private probing: Promise<void> = Promise.resolve();

  /** The log changed under our own entries (truncation, leadership): recompute the reference. */
  invalidateOrigin(): void {
    this.ref = undefined;
  }

  /**
   * Transactions in this MariaDB that the log does not have: against `binlogState` (a leader
   * starting capture passes the state its start position was read with), else a fresh read.
   */
  async originCheck(binlogState?: string): Promise<OriginCheck> {
    if (binlogState === undefined) await this.refreshActual();
    else this.noteBinlogState(binlogState);
    this.ref ??= scanOwnRef(this.opts.store, this.opts.nodeId, this.serverId, this.baseline);
    const extras = extrasOf(this.actualState, this.ref);
    return { extras, ref: this.ref, message: originMessage(extras) };
  }

  private async refuseIfDiverged(txn: CapturedTxn): Promise<void> {
    // The binlog is re-read every time (one query on a kept connection): a client may write into a
    // follower's MariaDB at any moment. The reference only after the log changed under our own entries.
    const { message } = await this.originCheck();
    if (message) {
      const msg = `${message}, while the cluster moved on without them (next: ${formatGtid(txn.gtid)}): it diverged and needs a migration`;
      this.opts.onDiverged?.(msg);
      throw new DivergedError(msg);
    }
    this.maybeAdvanceBaseline();
  }

  /** Keeps the baseline recent so the origin scan stays short (only when nothing is in doubt). */
  private maybeAdvanceBaseline(): void {
    if (Date.now() - this.baselineAt < 30_000 || this.lazy) return;
    if (this.opts.store.lastLsn() !== this.appliedLsnValue) return;
    this.baselineAt = Date.now();
    this.baseline = {
      lsn: this.appliedLsnValue,
      own: formatOwn(coverOf(this.actualState)),
      pos: positionOf(this.actualState),
    };
    writeBaseline(this.opts.baselineFile, this.baseline);
  }

  /** Leader, after applying everything before its term: own entries from now on move progress in memory. */
  enterLazy(): void {
    this.lazy = true;
  }

  /**
   * Leadership ended: apply normally again. The progress row catches up with what was applied in
   * memory at the next apply (or syncProgress), after checking each of those entries is ours.
   */
  leaveLazy(): void {
    this.lazy = false;
    this.ref = undefined;
  }

  /** Lazy mode: moves the progress row up to what was applied in memory (from the apply chain). */
  private async flushLazy(): Promise<void> {
    this.lazyFlushedAt = Date.now();
    const to = this.appliedLsnValue;
    const a = await this.ensureApplier();
    if (a.applied.lsn >= to) return;
    await this.setProgress(a.applied.lsn, to, this.lazyGtid || undefined);
  }

  /** Brings the progress row up to the applied LSN (paused, not leading): before a dump. */
  async syncProgress(): Promise<Lsn> {
    if (this.lazy)
      throw new WolfError(
        "internal",
        "syncProgress while leading (a leader's dump maps its snapshot to the LSN instead)",
      );
    const a = await this.ensureApplier();
    if (a.applied.lsn < this.appliedLsnValue) await this.jumpOwnGap(a.applied.lsn, this.appliedLsnValue);
    return this.appliedLsnValue;
  }

  /** Holds applying (after the entry in progress) until the returned function is called. */
  async pause(): Promise<() => void> {
    this.pauses++;
    await waitUntil(() => !this.inFlight, {
      timeoutMs: 600_000,
      intervalMs: 5,
      what: "the entry being applied to finish",
    });
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pauses--;
      if (this.pauses === 0) for (const w of this.gateWaiters.splice(0)) w();
    };
  }

  private gate(): Promise<void> {
    if (this.pauses === 0) return Promise.resolve();
    return new Promise((resolve) => this.gateWaiters.push(resolve));
  }

  /** After a migration loaded a dump: progress and the origin baseline come from the new data. */
  async reload(baseline: Baseline): Promise<void> {
    this.applier?.close();
    this.applier = undefined;
    const a = await this.ensureApplier();
    this.appliedLsnValue = this.dbLsn = a.applied.lsn;
    this.lazy = false;
    this.baseline = baseline;
    writeBaseline(this.opts.baselineFile, baseline);
    this.ref = undefined;
    await this.refreshActual();
  }

  close(): void {
    this.closed = true;
    this.applier?.close();
    this.applier = undefined;
    this.probe?.close();
    this.probe = undefined;
    for (const w of this.gateWaiters.splice(0)) w();
  }
}
