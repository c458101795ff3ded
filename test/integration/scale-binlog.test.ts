/**
 * wolf scale in binlog mode, end to end: 3 MariaDB instances and 3 `dist/wolf scale start` nodes on
 * loopback.
 *
 *  1. Node 1's MariaDB holds data written before wolf is involved (schema, rows, a trigger, a
 *     procedure, a view). `wolf ctl scale binlog-setup` prints the [replication] snippet; node 1
 *     starts in binlog mode and captures from that position (a transaction written between the
 *     setup and the start is captured too). Nodes 2 and 3 join with empty databases and copy the
 *     existing data with `wolf ctl scale migrate --from 1` — from the leader. Then writes straight
 *     into node 1's MariaDB (as binlog-mode applications do) and through the API reach every node;
 *     CHECKSUM TABLE is identical on all three.
 *  2. Migrating from the leader while API writes and direct writes keep coming: every acknowledged
 *     or committed write is on every node exactly once (a tally bumped in the same transaction
 *     equals the key count), and the migrated nodes converge.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mysql from "mysql2/promise";
import { waitUntil } from "../../lib/common/wait.ts";
import { ensureBuilt, runWolfOnce } from "../harness/index.ts";
import { LocalScaleCluster } from "../bench/scale-replication/local-cluster.ts";

const haveMariaDB = Bun.which("mariadbd") !== null && Bun.which("mariadb-dump") !== null;
const SHOP_TABLES = ["shop.customers", "shop.orders", "shop.audit"];
const LOAD_TABLES = ["app.acked", "app.tally", "app.direct", "app.dtally"];
let c: LocalScaleCluster;

afterAll(async () => {
  await c?.close();
});

async function sql(node: number, body: Record<string, unknown>) {
  return c.api<{ ok: boolean; error?: string; lsn?: number }>(node, "POST", "/sql", body);
}

async function expectOk(p: Promise<{ status: number; body: { ok: boolean; error?: string } }>): Promise<void> {
  const r = await p;
  if (r.status !== 200) throw new Error(`API call failed (${r.status}): ${JSON.stringify(r.body)}`);
}

/** Runs a test body; on failure prints the tail of every node's log first. */
async function withLogs(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    for (const n of c.nodes) {
      console.error(
        `--- node ${n.id} (${n.proc?.running ? "running" : "stopped"}) ---\n${n.proc?.output().slice(-6000) ?? ""}`,
      );
      console.error(`[scale-binlog] node ${n.id} status: ${JSON.stringify(await c.status(n.id))}`);
    }
    throw err;
  }
}

async function migrate(id: number, from: number): Promise<string> {
  const r = await runWolfOnce(["ctl", "scale", "migrate", "--config", c.node(id).config, "--from", String(from)], {
    env: { NO_COLOR: "1" },
    timeoutMs: 120_000,
  });
  const out = `${r.stdout}${r.stderr}`;
  if (r.code !== 0 || !out.includes("migrated from"))
    throw new Error(`migrate of node ${id} from node ${from} failed (exit ${r.code}): ${out}`);
  return out.trim();
}

/** Every node converged and holds the same checksums as node 1. */
async function expectIdentical(tables: string[]): Promise<Record<string, unknown>> {
  await c.waitConverged(
    60_000,
    c.nodes.map((n) => n.id),
  );
  const sums = await Promise.all(c.nodes.map((n) => c.checksums(n.id, tables)));
  for (const s of sums.slice(1)) expect(s).toEqual(sums[0]!);
  return sums[0]!;
}

/** API writes to a random node: each inserts a unique key and bumps a tally in one transaction. */
function apiLoad(prefix: string, workers = 3) {
  const acked: string[] = [];
  let stop = false;
  const done = Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const node = c.nodes[(i + w) % c.nodes.length]!;
        const k = `${prefix}-${w}-${i}`;
        const r = await sql(node.id, {
          sql: `START TRANSACTION; INSERT INTO app.acked (k, at) VALUES ('${k}', NOW(6)); UPDATE app.tally SET n = n + 1 WHERE id = 1; COMMIT`,
        }).catch((err: Error) => ({ status: 0, body: { ok: false, error: err.message } }));
        if (r.status === 200) acked.push(k);
        else throw new Error(`API write ${k} to node ${node.id} failed (${r.status}): ${JSON.stringify(r.body)}`);
      }
    }),
  );
  return {
    acked,
    async stop() {
      stop = true;
      await done;
    },
  };
}

