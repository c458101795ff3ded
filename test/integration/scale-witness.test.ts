/**
 * Two-node wolf scale deployments, end to end with `dist/wolf` and real MariaDB on loopback:
 *
 *  1. 2 database nodes + a witness (`wolf scale start --witness`, no MariaDB at all): writes with
 *     ack = one are acknowledged; kill -9 of the leader's wolf → the other database node leads and
 *     acknowledges writes (the witness holds them); nothing acknowledged is lost once the old leader
 *     is back; the witness never leads for more than a moment; it refuses writes naming the leader.
 *     Then the witness alone holds the newest acknowledged write (node 2 was down, node 1 dies): it
 *     leads just long enough to bring node 2 up to date and hands over; the write survives.
 *  2. 2 nodes, default quorum: kill -9 of node 1 → a write to node 2 is refused, never "ok".
 *  3. 2 nodes, quorum = "never": kill -9 of node 1 → node 2 leads; a write with ack = one fails after
 *     ack_timeout_ms with the shortfall named; with ack_fallback = "async" it succeeds with
 *     "ack": "none" and wolf_scale_ack_fallbacks_total counts it.
 *
 * WOLF_TEST_CPU_HOG=N runs N `yes > /dev/null` processes beside the whole file (correctness must
 * not depend on a quiet machine); they are killed by PID afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { waitUntil } from "../../lib/common/wait.ts";
import { LocalScaleCluster } from "../bench/scale-replication/local-cluster.ts";
import { ensureBuilt, runWolf, runWolfOnce } from "../harness/index.ts";
import { dieWithParentPrefix, signalPid, trackPid, untrackPid } from "../harness/procs.ts";

const haveMariaDB = Bun.which("mariadbd") !== null && Bun.which("mariadb-dump") !== null;
const ACK_TIMEOUT_MS = 1500;

type Answer = { ok: boolean; error?: string; hint?: string; ack?: string; lsn?: number };

// ---- CPU hog -------------------------------------------------------------------------------------

const hogs: Array<{ pid: number; exited: Promise<number> }> = [];

function startCpuHog(): void {
  const n = Number(process.env.WOLF_TEST_CPU_HOG ?? 0);
  for (let i = 0; i < n; i++) {
    const p = Bun.spawn([...dieWithParentPrefix(), "yes"], { stdout: "ignore", stderr: "ignore", stdin: "ignore" });
    trackPid(p.pid, "yes (CPU hog)");
    hogs.push({ pid: p.pid, exited: p.exited });
  }
  if (n > 0) console.error(`[scale-witness] ${n} CPU hog process(es) running: ${hogs.map((h) => h.pid).join(", ")}`);
}

async function stopCpuHog(): Promise<void> {
  for (const h of hogs.splice(0)) {
    signalPid(h.pid, "SIGKILL");
    await h.exited; // reaped
    untrackPid(h.pid);
  }
}

beforeAll(async () => {
  await ensureBuilt();
  startCpuHog();
}, 300_000);
afterAll(async () => {
  await stopCpuHog();
});

// ---- helpers -------------------------------------------------------------------------------------

/** Replaces `key = …` in a node's config (the harness writes every key once). */
function setKey(c: LocalScaleCluster, id: number, key: string, value: string): void {
  const file = c.node(id).config;
  const text = readFileSync(file, "utf8");
  const re = new RegExp(`^${key} = .*$`, "m");
  if (!re.test(text)) throw new Error(`${key} is not in ${file}`);
  writeFileSync(file, text.replace(re, `${key} = ${value}`));
}

async function sql(c: LocalScaleCluster, node: number, body: Record<string, unknown>, ack?: string) {
  return c.api<Answer>(node, "POST", "/sql", body, 30_000, ack ? { "x-wolf-ack": ack } : {});
}

async function expectOk(p: Promise<{ status: number; body: Answer }>): Promise<Answer> {
  const r = await p;
  if (r.status !== 200 || !r.body.ok) throw new Error(`API call failed (${r.status}): ${JSON.stringify(r.body)}`);
  return r.body;
}

