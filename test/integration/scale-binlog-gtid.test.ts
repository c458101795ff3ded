/**
 * Binlog mode, exact GTID sets, against real MariaDB:
 *
 *  1. Capture start: a direct write committed right after a new leader read its binlog state (the
 *     interleaving is forced: the test commits between the read and the start of capture) is
 *     captured exactly once, and nothing is reported missing. The old start (check the state, then
 *     read the position) is replayed on the same server for contrast: it skips such a write, and
 *     the exact sets still name it after a later transaction was captured.
 *  2. Divergence with `dist/wolf`: direct writes into a follower's MariaDB — one plain, one with
 *     SET server_id as a mysqlbinlog replay does — make that node NeedsMigration once the cluster
 *     moves on, with a message naming both GTIDs.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { MemoryLogStore } from "../../lib/cluster/log-store.ts";
import { waitUntil } from "../../lib/common/wait.ts";
import { BinlogCapture } from "../../lib/scale/binlog/capture.ts";
import { formatGtid } from "../../lib/scale/binlog/events.ts";
import { binlogSnapshot } from "../../lib/scale/db.ts";
import { encodeMarker } from "../../lib/scale/marker.ts";
import {
  type Baseline,
  coverOf,
  extrasOf,
  formatOwn,
  originMessage,
  planCaptureStart,
  scanOwnRef,
} from "../../lib/scale/origin.ts";
import { ensureBuilt, type MariaDBInstance, startMariaDB } from "../harness/index.ts";
import { LocalScaleCluster } from "../bench/scale-replication/local-cluster.ts";

const haveMariaDB = Bun.which("mariadbd") !== null;
let db: MariaDBInstance | undefined;
let c: LocalScaleCluster | undefined;

afterAll(async () => {
  await c?.close();
  await db?.stop();
});

async function state(d: MariaDBInstance): Promise<string> {
  return ((await d.query<Array<{ s: string }>>("SELECT @@gtid_binlog_state AS s"))[0]!.s ?? "").trim();
}

/** One direct write; returns its GTID (the session's last). */
async function directWrite(d: MariaDBInstance, k: string, prefix = ""): Promise<string> {
  const rows = await d.query<Array<Array<{ g: string }>>>(
    `${prefix}INSERT INTO app.direct (k) VALUES ('${k}'); SELECT @@last_gtid AS g`,
  );
  return rows[rows.length - 1]![0]!.g;
}

/** A leader's capture as LeaderCapture runs it: marker first, then each transaction one entry. */
function startCapture(d: MariaDBInstance, store: MemoryLogStore, resume: string, own: string) {
  const gtids: string[] = [];
  store.append([
    {
      lsn: store.lastLsn() + 1,
      term: 1,
      kind: "data",
      data: encodeMarker({ v: 1, node: 1, term: 1, serverId: 1, api: "http://x:1", pos: resume, own, at: 0 }),
    },
  ]);
  const capture = new BinlogCapture({
    connect: { socketPath: d.socket, user: "root" },
    serverId: 4242,
    resumeFrom: resume,
    heartbeatMs: 200,
    reconnectMs: 100,
    sink: async (data, txn) => {
      const lsn = store.lastLsn() + 1;
      store.append([{ lsn, term: 1, kind: "data", data }]);
      gtids.push(formatGtid(txn.gtid));
      return lsn;
    },
  });
  capture.start();
  return { capture, gtids };
}