/** Writes straight into node 1's MariaDB, as a binlog-mode application does (wolf is not asked). */
function directLoad(prefix: string) {
  const committed: string[] = [];
  let stop = false;
  const done = (async () => {
    const conn = await mysql.createConnection({
      socketPath: c.node(1).db.socket,
      user: "root",
      multipleStatements: true,
    });
    try {
      for (let i = 0; !stop; i++) {
        const k = `${prefix}-${i}`;
        await conn.query(
          `START TRANSACTION; INSERT INTO app.direct (k, at, u) VALUES ('${k}', NOW(6), UUID()); UPDATE app.dtally SET n = n + 1 WHERE id = 1; COMMIT`,
        );
        committed.push(k);
      }
    } finally {
      await conn.end();
    }
  })();
  return {
    committed,
    async stop() {
      stop = true;
      await done;
    },
  };
}

/** On every node: each key is there once, and the tally bumped with it matches. */
async function expectExactlyOnce(table: string, tally: string, keys: string[]): Promise<void> {
  for (const n of c.nodes) {
    const have = new Set((await n.db.query<Array<{ k: string }>>(`SELECT k FROM ${table}`)).map((r) => r.k));
    const lost = keys.filter((k) => !have.has(k));
    expect({ node: n.id, table, lost }).toEqual({ node: n.id, table, lost: [] });
    const [t] = await n.db.query<Array<{ n: string; k: number }>>(
      `SELECT (SELECT n FROM ${tally} WHERE id = 1) AS n, (SELECT COUNT(*) FROM ${table}) AS k`,
    );
    expect({ node: n.id, table, tally: Number(t!.n) }).toEqual({ node: n.id, table, tally: Number(t!.k) });
  }
}

