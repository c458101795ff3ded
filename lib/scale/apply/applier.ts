/**
 * Apply on a follower: replays captured transactions on the local MariaDB, in LSN order, each
 * exactly once.
 *
 * Row transactions are replayed with MariaDB's `BINLOG '<base64>'` statement (the leader's own
 * row events: no statement is re-executed, so NOW(), UUID(), RAND(), AUTO_INCREMENT, triggers and
 * procedures cannot diverge) inside one transaction that also moves the progress row
 * `wolfscale.applied` from lsn-1 to lsn: the transaction and its bookkeeping commit together or not
 * at all. DDL is not transactional in MariaDB, so it runs between two progress writes: "pending"
 * before, "applied" after; a restart that finds "pending" knows the statement may already have run
 * and accepts the errors that mean its effect is there. A failed apply stops and is reported with
 * its LSN and GTID; nothing is ever skipped.
 */
import { WolfError } from "../../common/errors.ts";
import { logger } from "../../common/log.ts";
import type { Wal } from "../../wal/wal.ts";
import { EventType, formatGtid, isRowsEvent, parseEventHeader, parseQuery, parseRowsHeader, parseFormatDescription, STMT_END_F } from "../binlog/events.ts";
import { type CapturedTxn, decodeTxn, TXN_STANDALONE } from "../binlog/txn.ts";
import { type ConnectOptions, MysqlConnection, ServerError } from "../mysql/connection.ts";
import { ALREADY_APPLIED_ERRNOS, type Collations, quoteIdent, quoteString, RESET_SESSION, sessionStatements } from "./session.ts";

const log = logger("scale:apply");

export const PROGRESS_DB = "wolfscale";
const PROGRESS = `${PROGRESS_DB}.applied`;
/** Largest BINLOG statement we build (base64 text), well under the default max_allowed_packet. */
const MAX_BINLOG_STATEMENT = 8 * 1024 * 1024;

export class ApplyError extends WolfError {
  readonly lsn: number;
  readonly gtid: string;
  constructor(lsn: number, gtid: string, message: string, cause?: unknown) {
    super("state", `apply of LSN ${lsn} (GTID ${gtid}) failed: ${message}`, {
      cause,
      hint: "this follower stopped applying and will not skip the transaction; fix the cause, then restart it (or migrate it from a healthy node)",
    });
    this.name = "ApplyError";
    this.lsn = lsn;
    this.gtid = gtid;
  }
}

export interface Progress {
  lsn: number;
  gtid: string;
  /** LSN of a DDL that was started but not recorded as applied (in doubt after a crash). */
  ddlPendingLsn: number | null;
}

/** Test hooks: points where a crash is simulated. */
export interface ApplierHooks {
  /** Row transaction: events replayed and progress moved, before COMMIT. */
  beforeCommit?(lsn: number): void | Promise<void>;
  /** DDL executed, before its progress is recorded. */
  afterDdl?(lsn: number): void | Promise<void>;
}

export interface ApplierOptions {
  connect: ConnectOptions;
  hooks?: ApplierHooks;
}

export class Applier {
  private lastFde: string | undefined;
  private progress: Progress = { lsn: 0, gtid: "", ddlPendingLsn: null };
  private collations: Collations = new Map();
  /** Counters for status. */
  readonly stats = { transactions: 0, ddl: 0, events: 0, bytes: 0 };

  private constructor(
    private readonly conn: MysqlConnection,
    private readonly hooks: ApplierHooks,
  ) {}

  static async open(opts: ApplierOptions): Promise<Applier> {
    const conn = await MysqlConnection.connect(opts.connect);
    try {
      // Our replays are not new writes of this server: keep them out of its own binlog.
      await conn.query("SET SESSION sql_log_bin = 0");
      await conn.query("SET NAMES utf8mb4");
      await conn.query(`CREATE DATABASE IF NOT EXISTS ${PROGRESS_DB}`);
      await conn.query(
        `CREATE TABLE IF NOT EXISTS ${PROGRESS} (
           id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
           lsn BIGINT UNSIGNED NOT NULL,
           gtid VARCHAR(1024) NOT NULL DEFAULT '',
           ddl_pending_lsn BIGINT UNSIGNED NULL,
           applied_at TIMESTAMP(6) NULL
         ) ENGINE=InnoDB`,
      );
      await conn.query(`INSERT IGNORE INTO ${PROGRESS} (id, lsn) VALUES (1, 0)`);
      const a = new Applier(conn, opts.hooks ?? {});
      await a.readProgress();
      for (const row of (await conn.query("SELECT ID, COLLATION_NAME, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")).rows) {
        a.collations.set(Number(row[0]), { collation: row[1]!, charset: row[2]! });
      }
      return a;
    } catch (err) {
      conn.destroy();
      throw err;
    }
  }

