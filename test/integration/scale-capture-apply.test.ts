/**
 * wolf scale capture → WAL → apply, against real MariaDB: a leader (A, ROW binlog) is captured
 * into our WAL while a mixed workload runs; followers replay the WAL. Every non-deterministic SQL
 * feature the original diverged on is in the workload; the followers must end byte-identical
 * (CHECKSUM TABLE), also when the applier is killed mid-apply and when capture restarts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { waitUntil } from "../../lib/common/wait.ts";
import { Applier, ApplyError, WalApplyLoop } from "../../lib/scale/apply/applier.ts";
import { BinlogCapture, lastCapturedGtidState } from "../../lib/scale/binlog/capture.ts";
import { decodeTxn, TXN_STANDALONE } from "../../lib/scale/binlog/txn.ts";
import { MysqlConnection, ServerError } from "../../lib/scale/mysql/connection.ts";
import { Wal } from "../../lib/wal/wal.ts";
import { startMariaDB, type MariaDBInstance } from "../harness/mariadb.ts";

const haveMariaDB = Bun.which("mariadbd") !== null;
const TABLES = ["app.items", "app.audit", "app.counters"];

const started: MariaDBInstance[] = [];
const cleanups: Array<() => Promise<void> | void> = [];
let leader: MariaDBInstance;
let walDir: string;
let wal: Wal;

afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  await Promise.all(started.map((db) => db.stop()));
  if (walDir) fs.rmSync(walDir, { recursive: true, force: true });
});

async function start(serverId: number, binlog: boolean): Promise<MariaDBInstance> {
  const db = await startMariaDB({ serverId, extraArgs: binlog ? ["--log-bin=mysql-bin", "--binlog-format=ROW"] : [] });
  started.push(db);
  return db;
}

function startCapture(resumeFrom: string): BinlogCapture {
  const cap = new BinlogCapture({
    connect: { socketPath: leader.socket, user: "root" },
    serverId: 1001,
    resumeFrom,
    heartbeatMs: 200,
    sink: (data) => wal.append(data, 1),
  });
  cap.start();
  cleanups.push(() => cap.stop());
  return cap;
}

async function checksums(db: MariaDBInstance): Promise<Record<string, unknown>> {
  const rows = await db.query<Array<{ Table: string; Checksum: unknown }>>(
    `CHECKSUM TABLE ${TABLES.join(", ")} EXTENDED`,
  );
  return Object.fromEntries(rows.map((r) => [r.Table, r.Checksum]));
}

async function leaderGtid(): Promise<string> {
  const rows = await leader.query<Array<{ pos: string }>>("SELECT @@gtid_binlog_pos AS pos");
  return rows[0]!.pos;
}

/** The workload: concurrent clients using everything that made statement replication diverge. */
async function workload(iterations: number, alterAt: number): Promise<void> {
  const pool = mysql.createPool({
    socketPath: leader.socket,
    user: "root",
    database: "app",
    connectionLimit: 4,
    multipleStatements: true,
  });
  try {
    const worker = async (w: number) => {
      const conn = await pool.getConnection();
      try {
        for (let i = 0; i < iterations; i++) {
          if (w === 0 && i === alterAt) {
            // DDL during load: a new column with a default and an index.
            await conn.query(
              "ALTER TABLE items ADD COLUMN extra VARCHAR(40) NOT NULL DEFAULT 'x', ADD INDEX qty_idx (qty)",
            );
          }
          switch ((i + w) % 8) {
            case 0:
              await conn.query(
                "INSERT INTO items (u, r, qty, note) VALUES (UUID(), RAND(), 1, CONCAT('w', ?, ' at ', NOW(6)))",
                [w],
              );
              break;
            case 1: // prepared statement (binary protocol)
              await conn.execute("INSERT INTO items (u, r, qty, note) VALUES (UUID(), RAND(), ?, ?)", [
                i,
                `prepared ${w}/${i}`,
              ]);
              break;
            case 2: // multi-row update with non-deterministic values
              await conn.query("UPDATE items SET qty = qty + 1, r = RAND(), touched = NOW(6) WHERE id % 5 = ?", [
                i % 5,
              ]);
              break;
            case 3: // stored procedure (loops, UUID, RAND) firing the trigger per row
              await conn.query("CALL add_items(3, ?)", [`proc ${w}/${i}`]);
              break;
            case 4: // rolled-back transaction: must leave no trace anywhere
              await conn.query("START TRANSACTION");
              await conn.query("INSERT INTO items (u, r, note) VALUES (UUID(), RAND(), 'rolled back')");
              await conn.query("UPDATE counters SET n = n + 1000 WHERE name = 'rollbacks'");
              await conn.query("ROLLBACK");
              break;
            case 5: // explicit multi-statement transaction
              await conn.query("START TRANSACTION");
              await conn.query("UPDATE counters SET n = n + 1 WHERE name = ?", [`w${w}`]);
              await conn.query(
                "INSERT INTO items (u, r, note) VALUES (UUID(), RAND(), 'txn'), (UUID(), RAND(), 'txn')",
              );
              await conn.query("COMMIT");
              break;
            case 6:
              await conn.query("DELETE FROM items WHERE id % 11 = ? ORDER BY id LIMIT 2", [i % 11]);
              break;
            case 7: // multi-statement text query
              await conn.query(
                "UPDATE counters SET n = n + 1, at = NOW(6) WHERE name = 'multi'; INSERT INTO items (u, r, note) VALUES (UUID(), RAND(), 'multi')",
              );
              break;
          }
        }
      } finally {
        conn.release();
      }
    };
    await Promise.all([0, 1, 2, 3].map(worker));
  } finally {
    await pool.end();
  }
}

