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
 *
 * A row transaction (or a run of consecutive ones, applyRowsBatch) normally takes one round trip:
 * START TRANSACTION, the BINLOG statements, the progress update and COMMIT go as one multi-statement
 * query. The progress update is written so that a progress row not at lsn-1 makes it fail
 * (`lsn = IF(lsn = prev, new, NULL)` under strict mode: error 1048), and the server stops at the
 * first error, so COMMIT never runs for a transaction whose bookkeeping did not move.
 */
import { WolfError } from "../../common/errors.ts";
import { logger } from "../../common/log.ts";
import type { Wal } from "../../wal/wal.ts";
import {
  EventType,
  formatGtid,
  isRowsEvent,
  parseEventHeader,
  parseQuery,
  parseRowsHeader,
  parseFormatDescription,
  STMT_END_F,
} from "../binlog/events.ts";
import { type CapturedTxn, decodeTxn, TXN_STANDALONE } from "../binlog/txn.ts";
import { type ConnectOptions, MysqlConnection, ServerError } from "../mysql/connection.ts";
import {
  ALREADY_APPLIED_ERRNOS,
  type Collations,
  quoteIdent,
  quoteString,
  RESET_SESSION,
  sessionStatements,
} from "./session.ts";

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
    const conn = await MysqlConnection.connect({ ...opts.connect, multiStatements: true });
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
      for (const row of (
        await conn.query("SELECT ID, COLLATION_NAME, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
      ).rows) {
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
    const res = await this.conn.query(
      `UPDATE ${PROGRESS} SET lsn = ${lsn}, applied_at = NOW(6) WHERE id = 1 AND lsn = ${lsn - 1}`,
    );
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
      else if (!this.hooks.beforeCommit && rowStatements(txn) !== undefined) await this.applyRowsBatch([{ lsn, txn }]);
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

  /**
   * Whether consecutive entries can be applied together by applyMany: row transactions (no
   * statements to run in place, not DDL) within the size a single round trip carries.
   */
  static batchable(txn: CapturedTxn): boolean {
    return !(txn.flags & TXN_STANDALONE) && rowStatements(txn) !== undefined;
  }

  /**
   * Applies consecutive row transactions (each batchable(), LSNs applied+1, +2, …) in ONE database
   * transaction that also moves the progress row to the last LSN: all of them or none, one round
   * trip, one commit. Several transactions' effects become visible together; each is applied
   * exactly once.
   */
  async applyMany(items: Array<{ lsn: number; data: Uint8Array }>): Promise<void> {
    const txns = items.map((it) => ({ lsn: it.lsn, txn: decodeTxn(it.data) }));
    const first = txns[0]!;
    const last = txns[txns.length - 1]!;
    const gtid = formatGtid(last.txn.gtid);
    this.expectNext(first.lsn, formatGtid(first.txn.gtid));
    try {
      for (let i = 1; i < txns.length; i++)
        if (txns[i]!.lsn !== first.lsn + i)
          throw new ApplyError(txns[i]!.lsn, gtid, "a batch must hold consecutive LSNs");
      await this.ensureFormat(first.txn);
      if (txns.some((t) => Buffer.compare(t.txn.formatDescription, first.txn.formatDescription) !== 0)) {
        throw new ApplyError(last.lsn, gtid, "a batch must share one format description");
      }
      await this.applyRowsBatch(txns);
    } catch (err) {
      if (err instanceof ApplyError) throw err;
      await this.conn.query("ROLLBACK").catch(() => {});
      throw new ApplyError(last.lsn, gtid, (err as Error).message, err);
    }
    for (const it of items) this.stats.bytes += it.data.length;
    for (const t of txns) this.stats.events += t.txn.events.length;
  }

  /** One round trip: START TRANSACTION; BINLOG …; guarded progress update; COMMIT (see the header). */
  private async applyRowsBatch(txns: Array<{ lsn: number; txn: CapturedTxn }>): Promise<void> {
    const first = txns[0]!;
    const last = txns[txns.length - 1]!;
    const parts = ["START TRANSACTION"];
    for (const t of txns) parts.push(...rowStatements(t.txn)!);
    parts.push(
      `SET STATEMENT sql_mode = 'STRICT_ALL_TABLES' FOR UPDATE ${PROGRESS} SET lsn = IF(lsn = ${first.lsn - 1}, ${last.lsn}, NULL), ` +
        `gtid = ${quoteString(last.txn.gtidState)}, applied_at = NOW(6) WHERE id = 1`,
      "COMMIT",
    );
    let results: Awaited<ReturnType<typeof this.conn.queryAll>>;
    try {
      results = await this.conn.queryAll(parts.join(";\n"), parts.length);
    } catch (err) {
      await this.conn.query("ROLLBACK").catch(() => {});
      if (err instanceof ServerError && err.errno === 1048) {
        throw new ApplyError(
          first.lsn,
          formatGtid(first.txn.gtid),
          "the progress row moved underneath this applier (another applier running?)",
          err,
        );
      }
      throw err;
    }
    if (results[results.length - 2]?.affectedRows !== 1) {
      // Only a missing progress row gets here (a mismatch fails before COMMIT): refuse to go on.
      throw new ApplyError(last.lsn, formatGtid(last.txn.gtid), `the progress row ${PROGRESS} id 1 is missing`);
    }
    this.progress = { lsn: last.lsn, gtid: last.txn.gtidState, ddlPendingLsn: null };
    this.stats.transactions += txns.length;
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
        if (
          batchBytes * 1.34 > MAX_BINLOG_STATEMENT &&
          isRowsEvent(h.type) &&
          parseRowsHeader(raw, fd).flags & STMT_END_F
        )
          await flush();
      } else if (h.type === EventType.Query) {
        const q = parseQuery(raw, fd);
        const sql = new TextDecoder().decode(q.sql).trim().toUpperCase();
        if (sql === "BEGIN" || sql === "COMMIT") continue;
        if (sql === "ROLLBACK") {
          throw new ApplyError(
            lsn,
            gtid,
            "transaction ends in ROLLBACK (non-transactional tables changed in a rolled-back transaction) — not supported",
          );
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
    const queries = txn.events
      .filter((e) => parseEventHeader(e).type === EventType.Query)
      .map((e) => parseQuery(e, fd));
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

/** Above this (base64 text of one transaction's events), a transaction takes the statement-splitting path. */
const MAX_FAST_STATEMENT = 4 * 1024 * 1024;

/**
 * The BINLOG statements replaying a row transaction (table maps and rows events as one statement),
 * or undefined if it needs the general path: statements to run in place, or too large.
 */
function rowStatements(txn: CapturedTxn): string[] | undefined {
  const fd = parseFormatDescription(txn.formatDescription);
  const rows: Uint8Array[] = [];
  let bytes = 0;
  for (const raw of txn.events) {
    const h = parseEventHeader(raw);
    if (h.type === EventType.TableMap || isRowsEvent(h.type)) {
      rows.push(raw);
      bytes += raw.length;
    } else if (h.type === EventType.Query) {
      const sql = new TextDecoder().decode(parseQuery(raw, fd).sql).trim().toUpperCase();
      if (sql !== "BEGIN" && sql !== "COMMIT") return undefined;
    }
  }
  if (bytes * 1.34 > MAX_FAST_STATEMENT) return undefined;
  return rows.length === 0 ? [] : [`BINLOG '${Buffer.concat(rows).toString("base64")}'`];
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