  private async readProgress(): Promise<Progress> {
    const rows = await this.conn.queryObjects(`SELECT lsn, gtid, ddl_pending_lsn FROM ${PROGRESS} WHERE id = 1`);
    const row = rows[0];
    if (!row) throw new WolfError("state", `${PROGRESS} has no progress row`);
    this.progress = {
      lsn: Number(row.lsn),
      gtid: row.gtid ?? "",
      ddlPendingLsn: row.ddl_pending_lsn === null ? null : Number(row.ddl_pending_lsn),
    };
    return this.progress;
  }

  /** What this follower has applied (as committed in its own database). */
  get applied(): Progress {
    return { ...this.progress };
  }

  /** Records an entry that carries no transaction (cluster noop/config) as applied. */
  async skipEntry(lsn: number): Promise<void> {
    this.expectNext(lsn, "(none)");
    const res = await this.conn.query(`UPDATE ${PROGRESS} SET lsn = ${lsn}, applied_at = NOW(6) WHERE id = 1 AND lsn = ${lsn - 1}`);
    if (res.affectedRows !== 1) throw new ApplyError(lsn, "(none)", "the progress row moved underneath this applier");
    this.progress.lsn = lsn;
  }

  private expectNext(lsn: number, gtid: string): void {
    if (lsn !== this.progress.lsn + 1) {
      throw new ApplyError(lsn, gtid, `out of order: this follower has applied up to LSN ${this.progress.lsn}`);
    }
  }

  /** Applies the captured transaction `data` stored at `lsn` (must be applied LSN + 1). */
  async apply(lsn: number, data: Uint8Array): Promise<void> {
    const txn = decodeTxn(data);
    const gtid = formatGtid(txn.gtid);
    this.expectNext(lsn, gtid);
    try {
      await this.ensureFormat(txn);
      if (txn.flags & TXN_STANDALONE) await this.applyStandalone(lsn, gtid, txn);
      else await this.applyRows(lsn, gtid, txn);
    } catch (err) {
      if (err instanceof ApplyError) throw err;
      // The connection state is unknown now: make sure nothing half-done can commit later.
      await this.conn.query("ROLLBACK").catch(() => {});
      throw new ApplyError(lsn, gtid, (err as Error).message, err);
    }
    this.stats.events += txn.events.length;
    this.stats.bytes += data.length;
  }

  /** The session replays events with the leader's format description (sent when it changes). */
  private async ensureFormat(txn: CapturedTxn): Promise<void> {
    const b64 = Buffer.from(txn.formatDescription).toString("base64");
    if (b64 === this.lastFde) return;
    parseFormatDescription(txn.formatDescription); // refuse garbage before the server sees it
    await this.conn.query(`BINLOG '${b64}'`);
    this.lastFde = b64;
  }

