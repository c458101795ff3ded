/**
 * wolf scale replication next to MariaDB's own, on the same machine, in one run:
 *
 *   lag         leader commit (client got OK) → row visible on the follower, single-row inserts
 *               written one at a time straight into the leader's MariaDB; p50 / p99
 *   throughput  single-row inserts/s from concurrent clients:
 *                 MariaDB async / semi-sync   clients → primary (MySQL protocol)
 *                 wolf ack=none / ack=one     clients → wolf HTTP API on the leader
 *                 wolf capture                clients → the leader's MariaDB directly (what capture keeps up with)
 *
 * Peers: a primary + one replica with native GTID replication (async, then semi-sync enabled).
 * wolf: two nodes (leader + one follower), same MariaDB settings. Medians of --runs runs.
 *
 *   node_modules/.bin/bun test/bench/scale-replication/run.ts [--inserts 300] [--seconds 3] [--runs 3] [--clients 8]
 */
import mysql from "mysql2/promise";
import { waitUntil } from "../../../lib/common/wait.ts";
import { ensureBuilt, startMariaDB, type MariaDBInstance } from "../../harness/index.ts";
import { LocalScaleCluster } from "./local-cluster.ts";

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const INSERTS = arg("inserts", 300);
const SECONDS = arg("seconds", 3);
const RUNS = arg("runs", 3);
const CLIENTS = arg("clients", 8);
const DB_ARGS = ["--log-bin=mysql-bin", "--binlog-format=ROW"];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

interface LagResult {
  p50: number;
  p99: number;
}

/** Commit on `writer` → visible through `reader`, one row at a time (reader polls by primary key). */
async function measureLag(
  writer: MariaDBInstance,
  reader: MariaDBInstance,
  table: string,
  idBase: number,
): Promise<LagResult> {
  const w = await mysql.createConnection({ socketPath: writer.socket, user: "root" });
  const r = await mysql.createConnection({ socketPath: reader.socket, user: "root" });
  const lags: number[] = [];
  try {
    for (let i = 0; i < INSERTS; i++) {
      const id = idBase + i;
      await w.query(`INSERT INTO ${table} (id, v) VALUES (?, 'x')`, [id]);
      const t0 = performance.now();
      for (;;) {
        const [rows] = await r.query(`SELECT 1 AS one FROM ${table} WHERE id = ?`, [id]);
        if ((rows as unknown[]).length > 0) break;
        if (performance.now() - t0 > 10_000) throw new Error(`row ${id} not visible on the follower after 10 s`);
      }
      lags.push(performance.now() - t0);
    }
  } finally {
    await w.end();
    await r.end();
  }
  return { p50: pct(lags, 50), p99: pct(lags, 99) };
}

/** Inserts/s with CLIENTS concurrent clients for SECONDS. */
async function measureThroughput(insert: (client: number, seq: number) => Promise<void>): Promise<number> {
  const deadline = performance.now() + SECONDS * 1000;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; performance.now() < deadline; i++) {
        await insert(c, i);
        n++;
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

/** RUNS throughput measurements through `ins`, each with fresh keys. */
async function throughputRuns(ins: ReturnType<typeof poolInserter>): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    ins.next();
    out.push(await measureThroughput(ins.insert));
  }
  return out;
}

function poolInserter(db: MariaDBInstance, table: string) {
  const pool = mysql.createPool({ socketPath: db.socket, user: "root", connectionLimit: CLIENTS });
  let run = 0;
  return {
    next() {
      run++;
    },
    insert: async (c: number, i: number) => {
      await pool.query(`INSERT INTO ${table} (v) VALUES (?)`, [`r${run}c${c}i${i}`]);
    },
    end: () => pool.end(),
  };
}

/** The replica has applied everything the primary logged (throughput runs leave a backlog). */
async function caughtUp(primary: MariaDBInstance, replica: MariaDBInstance): Promise<void> {
  const [p] = await primary.query<Array<{ pos: string }>>("SELECT @@gtid_binlog_pos AS pos");
  await waitUntil(
    async () => (await replica.query<Array<{ pos: string }>>("SELECT @@gtid_slave_pos AS pos"))[0]!.pos === p!.pos,
    {
      timeoutMs: 300_000,
      what: "the replica to catch up",
    },
  );
}