async function withLogs(c: LocalScaleCluster | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    for (const n of c?.nodes ?? [])
      console.error(
        `--- node ${n.id} (${n.proc?.running ? "running" : "stopped"}) ---\n${n.proc?.output().slice(-6000) ?? ""}`,
      );
    throw err;
  }
}

async function killWolf(c: LocalScaleCluster, id: number): Promise<void> {
  c.node(id).proc!.kill("SIGKILL");
  await c.node(id).proc!.waitForExit();
}

const TABLE = "CREATE DATABASE app; CREATE TABLE app.acked (k VARCHAR(64) PRIMARY KEY, at DATETIME(6) NOT NULL)";

/** Acknowledged-write load sent to `targets()` in turn; remembers what was acknowledged, and how. */
function ackedLoad(c: LocalScaleCluster, prefix: string, targets: () => number[]) {
  const acked: string[] = [];
  const acks = new Set<string>();
  /** Highest LSN acknowledged by each node. */
  const lsnBy = new Map<number, number>();
  let stop = false;
  const done = Promise.all(
    [0, 1].map(async (w) => {
      for (let i = 0; !stop; i++) {
        const nodes = targets();
        const node = nodes[(i + w) % nodes.length]!;
        const k = `${prefix}-${w}-${i}`;
        try {
          const r = await sql(c, node, { sql: `INSERT INTO app.acked (k, at) VALUES ('${k}', NOW(6))` });
          if (r.status === 200 && r.body.ok) {
            acked.push(k);
            acks.add(String(r.body.ack));
            lsnBy.set(node, Math.max(lsnBy.get(node) ?? 0, r.body.lsn ?? 0));
            continue;
          }
        } catch {
          // the node is being killed: no answer, outcome unknown (not counted as acknowledged)
        }
        await Bun.sleep(20); // client backoff after a failed request
      }
    }),
  );
  return {
    acked,
    acks,
    lsnBy,
    async stop() {
      stop = true;
      await done;
    },
  };
}

async function expectNoAckedLost(c: LocalScaleCluster, acked: string[], node: number): Promise<void> {
  const rows = await c.node(node).db.query<Array<{ k: string }>>("SELECT k FROM app.acked");
  const have = new Set(rows.map((r) => r.k));
  expect(acked.filter((k) => !have.has(k))).toEqual([]);
}

// ---- 1. two database nodes and a witness ----------------------------------------------------------

