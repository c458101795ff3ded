/**
 * The API's SQL on the local MariaDB: writes on the leader (answered once the transaction's entry
 * reached the ack level) and local reads. Owns the session pool and the write gate a handover
 * drains (no new writes, wait for the ones in progress).
 */
import mysql from "mysql2/promise";
import type { ClusterNode } from "../cluster/node.ts";
import type { AckLevel, Lsn } from "../cluster/types.ts";
import { AckTimeoutError, NotLeaderError } from "../cluster/types.ts";
import { UsageError, WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { waitUntil } from "../common/wait.ts";
import type { Statement } from "./api/statements.ts";
import { quoteIdent } from "./apply/session.ts";
import type { ScaleConfig } from "./config.ts";
import type { LeaderCapture } from "./leader-capture.ts";
import type { ConnectOptions } from "./mysql/connection.ts";

const log = logger("scale");

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

export interface WriteCounters {
  writes: number;
  writeErrors: number;
  forwarded: number;
  ackTimeouts: number;
  /** Writes answered below their ack level under ack_fallback = "async". */
  ackFallbacks: number;
}

/** The leadership as writes see it: `ready` once it captures (then `capture` is set). */
export interface CapturingLeader {
  readonly ready: boolean;
  readonly capture: LeaderCapture | undefined;
}

export interface WritesHost {
  readonly nodeId: number;
  readonly node: ClusterNode;
  readonly leadership: CapturingLeader;
}

export class Writes {
  readonly counters: WriteCounters = { writes: 0, writeErrors: 0, forwarded: 0, ackTimeouts: 0, ackFallbacks: 0 };
  private pool: mysql.Pool;
  private inflight = 0;
  private blocked = false;

  constructor(
    private readonly cfg: ScaleConfig,
    private readonly connect: ConnectOptions,
    private readonly host: WritesHost,
  ) {
    this.pool = this.makePool();
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

  /** Sessions remember their last GTID; the next leadership starts with fresh ones. */
  renewSessions(): void {
    const old = this.pool;
    this.pool = this.makePool();
    void old.end().catch(() => {});
  }

  /** Handover drain: new writes wait (and fail as "not the leader") until the returned call. */
  block(): () => void {
    this.blocked = true;
    return () => {
      this.blocked = false;
    };
  }

  /** Waits for the writes in progress to finish. */
  async idle(): Promise<void> {
    await waitUntil(() => this.inflight === 0, {
      timeoutMs: 10_000,
      intervalMs: 2,
      what: "writes in progress to finish",
    });
  }

  /** Waits (briefly) for this node to be a capturing leader; throws NotLeaderError otherwise. */
  async awaitLeaderReady(timeoutMs: number): Promise<void> {
    const { node, leadership } = this.host;
    const ok = await waitUntil(
      () => (leadership.ready && !this.blocked ? true : node.getRole() === "leader" ? undefined : "no"),
      { timeoutMs, intervalMs: 10, what: "this node to start capturing as leader" },
    ).catch(() => "no" as const);
    if (ok !== true) throw new NotLeaderError(`node ${this.host.nodeId} is not the leader`, node.leader());
  }

  /** Runs a write on the leader's MariaDB and waits until its entry reached the ack level. */
  async write(stmt: Statement, opts: WriteOptions = {}): Promise<WriteOutcome> {
    const t0 = performance.now();
    const ackTimeout = this.cfg.replication.ack_timeout_ms;
    await this.awaitLeaderReady(Math.min(ackTimeout, 5000));
    const capture = this.host.leadership.capture!;
    this.inflight++;
    let result: unknown;
    let gtid = "";
    try {
      const conn = await this.pool.getConnection();
      let reusable = !opts.database;
      try {
        if (opts.database) await conn.query(`USE ${quoteIdent(opts.database)}`);
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
      this.inflight--;
    }
    this.counters.writes++;
    const ack = opts.ack ?? this.cfg.replication.ack;
    if (!gtid) return { result, gtid: null, lsn: null, ack, ms: performance.now() - t0 };
    try {
      const entry = await capture.entryOf(gtid, ackTimeout);
      const left = Math.max(1, ackTimeout - (performance.now() - t0));
      try {
        await this.host.node.waitFor(entry, ack, left);
      } catch (err) {
        // ack_fallback = "async" (like semi-sync's timeout fallback): the operator chose availability
        // over the ack level; the answer names the level actually reached, never the one asked for.
        if (!(err instanceof AckTimeoutError) || this.cfg.replication.ack_fallback !== "async") throw err;
        this.counters.ackFallbacks++;
        log.warn(
          `write ${gtid} (lsn ${entry.lsn}) answered with ack = ${err.reached} instead of ${ack}: ${err.message}`,
        );
        return { result, gtid, lsn: entry.lsn, ack: err.reached, ms: performance.now() - t0 };
      }
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
      if (database) await conn.query(`USE ${quoteIdent(database)}`);
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

  async close(): Promise<void> {
    await this.pool.end().catch(() => {});
  }
}