describe.skipIf(!haveMariaDB)("wolf scale binlog mode: exact GTID sets", () => {
  test("a direct write committed between reading the binlog state and starting capture is captured exactly once", async () => {
    db = await startMariaDB({ serverId: 1, extraArgs: ["--log-bin=mysql-bin", "--binlog-format=ROW"] });
    const connect = { socketPath: db.socket, user: "root" };
    await db.query(
      "CREATE DATABASE app; CREATE TABLE app.direct (k VARCHAR(64) PRIMARY KEY, at DATETIME(6) NOT NULL DEFAULT NOW(6)) ENGINE=InnoDB",
    );
    await directWrite(db, "before");
    // The node's first start: what its binlog held then is its baseline (ScaleFsm.open).
    const start = await state(db);
    const baseline: Baseline = { lsn: 0, own: formatOwn(coverOf(start)), pos: start };
    const store = new MemoryLogStore();

    // Activation: one snapshot, then (forced here) a direct write, then the check and the start.
    const snap = await binlogSnapshot(connect);
    const between = await directWrite(db, "between");
    const ref = scanOwnRef(store, 1, 1, baseline);
    const extras = extrasOf(snap.state, ref);
    const plan = planCaptureStart(snap, { extras, ref, message: originMessage(extras) });
    if ("diverged" in plan) throw new Error(`unexpected: ${plan.diverged}`);
    expect(plan.resume).toBe(snap.pos);
    const { capture, gtids } = startCapture(db, store, plan.resume, plan.own);
    try {
      const after = await directWrite(db, "after");
      await waitUntil(() => gtids.includes(after), { timeoutMs: 20_000, what: `capture of ${after}` });
      expect(gtids).toEqual([between, after]);
    } finally {
      await capture.stop();
    }
    // Nothing in the binlog the log lacks.
    const now = await state(db);
    expect(extrasOf(now, scanOwnRef(store, 1, 1, baseline)).toString()).toBe("");
    console.log(`[scale-binlog-gtid] snapshot ${snap.pos}; ${between} committed before capture started: captured once`);
  }, 120_000);

  test("the old start (state, then position) skipped such a write; exact sets name it after later captures", async () => {
    const d = db!;
    const store = new MemoryLogStore();
    const checked = await state(d); // the origin check's read
    const skipped = await directWrite(d, "old-between");
    const pos = ((await d.query<Array<{ p: string }>>("SELECT @@gtid_binlog_pos AS p"))[0]!.p ?? "").trim();
    const { capture, gtids } = startCapture(d, store, pos, formatOwn(coverOf(checked)));
    let later: string;
    try {
      later = await directWrite(d, "old-after");
      await waitUntil(() => gtids.includes(later), { timeoutMs: 20_000, what: `capture of ${later}` });
      expect(gtids).toEqual([later]); // the write between the reads never reached the log
    } finally {
      await capture.stop();
    }
    // The highest captured seq (later) is above it, yet the set difference finds it, by GTID.
    const extras = extrasOf(await state(d), scanOwnRef(store, 1, 1, undefined));
    expect(extras.toString()).toBe(skipped);
    expect(originMessage(extras)).toContain(`GTID ${skipped}`);
  }, 60_000);

  test("direct writes into a follower's MariaDB (also under another server_id) make it NeedsMigration, named by GTID", async () => {
    await ensureBuilt();
    c = await LocalScaleCluster.create({ nodes: 3, ack: "one", heartbeatMs: 200 });
    const cl = c;
    for (const n of cl.nodes) cl.configure(n.id, "replication", ['mode = "binlog"']);
    try {
      await cl.startAll();
      const leader = await cl.waitLeader();
      const follower = cl.nodes.find((n) => n.id !== leader)!;
      const api = (sql: string) => cl.api<{ ok: boolean; error?: string }>(leader, "POST", "/sql", { sql });
      expect(
        (await api("CREATE DATABASE app; CREATE TABLE app.t (k VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB")).status,
      ).toBe(200);
      await cl.waitConverged();
      // An application writing to the wrong node; and a binlog replayed there with mysqlbinlog,
      // which sets the original server_id (invisible to a check that keeps only this server's GTIDs).
      const plain = await directWriteTo(follower.db, "INSERT INTO app.t VALUES ('wrong node')");
      const replayed = await directWriteTo(
        follower.db,
        "SET SESSION server_id = 77; INSERT INTO app.t VALUES ('replayed'); SET SESSION server_id = DEFAULT",
      );
      expect(replayed).toMatch(/^0-77-\d+$/);
      // The cluster moves on: the follower must not apply on top of them.
      expect((await api("INSERT INTO app.t VALUES ('next')")).status).toBe(200);
      const st = await waitUntil(
        async () => {
          const s = await cl.status(follower.id);
          return s?.state === "NeedsMigration" ? s : undefined;
        },
        { timeoutMs: 30_000, what: `node ${follower.id} to be marked NeedsMigration` },
      );
      expect(st.diverged).toContain(plain);
      expect(st.diverged).toContain(replayed);
      expect(st.diverged).toContain("2 transaction(s)");
      // The other nodes carry on.
      const others = cl.nodes.filter((n) => n.id !== follower.id).map((n) => n.id);
      await cl.waitConverged(30_000, others);
      console.log(`[scale-binlog-gtid] node ${follower.id}: ${st.diverged}`);
    } catch (err) {
      for (const n of cl.nodes)
        console.error(
          `--- node ${n.id} ${JSON.stringify(await cl.status(n.id))} ---\n${n.proc?.output().slice(-4000) ?? ""}`,
        );
      throw err;
    }
  }, 180_000);
});

async function directWriteTo(d: MariaDBInstance, sql: string): Promise<string> {
  const results = await d.query<Array<Array<{ g: string }>>>(`${sql}; SELECT @@last_gtid AS g`);
  return results[results.length - 1]![0]!.g;
}