describe.skipIf(!haveMariaDB)("wolf scale: 2 database nodes + a witness", () => {
  let c: LocalScaleCluster;
  afterAll(async () => {
    await c?.close();
  });

  /** The witness: `wolf scale start --witness` with the [database] of a MariaDB that no longer exists. */
  async function startWitness(): Promise<void> {
    const n = c.node(3);
    n.proc = runWolf(["scale", "start", "--config", n.config, "--witness"], { env: { NO_COLOR: "1" } });
    const proc = n.proc;
    await waitUntil(
      async () => {
        if (!proc.running) throw new Error(`the witness exited during start:\n${proc.output().slice(-3000)}`);
        return (await c.status(3)) !== undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50, what: "the witness's API to answer" },
    );
  }

  test("the other database node takes over with the witness's vote; nothing acknowledged is lost", async () => {
    c = await LocalScaleCluster.create({ nodes: 3, ack: "one", heartbeatMs: 200 });
    await withLogs(c, async () => {
      await c.node(3).db.stop(); // a witness runs on a machine without MariaDB
      // The old leader's MariaDB may hold a transaction wolf never captured (killed right after the
      // commit, never acknowledged): it then replaces its data from the new leader by itself.
      c.configure(1, "replication", ["auto_migrate = true"]);
      await c.startNode(1, { bootstrap: true });
      await c.waitLeader([1]);
      await Promise.all([c.startNode(2), startWitness()]);
      await c.waitConverged(60_000, [1, 2, 3]);

      // What the witness says it is.
      const ws = (await c.api<Record<string, unknown>>(3, "GET", "/status")).body;
      expect(ws.witness).toBe(true);
      const status = await runWolfOnce(["scale", "status", "--config", c.node(3).config], { env: { NO_COLOR: "1" } });
      expect(status.stdout).toContain("witness     witness: votes and stores the log");
      const list = await runWolfOnce(["ctl", "scale", "list", "servers", "--config", c.node(1).config], {
        env: { NO_COLOR: "1" },
      });
      expect(list.code).toBe(0);
      expect(list.stdout).toMatch(/^1\*.*\bleader\b/m);
      await waitUntil(
        async () => {
          const r = await runWolfOnce(["ctl", "scale", "list", "servers", "--config", c.node(1).config], {
            env: { NO_COLOR: "1" },
          });
          return /^3\s.*\(witness\)/m.test(r.stdout) ? true : undefined; // registers every 2 s
        },
        { timeoutMs: 30_000, intervalMs: 500, what: "the leader to list node 3 as a witness" },
      );
      expect((await c.api(3, "GET", "/health")).status).toBe(200);
      expect(
        await (await fetch(`${c.node(3).api}/metrics`, { headers: { authorization: `Bearer ${c.token}` } })).text(),
      ).toContain('wolf_scale_witness{node="3"} 1');

      await expectOk(sql(c, 1, { sql: TABLE }));
      // A witness serves no SQL: it names the leader instead of forwarding.
      const refused = await sql(c, 3, { sql: "INSERT INTO app.acked (k, at) VALUES ('nope', NOW(6))" });
      expect(refused.status).toBe(503);
      expect(refused.body.ok).toBe(false);
      expect(refused.body.error).toContain("node 3 is a witness (no database)");
      expect(refused.body.error).toContain("the leader is node 1");
      expect((await sql(c, 3, { sql: "SELECT 1", read_only: true })).body.error).toContain("witness");
      expect((await c.api<Answer>(3, "GET", "/dump")).body.error).toContain("witness");

      // ack = one: acknowledged once node 2 or the witness holds the write.
      const first = await expectOk(sql(c, 1, { sql: "INSERT INTO app.acked (k, at) VALUES ('first', NOW(6))" }));
      expect(first.ack).toBe("one");

      // Watch the witness's role through the failover: it may lead only for a moment.
      let witnessLedSince: number | null = null;
      let witnessLongestMs = 0;
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const s = await c.status(3);
          const now = Date.now();
          if (s?.role === "leader") witnessLedSince ??= now;
          else if (s && witnessLedSince !== null) {
            witnessLongestMs = Math.max(witnessLongestMs, now - witnessLedSince);
            witnessLedSince = null;
          }
          await Bun.sleep(20); // sampling period of the observer, not synchronisation
        }
      })();

      const running = () => [1, 2].filter((id) => c.node(id).proc?.running);
      const load = ackedLoad(c, "w", running);
      await waitUntil(() => load.acked.length >= 40, { timeoutMs: 60_000, what: "40 acknowledged writes" });
      const killedAt = Date.now();
      await killWolf(c, 1);
      const leader = await c.waitLeader([2, 3], 60_000);
      const failoverMs = Date.now() - killedAt;
      expect(leader).toBe(2);
      const before = load.acked.length;
      await waitUntil(() => load.acked.length >= before + 40, {
        timeoutMs: 60_000,
        what: "40 writes acknowledged by node 2 while node 1 is down",
      });
      await load.stop();
      expect([...load.acks]).toEqual(["one"]); // never an ack level that was not reached
      // Node 1 is down: the witness is the follower that made those acknowledgements true.
      expect((await c.status(3))!.lastLsn).toBeGreaterThanOrEqual(load.lsnBy.get(2) ?? Infinity);
      await expectNoAckedLost(c, ["first", ...load.acked], 2);

      // The old leader returns: it catches up (or replaces its data by itself) and nothing is lost.
      await c.startNode(1);
      await waitUntil(
        async () => {
          const all = await Promise.all([1, 2, 3].map((id) => c.status(id)));
          const lead = all.find((s) => s?.role === "leader");
          return lead && all.every((s) => s && !s.diverged && s.state === "Active" && s.appliedLsn >= lead.lastLsn)
            ? true
            : undefined;
        },
        { timeoutMs: 120_000, what: "node 1 to be back and every node to have applied everything" },
      );
      for (const id of [1, 2]) await expectNoAckedLost(c, ["first", ...load.acked], id);
      watching = false;
      await watcher;
      if (witnessLedSince !== null) witnessLongestMs = Math.max(witnessLongestMs, Date.now() - witnessLedSince);
      expect((await c.status(3))?.role).not.toBe("leader");
      expect(witnessLongestMs).toBeLessThan(10_000);
      console.error(
        `[scale-witness] witness: ${load.acked.length + 1} writes acknowledged (ack = one), failover to node 2 in ${failoverMs} ms, the witness led for at most ${witnessLongestMs} ms`,
      );
    });
  }, 420_000);

  test("a witness holding the newest write leads only to bring the other database node up to date", async () => {
    await withLogs(c, async () => {
      // Node 1 leads (the lowest ID gets leadership back); node 2 goes down: only the witness
      // holds the next acknowledged write besides node 1, and then node 1 dies too.
      await waitUntil(async () => (await c.status(1))?.writable === true, {
        timeoutMs: 60_000,
        what: "node 1 to lead again",
      });
      await c.waitConverged(60_000, [1, 2, 3]);
      await killWolf(c, 2);
      const only = await expectOk(sql(c, 1, { sql: "INSERT INTO app.acked (k, at) VALUES ('witness-only', NOW(6))" }));
      expect(only.ack).toBe("one");
      expect((await c.status(3))!.lastLsn).toBeGreaterThanOrEqual(only.lsn!);
      await killWolf(c, 1);
      const witnessLogBefore = c.node(3).proc!.output().length;
      // Node 2 lacks that entry: it cannot win without the witness's vote, which goes only to a log
      // as complete as the witness's. So the witness leads, sends it over, and hands leadership on.
      const t0 = Date.now();
      await c.startNode(2);
      expect(await c.waitLeader([2, 3], 60_000)).toBe(2);
      const tookMs = Date.now() - t0;
      const witnessLog = c.node(3).proc!.output().slice(witnessLogBefore);
      expect(witnessLog).toMatch(/handing leadership over to node 2 \(this node only stands in/);
      expect((await c.status(3))?.role).not.toBe("leader");
      await waitUntil(
        async () =>
          (await c.node(2).db.query<unknown[]>("SELECT k FROM app.acked WHERE k = 'witness-only'")).length === 1,
        { timeoutMs: 30_000, what: "node 2 to apply the write only the witness held" },
      );
      expect((await expectOk(sql(c, 2, { sql: "INSERT INTO app.acked VALUES ('after', NOW(6))" }))).ack).toBe("one");
      await c.startNode(1);
      await c.waitConverged(120_000, [1, 2, 3]);
      for (const id of [1, 2]) await expectNoAckedLost(c, ["witness-only", "after"], id);
      console.error(
        `[scale-witness] witness led to bring node 2 up to date; node 2 writable ${tookMs} ms after its start`,
      );
    });
  }, 300_000);
});