describe.skipIf(!haveMariaDB)("wolf scale: binlog mode, migrate from the leader", () => {
  beforeAll(async () => {
    await ensureBuilt();
    c = await LocalScaleCluster.create({ nodes: 3, ack: "one", heartbeatMs: 200 });
  }, 120_000);

  test("an existing database is adopted: followers copy it from the leader, direct and API writes reach them", async () => {
    await withLogs(async () => {
      const db1 = c.node(1).db;
      // The application's database before wolf: written straight into node 1's MariaDB.
      await db1.query(`CREATE DATABASE shop;
        CREATE TABLE shop.customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200) NOT NULL UNIQUE,
          created DATETIME(6) NOT NULL DEFAULT NOW(6), token CHAR(36) NOT NULL, score DOUBLE NOT NULL) ENGINE=InnoDB;
        CREATE TABLE shop.orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, amount DECIMAL(10,2) NOT NULL, note TEXT,
          placed DATETIME(6) NOT NULL, FOREIGN KEY (customer_id) REFERENCES shop.customers (id)) ENGINE=InnoDB;
        CREATE TABLE shop.audit (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, at DATETIME(6) NOT NULL, tag CHAR(36) NOT NULL) ENGINE=InnoDB;
        CREATE TRIGGER shop.customers_ai AFTER INSERT ON shop.customers FOR EACH ROW INSERT INTO shop.audit (customer_id, at, tag) VALUES (NEW.id, NOW(6), UUID());
        CREATE PROCEDURE shop.add_customers(n INT, label VARCHAR(50)) BEGIN
          DECLARE i INT DEFAULT 0;
          WHILE i < n DO INSERT INTO shop.customers (name, email, token, score) VALUES (CONCAT(label, ' ', i), CONCAT(label, '-', i, '-', UUID(), '@example.com'), UUID(), RAND()); SET i = i + 1; END WHILE;
        END;
        CREATE VIEW shop.big_orders AS SELECT * FROM shop.orders WHERE amount > 50;
        CALL shop.add_customers(150, 'before wolf');
        INSERT INTO shop.orders (customer_id, amount, note, placed) SELECT id, ROUND(RAND() * 100, 2), CONCAT('order of ', name), NOW(6) FROM shop.customers;`);

      const setup = await runWolfOnce(["ctl", "scale", "binlog-setup", "--config", c.node(1).config], {
        env: { NO_COLOR: "1" },
      });
      expect(setup.code).toBe(0);
      const snippet = setup.stdout.split("\n").filter((l) => /^\w+ = /.test(l));
      expect(snippet[0]).toBe('mode = "binlog"');
      expect(snippet[1]).toMatch(/^binlog_file = "mysql-bin\.\d+"$/);
      expect(snippet[2]).toMatch(/^binlog_position = \d+$/);
      expect(setup.stdout).toContain("[replication]");
      expect(setup.stdout).toContain("wolf ctl scale migrate --from");

      // Written after the setup printed its position, before wolf runs: capture must start before it.
      await db1.query("CALL shop.add_customers(3, 'between setup and start')");
      const [file, pos] = [/"(.+)"/.exec(snippet[1]!)![1]!, Number(snippet[2]!.split(" = ")[1])];
      const since = await db1.query<Array<{ Event_type: string }>>(`SHOW BINLOG EVENTS IN '${file}' FROM ${pos}`);
      const txnsSinceSetup = since.filter((e) => e.Event_type === "Gtid").length;
      expect(txnsSinceSetup).toBeGreaterThan(0);
      c.configure(1, "replication", snippet);
      await c.startNode(1, { bootstrap: true });
      expect(await c.waitLeader([1])).toBe(1);
      expect(c.node(1).proc!.output()).toContain(`binlog mode: first capture starts at ${file}:${pos}`);
      await waitUntil(async () => (await c.status(1))?.capture?.transactions === txnsSinceSetup, {
        timeoutMs: 10_000,
        what: `node 1 to capture the ${txnsSinceSetup} transaction(s) written since binlog-setup`,
      });
      await db1.query("CALL shop.add_customers(2, 'after start')");

      // Empty followers join (applying what is captured fails on them: they lack the schema) and
      // copy the existing data from the leader, concurrently.
      await Promise.all([c.startNode(2), c.startNode(3)]);
      // Right away, as an operator would: `migrate --from 1` waits for node 1's API address itself.
      const outs = await Promise.all([migrate(2, 1), migrate(3, 1)]);
      for (const o of outs) expect(o).toMatch(/resuming after LSN \d+/);
      await expectIdentical(SHOP_TABLES);
      for (const id of [2, 3]) {
        const rows = await c
          .node(id)
          .db.query<Array<{ label: string; n: number }>>(
            "SELECT SUBSTRING_INDEX(name, ' ', 2) AS label, COUNT(*) AS n FROM shop.customers GROUP BY label ORDER BY label",
          );
        expect(rows.map((r) => [r.label, Number(r.n)])).toEqual([
          ["after start", 2],
          ["before wolf", 150],
          ["between setup", 3],
        ]);
      }

      // Binlog mode: the application keeps writing straight into node 1's MariaDB...
      await db1.query("CALL shop.add_customers(20, 'direct')");
      await db1.query(`START TRANSACTION;
        INSERT INTO shop.orders (customer_id, amount, note, placed) SELECT id, 99.5, 'direct txn', NOW(6) FROM shop.customers WHERE name LIKE 'direct %';
        UPDATE shop.customers SET score = RAND() WHERE id % 7 = 0;
        COMMIT`);
      await db1.query("DELETE FROM shop.orders WHERE id % 13 = 0");
      await db1.query("ALTER TABLE shop.customers ADD COLUMN tier TINYINT NOT NULL DEFAULT 1");
      await db1.query("UPDATE shop.customers SET tier = 2 WHERE score > 0.5");
      // ...and through the API (sent to followers too: forwarded to the leader).
      await expectOk(sql(2, { sql: "CALL shop.add_customers(5, 'api')" }));
      await expectOk(
        c.api(3, "POST", "/write/insert", {
          table: "shop.orders",
          rows: [{ customer_id: 1, amount: 12.5, note: "api insert", placed: "2024-01-02 03:04:05.678901" }],
        }),
      );
      await expectOk(sql(3, { sql: "UPDATE shop.orders SET amount = amount + 1 WHERE note LIKE 'direct%'" }));
      const sums = await expectIdentical(SHOP_TABLES);
      expect(Object.values(sums).every((v) => v !== null)).toBe(true);
      const bigOrders = await db1.query("SELECT COUNT(*) AS n FROM shop.big_orders");
      for (const n of c.nodes) {
        expect(
          await n.db.query("SELECT COUNT(*) AS n FROM shop.customers WHERE name LIKE 'direct %' AND tier IN (1, 2)"),
        ).toEqual([{ n: 20 }]);
        expect(await n.db.query("SELECT COUNT(*) AS n FROM shop.customers WHERE name LIKE 'api %'")).toEqual([
          { n: 5 },
        ]);
        expect(await n.db.query("SELECT COUNT(*) AS n FROM shop.big_orders")).toEqual(bigOrders); // the view came with the dump
      }
      const st = await Promise.all(c.nodes.map((n) => c.status(n.id)));
      expect(st.map((s) => [s?.role, s?.state, s?.diverged, s?.applyError])).toEqual([
        ["leader", "Active", null, null],
        ["follower", "Active", null, null],
        ["follower", "Active", null, null],
      ]);
      console.log(
        `[scale-binlog] existing database adopted; nodes 2 and 3 migrated from the leader; direct and API writes converged (${outs.map((o) => /LSN (\d+)/.exec(o)?.[1]).join(", ")})`,
      );
    });
  }, 180_000);

  test("migrate from the leader under concurrent API and direct writes: nothing lost or duplicated", async () => {
    await withLogs(async () => {
      await expectOk(
        sql(1, {
          sql: `CREATE DATABASE app;
                CREATE TABLE app.acked (k VARCHAR(64) PRIMARY KEY, at DATETIME(6) NOT NULL) ENGINE=InnoDB;
                CREATE TABLE app.tally (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
                INSERT INTO app.tally VALUES (1, 0)`,
        }),
      );
      await c
        .node(1)
        .db.query(`CREATE TABLE app.direct (k VARCHAR(64) PRIMARY KEY, at DATETIME(6) NOT NULL, u CHAR(36) NOT NULL) ENGINE=InnoDB;
        CREATE TABLE app.dtally (id INT PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB;
        INSERT INTO app.dtally VALUES (1, 0)`);
      await c.waitConverged();
      const api = apiLoad("a");
      const direct = directLoad("d");
      const during: Array<{ id: number; api: number; direct: number; out: string }> = [];
      try {
        await waitUntil(() => api.acked.length >= 50 && direct.committed.length >= 50, {
          timeoutMs: 30_000,
          what: "writes before the migration",
        });
        for (const id of [3, 2]) {
          const before = { api: api.acked.length, direct: direct.committed.length };
          const out = await migrate(id, 1);
          during.push({ id, api: api.acked.length - before.api, direct: direct.committed.length - before.direct, out });
          const at = { api: api.acked.length, direct: direct.committed.length };
          await waitUntil(() => api.acked.length >= at.api + 30 && direct.committed.length >= at.direct + 30, {
            timeoutMs: 30_000,
            what: `writes after migrating node ${id}`,
          });
        }
      } finally {
        await Promise.all([api.stop(), direct.stop()]);
      }
      // The load really ran while each dump was taken.
      for (const d of during) expect(d.api + d.direct).toBeGreaterThan(0);
      await expectIdentical([...SHOP_TABLES, ...LOAD_TABLES]);
      await expectExactlyOnce("app.acked", "app.tally", api.acked);
      await expectExactlyOnce("app.direct", "app.dtally", direct.committed);
      console.log(
        `[scale-binlog] migrated from the leader under load: ${during.map((d) => `node ${d.id} (${d.api} API + ${d.direct} direct writes during it; ${/LSN \d+/.exec(d.out)?.[0]})`).join(", ")}; ` +
          `${api.acked.length} API + ${direct.committed.length} direct writes, each exactly once on every node`,
      );
    });
  }, 180_000);
});