async function native(): Promise<{ async: LagResult; semi: LagResult; asyncTps: number; semiTps: number }> {
  const primary = await startMariaDB({ serverId: 11, extraArgs: DB_ARGS });
  const replica = await startMariaDB({ serverId: 12, extraArgs: DB_ARGS });
  try {
    await primary.query(
      "CREATE DATABASE b; CREATE TABLE b.lag (id INT PRIMARY KEY, v VARCHAR(10)); CREATE TABLE b.tp (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))",
    );
    await replica.query(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos; START SLAVE`,
    );
    await waitUntil(async () => (await replica.query<unknown[]>("SHOW TABLES FROM b")).length === 2, {
      timeoutMs: 30_000,
      what: "the replica to copy the schema",
    });
    const ins = poolInserter(primary, "b.tp");
    const asyncLag = await measureLag(primary, replica, "b.lag", 1);
    const asyncTps = await throughputRuns(ins);
    await caughtUp(primary, replica);
    await primary.query("SET GLOBAL rpl_semi_sync_master_enabled = ON, GLOBAL rpl_semi_sync_master_timeout = 10000");
    await replica.query("SET GLOBAL rpl_semi_sync_slave_enabled = ON; STOP SLAVE IO_THREAD; START SLAVE IO_THREAD");
    await waitUntil(
      async () =>
        (await primary.query<Array<{ Value: string }>>("SHOW STATUS LIKE 'Rpl_semi_sync_master_clients'"))[0]?.Value ===
        "1",
      {
        timeoutMs: 30_000,
        what: "the replica to connect semi-synchronously",
      },
    );
    const semiLag = await measureLag(primary, replica, "b.lag", 1_000_000);
    const semiTps = await throughputRuns(ins);
    await caughtUp(primary, replica);
    const [st] = await primary.query<Array<{ Value: string }>>("SHOW STATUS LIKE 'Rpl_semi_sync_master_no_tx'");
    if (Number(st?.Value) > 0)
      console.warn(`note: ${st!.Value} transactions fell back to async during the semi-sync run`);
    await ins.end();
    return { async: asyncLag, semi: semiLag, asyncTps: median(asyncTps), semiTps: median(semiTps) };
  } finally {
    await replica.stop();
    await primary.stop();
  }
}

async function wolf(): Promise<{ lag: LagResult; none: number; one: number; capture: number; apiLag: LagResult }> {
  const c = await LocalScaleCluster.create({ nodes: 2, ack: "one", logLevel: "warn" });
  try {
    await c.startAll();
    const leader = await c.waitLeader();
    const follower = c.nodes.find((n) => n.id !== leader)!;
    const ok = async (p: Promise<{ status: number; body: unknown }>) => {
      const r = await p;
      if (r.status !== 200) throw new Error(`wolf API: ${r.status} ${JSON.stringify(r.body)}`);
    };
    await ok(
      c.api(leader, "POST", "/sql", {
        sql: "CREATE DATABASE b; CREATE TABLE b.lag (id INT PRIMARY KEY, v VARCHAR(10)); CREATE TABLE b.tp (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(40))",
      }),
    );
    await c.waitConverged();
    const lag = await measureLag(c.node(leader).db, follower.db, "b.lag", 1);
    // The same through the API (ack=one: the answer comes once the follower holds the entry durably).
    const r = await mysql.createConnection({ socketPath: follower.db.socket, user: "root" });
    const apiLags: number[] = [];
    for (let i = 0; i < Math.min(INSERTS, 200); i++) {
      const id = 2_000_000 + i;
      await ok(c.api(leader, "POST", "/write/insert", { table: "b.lag", values: { id, v: "x" } }));
      const t0 = performance.now();
      for (;;) {
        const [rows] = await r.query("SELECT 1 FROM b.lag WHERE id = ?", [id]);
        if ((rows as unknown[]).length) break;
      }
      apiLags.push(performance.now() - t0);
    }
    await r.end();
    const viaApi = (ack: string) => async (cl: number, i: number) => {
      await ok(
        c.api(leader, "POST", "/write/insert", { table: "b.tp", values: { v: `${ack}c${cl}i${i}` } }, 15_000, {
          "x-wolf-ack": ack,
        }),
      );
    };
    const none: number[] = [];
    const one: number[] = [];
    const cap: number[] = [];
    const direct = poolInserter(c.node(leader).db, "b.tp");
    for (let run = 0; run < RUNS; run++) {
      none.push(await measureThroughput(viaApi("none")));
      one.push(await measureThroughput(viaApi("one")));
      direct.next();
      cap.push(await measureThroughput(direct.insert));
    }
    await direct.end();
    await c.waitConverged(120_000);
    const sums = await Promise.all(c.nodes.map((n) => c.checksums(n.id, ["b.lag", "b.tp"])));
    if (JSON.stringify(sums[0]) !== JSON.stringify(sums[1]))
      throw new Error(`wolf nodes differ after the benchmark: ${JSON.stringify(sums)}`);
    return {
      lag,
      none: median(none),
      one: median(one),
      capture: median(cap),
      apiLag: { p50: pct(apiLags, 50), p99: pct(apiLags, 99) },
    };
  } finally {
    await c.close();
  }
}

await ensureBuilt();
console.log(
  `scale replication: ${INSERTS} single-row inserts for lag, ${CLIENTS} clients × ${SECONDS} s for throughput, median of ${RUNS} runs`,
);
const n = await native();
const w = await wolf();
const f = (x: number) => x.toFixed(2);
const rows: string[][] = [
  ["", "lag p50 ms", "lag p99 ms", "inserts/s", "vs peer"],
  ["MariaDB async replication", f(n.async.p50), f(n.async.p99), n.asyncTps.toFixed(0), "(peer)"],
  ["MariaDB semi-sync", f(n.semi.p50), f(n.semi.p99), n.semiTps.toFixed(0), "(peer)"],
  [
    "wolf capture→apply (direct writes)",
    f(w.lag.p50),
    f(w.lag.p99),
    w.capture.toFixed(0),
    `lag ${f(w.lag.p50 / n.async.p50)}x, ${f(w.capture / n.asyncTps)}x async`,
  ],
  ["wolf API ack=none", "", "", w.none.toFixed(0), `${f(w.none / n.asyncTps)}x async`],
  ["wolf API ack=one", f(w.apiLag.p50), f(w.apiLag.p99), w.one.toFixed(0), `${f(w.one / n.semiTps)}x semi-sync`],
];
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows)
  console.log(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "));
console.log(
  "(wolf API ack=one lag: API answer → row visible on the follower; the follower already holds the entry in its WAL when the client gets OK)",
);