// ---- 2. two nodes, default quorum -----------------------------------------------------------------

describe.skipIf(!haveMariaDB)("wolf scale: 2 nodes, default quorum", () => {
  let c: LocalScaleCluster;
  afterAll(async () => {
    await c?.close();
  });

  test("with one node gone, a write is refused with a clear error, never acknowledged", async () => {
    c = await LocalScaleCluster.create({ nodes: 2, ack: "one", heartbeatMs: 200 });
    await withLogs(c, async () => {
      for (const id of [1, 2]) setKey(c, id, "ack_timeout_ms", String(ACK_TIMEOUT_MS));
      await c.startAll();
      await expectOk(sql(c, 1, { sql: TABLE }));
      expect((await expectOk(sql(c, 2, { sql: "INSERT INTO app.acked VALUES ('both', NOW(6))" }))).ack).toBe("one");
      await killWolf(c, 1);
      // Right after the kill node 2 may still think node 1 leads, later there is no leader: every
      // attempt over a few election timeouts must fail, and say why.
      const answers: Array<{ status: number; body: Answer }> = [];
      const until = Date.now() + 8000;
      while (Date.now() < until)
        answers.push(await sql(c, 2, { sql: "INSERT INTO app.acked VALUES (UUID(), NOW(6))" }));
      expect(answers.length).toBeGreaterThan(0);
      for (const a of answers) {
        expect(a.body.ok).toBe(false);
        expect(a.status).toBe(503);
        expect(a.body.error).toMatch(/leader|not acknowledged/);
      }
      const s = await c.status(2);
      expect(s?.role).not.toBe("leader");
      console.error(
        `[scale-witness] default quorum: ${answers.length} writes to the survivor refused, e.g. ${JSON.stringify(answers.at(-1)!.body.error)}`,
      );
    });
  }, 300_000);
});