  private async applyRows(lsn: number, gtid: string, txn: CapturedTxn): Promise<void> {
    const fd = parseFormatDescription(txn.formatDescription);
    await this.conn.query("START TRANSACTION");
    let batch: Uint8Array[] = [];
    let batchBytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      await this.conn.query(`BINLOG '${Buffer.concat(batch).toString("base64")}'`);
      batch = [];
      batchBytes = 0;
    };
    for (const raw of txn.events) {
      const h = parseEventHeader(raw);
      if (h.type === EventType.TableMap || isRowsEvent(h.type)) {
        batch.push(raw);
        batchBytes += raw.length;
        // Split only at statement ends, where the table maps may be dropped.
        if (batchBytes * 1.34 > MAX_BINLOG_STATEMENT && isRowsEvent(h.type) && parseRowsHeader(raw, fd).flags & STMT_END_F) await flush();
      } else if (h.type === EventType.Query) {
        const q = parseQuery(raw, fd);
        const sql = new TextDecoder().decode(q.sql).trim().toUpperCase();
        if (sql === "BEGIN" || sql === "COMMIT") continue;
        if (sql === "ROLLBACK") {
          throw new ApplyError(lsn, gtid, "transaction ends in ROLLBACK (non-transactional tables changed in a rolled-back transaction) — not supported");
        }
        // Statements logged inside a transaction (SAVEPOINT, ...): run them in place.
        await flush();
        await this.conn.query(q.sql);
      }
      // GTID, XID, ANNOTATE_ROWS: nothing to replay.
    }
    await flush();
    const res = await this.conn.query(
      `UPDATE ${PROGRESS} SET lsn = ${lsn}, gtid = ${quoteString(txn.gtidState)}, applied_at = NOW(6) WHERE id = 1 AND lsn = ${lsn - 1}`,
    );
    if (res.affectedRows !== 1) {
      await this.conn.query("ROLLBACK");
      throw new ApplyError(lsn, gtid, "the progress row moved underneath this applier (another applier running?)");
    }
    await this.hooks.beforeCommit?.(lsn);
    await this.conn.query("COMMIT");
    this.progress = { lsn, gtid: txn.gtidState, ddlPendingLsn: null };
    this.stats.transactions++;
  }

  private async applyStandalone(lsn: number, gtid: string, txn: CapturedTxn): Promise<void> {
    const fd = parseFormatDescription(txn.formatDescription);
    const queries = txn.events.filter((e) => parseEventHeader(e).type === EventType.Query).map((e) => parseQuery(e, fd));
    const inDoubt = this.progress.ddlPendingLsn === lsn;
    await this.conn.query(`UPDATE ${PROGRESS} SET ddl_pending_lsn = ${lsn} WHERE id = 1 AND lsn = ${lsn - 1}`);
    for (const q of queries) {
      if (q.database) {
        // CREATE/DROP DATABASE events name the database itself, which may not exist (yet/any more).
        await this.conn.query(`USE ${quoteIdent(q.database)}`).catch((err: unknown) => {
          if (!(err instanceof ServerError && err.errno === 1049)) throw err;
        });
      }
      for (const stmt of sessionStatements(q, this.collations)) await this.conn.query(stmt);
      try {
        await this.conn.query(q.sql);
      } catch (err) {
        if (!(inDoubt && err instanceof ServerError && ALREADY_APPLIED_ERRNOS.has(err.errno))) throw err;
        log.info(`LSN ${lsn} (GTID ${gtid}) was applied before a restart (${err.message}); recording it`);
      } finally {
        for (const stmt of RESET_SESSION) await this.conn.query(stmt).catch(() => {});
      }
    }
    await this.hooks.afterDdl?.(lsn);
    const res = await this.conn.query(
      `UPDATE ${PROGRESS} SET lsn = ${lsn}, gtid = ${quoteString(txn.gtidState)}, ddl_pending_lsn = NULL, applied_at = NOW(6) WHERE id = 1 AND lsn = ${lsn - 1}`,
    );
    if (res.affectedRows !== 1) throw new ApplyError(lsn, gtid, "the progress row moved underneath this applier");
    this.progress = { lsn, gtid: txn.gtidState, ddlPendingLsn: null };
    this.stats.ddl++;
  }

  close(): void {
    this.conn.close();
  }

  /** Drops the connection without a goodbye (tests: a crash as the server sees it). */
  destroy(): void {
    this.conn.destroy();
  }
}

/**
 * Applies WAL entries from the applier's progress on, waiting for new ones, until `stop()` is
 * called or an apply fails (the error is returned by `done`, never skipped).
 */
export class WalApplyLoop {
  private running = true;
  readonly done: Promise<void>;

  constructor(
    private readonly wal: Wal,
    private readonly applier: Applier,
    opts: { dataKind?: number } = {},
  ) {
    const dataKind = opts.dataKind ?? 0;
    this.done = (async () => {
      let next = this.applier.applied.lsn + 1;
      while (this.running) {
        if (this.wal.lastLsn < next) {
          await this.wal.waitFor(next, 200);
          continue;
        }
        for (const e of this.wal.read(next, { maxBytes: 4 * 1024 * 1024 })) {
          if (!this.running) break;
          if ((e.kind ?? 0) === dataKind) await this.applier.apply(e.lsn, e.data);
          else await this.applier.skipEntry(e.lsn);
          next = e.lsn + 1;
        }
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done.catch(() => {});
  }
}