describe.skipIf(!haveMariaDB)("scale capture → WAL → apply", () => {
  beforeAll(async () => {
    leader = await start(1, true);
    walDir = fs.mkdtempSync(join(os.tmpdir(), "wolf-scale-wal-"));
    wal = await Wal.open({ dir: walDir, segmentBytes: 256 * 1024 });
    cleanups.push(() => wal.close());
  });

  test("a follower replaying the WAL ends byte-identical under a diverse concurrent workload", async () => {
    const follower = await start(2, false);
    let capture = startCapture("");
    await leader.query(`
      CREATE DATABASE app;
      CREATE TABLE app.items (id INT AUTO_INCREMENT PRIMARY KEY, created DATETIME(6) NOT NULL DEFAULT NOW(6),
        touched DATETIME(6) NULL, u CHAR(36) NOT NULL, r DOUBLE NOT NULL, qty INT NOT NULL DEFAULT 0, note VARCHAR(200)) ENGINE=InnoDB;
      CREATE TABLE app.audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, item_id INT NOT NULL, at DATETIME(6) NOT NULL, tag CHAR(36) NOT NULL) ENGINE=InnoDB;
      CREATE TABLE app.counters (name VARCHAR(20) PRIMARY KEY, n BIGINT NOT NULL, at DATETIME(6) NULL) ENGINE=InnoDB;
      INSERT INTO app.counters (name, n) VALUES ('w0', 0), ('w1', 0), ('w2', 0), ('w3', 0), ('multi', 0), ('rollbacks', 0);
      CREATE TRIGGER app.items_ai AFTER INSERT ON app.items FOR EACH ROW INSERT INTO app.audit (item_id, at, tag) VALUES (NEW.id, NOW(6), UUID());
      CREATE PROCEDURE app.add_items(n INT, label VARCHAR(100)) BEGIN
        DECLARE i INT DEFAULT 0;
        WHILE i < n DO INSERT INTO app.items (u, r, note) VALUES (UUID(), RAND(), CONCAT(label, ' #', i)); SET i = i + 1; END WHILE;
      END`);

    // The follower applies while the workload runs.
    const applier = await Applier.open({ connect: { socketPath: follower.socket, user: "root" } });
    cleanups.push(() => applier.close());
    const loop = new WalApplyLoop(wal, applier);
    cleanups.push(() => loop.stop());

    const t0 = performance.now();
    await workload(60, 20);
    // Restart capture mid-stream from the WAL's own resume point: nothing skipped, nothing twice.
    await capture.stop();
    const resume = lastCapturedGtidState(wal)!;
    expect(resume).toMatch(/^0-1-\d+$/);
    await leader.query("INSERT INTO app.items (u, r, note) VALUES (UUID(), RAND(), 'while capture was down')");
    capture = startCapture(resume);
    await workload(20, -1);
    const loadSecs = (performance.now() - t0) / 1000;

    const target = await leaderGtid();
    await waitUntil(() => capture.stats.gtidState === target && wal.lastLsn === capture.stats.lastLsn, {
      timeoutMs: 30_000,
      what: `capture to reach ${target}`,
    });
    const applyStart = performance.now();
    await waitUntil(
      async () => {
        const err = await Promise.race([
          loop.done.then(
            () => "stopped",
            (e: Error) => e,
          ),
          Bun.sleep(0).then(() => undefined),
        ]);
        if (err instanceof Error) throw new Error(`apply loop failed: ${err.message}`);
        return applier.applied.lsn === wal.lastLsn;
      },
      { timeoutMs: 60_000, what: "the follower to apply the whole WAL" },
    );
    const applyTail = (performance.now() - applyStart) / 1000;

    // Every GTID exactly once, in order (capture never skipped or duplicated a transaction).
    const entries = wal.read(1, { maxBytes: 1e9 });
    const seqs = entries.map((e) => Number(decodeTxn(e.data).gtid.seqNo));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(`0-1-${seqs.length}`).toBe(target);
    const last = decodeTxn(entries.at(-1)!.data);
    expect(last.binlogFile).toMatch(/^mysql-bin\.\d{6}$/);
    expect(last.endPos).toBeGreaterThan(4);
    const ddl = entries.filter((e) => decodeTxn(e.data).flags & TXN_STANDALONE).length;
    expect(ddl).toBeGreaterThanOrEqual(7); // create db, 3 tables, trigger, procedure, alter

    const [a, b] = [await checksums(leader), await checksums(follower)];
    expect(b).toEqual(a);
    const count = await leader.query<Array<{ n: number }>>("SELECT COUNT(*) AS n FROM app.items");
    expect(count[0]!.n).toBeGreaterThan(200);
    // Same definition after the ALTER. (The AUTO_INCREMENT counter may differ: rolled-back inserts burn
    // values on the leader only, as with MariaDB's own replication; no committed row is affected.)
    const ddlOf = async (db: MariaDBInstance) =>
      (await db.query<Array<Record<string, string>>>("SHOW CREATE TABLE app.items"))[0]!["Create Table"]!.replace(
        / AUTO_INCREMENT=\d+/,
        "",
      );
    expect(await ddlOf(follower)).toBe(await ddlOf(leader));
    expect(await follower.query("SELECT COUNT(*) AS n FROM app.items WHERE note = 'rolled back'")).toEqual([{ n: 0 }]);
    const walBytes = wal.stats().bytes;
    const payload = entries.reduce((s, e) => s + e.data.length, 0);
    console.log(
      `[scale] ${entries.length} transactions (${ddl} DDL) captured during ${loadSecs.toFixed(2)} s of load ` +
        `(${(entries.length / loadSecs).toFixed(0)} txn/s); apply tail after load ${applyTail.toFixed(2)} s; ` +
        `WAL ${walBytes} bytes for ${payload} bytes of transactions (LZ4 ${(walBytes / payload).toFixed(2)}x); checksums equal`,
    );
    await loop.stop();
  }, 120_000);

  test("an applier killed mid-apply, again and again, resumes exactly once", async () => {
    expect(wal.lastLsn).toBeGreaterThan(100); // the WAL of the previous test
    const follower = await start(3, false);
    let crashes = 0;
    let ddlCrashes = 0;
    const killedAt = new Set<string>();
    let current: Applier | undefined;
    const crash = (lsn: number, where: string) => {
      // Kill the connection without COMMIT: to MariaDB this is the applier dying. Every DDL once
      // (after it ran, before its progress was recorded), and every 13th row transaction once.
      const isDdl = where === "after DDL";
      if ((isDdl || lsn % 13 === 0) && !killedAt.has(`${where}@${lsn}`)) {
        killedAt.add(`${where}@${lsn}`);
        crashes++;
        if (isDdl) ddlCrashes++;
        current!.destroy();
        throw new Error(`simulated crash ${where} at LSN ${lsn}`);
      }
    };
    const t0 = performance.now();
    for (let restart = 0; ; restart++) {
      expect(restart).toBeLessThan(200);
      current = await Applier.open({
        connect: { socketPath: follower.socket, user: "root" },
        hooks: { beforeCommit: (lsn) => crash(lsn, "before COMMIT"), afterDdl: (lsn) => crash(lsn, "after DDL") },
      });
      const loop = new WalApplyLoop(wal, current);
      const outcome = await Promise.race([
        loop.done.then(
          () => "stopped" as const,
          (e: Error) => e,
        ),
        waitUntil(() => current!.applied.lsn === wal.lastLsn, { timeoutMs: 60_000, what: "apply" }).then(
          () => "done" as const,
        ),
      ]);
      await loop.stop();
      if (outcome === "done") break;
      if (outcome instanceof ApplyError && /simulated crash/.test(outcome.message)) continue;
      throw outcome;
    }
    const secs = (performance.now() - t0) / 1000;
    current.close();
    expect(crashes).toBeGreaterThan(5);
    expect(ddlCrashes).toBeGreaterThanOrEqual(7);
    expect(await checksums(follower)).toEqual(await checksums(leader));
    const progress = await follower.query<Array<{ lsn: number; ddl_pending_lsn: number | null }>>(
      "SELECT lsn, ddl_pending_lsn FROM wolfscale.applied",
    );
    expect(progress).toEqual([{ lsn: wal.lastLsn, ddl_pending_lsn: null }]);
    console.log(
      `[scale] applied ${wal.lastLsn} transactions with ${crashes} simulated crashes in ${secs.toFixed(2)} s (${(wal.lastLsn / secs).toFixed(0)} txn/s incl. restarts)`,
    );
  }, 120_000);

  test("batched apply: runs of row transactions in one database transaction each end byte-identical; a moved progress row refuses a batch before COMMIT", async () => {
    expect(wal.lastLsn).toBeGreaterThan(100); // the WAL of the first test
    const follower = await start(4, false);
    const applier = await Applier.open({ connect: { socketPath: follower.socket, user: "root" } });
    cleanups.push(() => applier.close());
    const entries = wal.read(1, { maxBytes: 1e9 });
    let batches = 0;
    let batched = 0;
    let refusedChecked = false;
    for (let i = 0; i < entries.length; ) {
      const run: typeof entries = [];
      const want = 1 + ((i * 7) % 19); // 1..19, varying
      // A run: batchable transactions sharing one format description (capture restarts change it).
      const fdeOf = (e: (typeof entries)[number]) => Buffer.from(decodeTxn(e.data).formatDescription).toString("hex");
      while (run.length < want && i + run.length < entries.length) {
        const next = entries[i + run.length]!;
        if (!Applier.batchable(decodeTxn(next.data)) || (run.length > 0 && fdeOf(next) !== fdeOf(run[0]!))) break;
        run.push(next);
      }
      if (run.length < 2) {
        await applier.apply(entries[i]!.lsn, entries[i]!.data);
        i++;
        continue;
      }
      if (!refusedChecked && i > entries.length / 2) {
        // Another writer moved the progress row: the batch must fail before COMMIT and leave nothing.
        refusedChecked = true;
        const before = await checksums(follower);
        await follower.query("SET sql_log_bin = 0; UPDATE wolfscale.applied SET lsn = lsn + 1 WHERE id = 1");
        const err = await applier.applyMany(run.map((e) => ({ lsn: e.lsn, data: e.data }))).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ApplyError);
        expect((err as Error).message).toMatch(/moved underneath/);
        expect(await checksums(follower)).toEqual(before);
        await follower.query("SET sql_log_bin = 0; UPDATE wolfscale.applied SET lsn = lsn - 1 WHERE id = 1");
      }
      await applier.applyMany(run.map((e) => ({ lsn: e.lsn, data: e.data })));
      batches++;
      batched += run.length;
      i += run.length;
    }
    expect(refusedChecked).toBe(true);
    expect(batched).toBeGreaterThan(entries.length / 2);
    expect(applier.applied.lsn).toBe(wal.lastLsn);
    expect(await checksums(follower)).toEqual(await checksums(leader));
    const progress = await follower.query<Array<{ lsn: number }>>("SELECT lsn FROM wolfscale.applied");
    expect(progress).toEqual([{ lsn: wal.lastLsn }]);
    console.log(`[scale] ${batched} of ${entries.length} transactions applied in ${batches} batches; checksums equal`);
  }, 120_000);

  test("the replication connection authenticates with mysql_native_password over TCP and reports refusals", async () => {
    await leader.query(
      "SET sql_log_bin = 0; CREATE USER 'wolfrepl'@'%' IDENTIFIED BY 'S3cret pass!'; GRANT REPLICATION SLAVE, SELECT ON *.* TO 'wolfrepl'@'%'; SET sql_log_bin = 1",
    );
    const conn = await MysqlConnection.connect({
      host: leader.host,
      port: leader.port,
      user: "wolfrepl",
      password: "S3cret pass!",
    });
    expect((await conn.queryObjects("SELECT CURRENT_USER() AS u"))[0]!.u).toBe("wolfrepl@%");
    conn.close();
    const refused = await MysqlConnection.connect({
      host: leader.host,
      port: leader.port,
      user: "wolfrepl",
      password: "wrong",
    }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ServerError);
    expect((refused as ServerError).errno).toBe(1045);
  });
});