// ---- 3. two nodes, quorum = "never" ------------------------------------------------------------

describe.skipIf(!haveMariaDB)('wolf scale: 2 nodes, quorum = "never"', () => {
  let c: LocalScaleCluster;
  afterAll(async () => {
    await c?.close();
  });

  test("the survivor leads; ack = one fails after ack_timeout_ms, or with ack_fallback = async says ack none", async () => {
    c = await LocalScaleCluster.create({ nodes: 2, ack: "one", heartbeatMs: 200 });
    await withLogs(c, async () => {
      for (const id of [1, 2]) {
        setKey(c, id, "ack_timeout_ms", String(ACK_TIMEOUT_MS));
        c.configure(id, "cluster", ['quorum = "never"']);
      }
      await c.startAll();
      await expectOk(sql(c, 1, { sql: TABLE }));
      await killWolf(c, 1);
      expect(await c.waitLeader([2], 60_000)).toBe(2);

      const t0 = Date.now();
      const failed = await sql(c, 2, { sql: "INSERT INTO app.acked VALUES ('alone', NOW(6))" });
      const waitedMs = Date.now() - t0;
      expect(failed.body.ok).toBe(false);
      expect(failed.status).toBe(503);
      expect(failed.body.error).toContain("not acknowledged (ack=one)");
      expect(failed.body.error).toContain("only 0 of 1 required follower hold it");
      expect(failed.body.error).toContain(
        "nothing was lost on this node, but the write may or may not survive a failover",
      );
      expect(waitedMs).toBeGreaterThanOrEqual(ACK_TIMEOUT_MS - 50);
      // ack = none asks for nothing more than the leader's own copy.
      expect((await expectOk(sql(c, 2, { sql: "INSERT INTO app.acked VALUES ('none', NOW(6))" }, "none"))).ack).toBe(
        "none",
      );

      // ack_fallback = "async": the write succeeds and says the level it actually reached.
      await c.node(2).proc!.stop();
      c.configure(2, "replication", ['ack_fallback = "async"']);
      await c.startNode(2);
      expect(await c.waitLeader([2], 60_000)).toBe(2);
      const fallback = await expectOk(sql(c, 2, { sql: "INSERT INTO app.acked VALUES ('fallback', NOW(6))" }));
      expect(fallback.ack).toBe("none");
      const metrics = await (
        await fetch(`${c.node(2).api}/metrics`, { headers: { authorization: `Bearer ${c.token}` } })
      ).text();
      expect(metrics).toContain('wolf_scale_ack_fallbacks_total{node="2"} 1');
      expect(c.node(2).proc!.output()).toMatch(/answered with ack = none instead of one/);
      console.error(
        `[scale-witness] quorum never: ack = one failed after ${waitedMs} ms (ack_timeout_ms ${ACK_TIMEOUT_MS}); with ack_fallback = async answered "ack": "${fallback.ack}"`,
      );
    });
  }, 300_000);
});
