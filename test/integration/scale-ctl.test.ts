/**
 * `wolf ctl scale tune-mariadb` and `log-level` from the compiled binary, against a real MariaDB
 * and a real `wolf scale start --bootstrap` node (one node of LocalScaleCluster).
 *
 *  - tune-mariadb --dry-run lists suggestions and changes nothing (variables read before/after);
 *  - tune-mariadb applies the runtime ones (max_connections set low first is raised) and prints
 *    the my.cnf snippet;
 *  - log-level switches the running daemon to debug (its own debug line appears in its log) and
 *    back; a bad level is a usage error (exit 2) even with no daemon; no daemon is the clear
 *    "not running" error of the other verbs.
 *  - promote/demote on a 3-node cluster (issue 10): `wolf ctl scale promote 2` (sent to a follower,
 *    forwarded to the leader) answers once node 2 leads, and node 2 still leads 5 s later (no
 *    handback to node 1) and after node 1 restarted; list servers/status show the preference;
 *    `promote --clear` brings node 1 back; `demote --to 3` sticks too; promoting a node whose
 *    MariaDB is down says the move is pending and why (node 1, lowest among the rest, leads meanwhile),
 *    and node 2 takes over by itself once its database is back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { waitUntil } from "../../lib/common/wait.ts";
import { ensureBuilt, runWolfOnce } from "../harness/index.ts";
import { LocalScaleCluster } from "../bench/scale-replication/local-cluster.ts";

const haveMariaDB = Bun.which("mariadbd") !== null;
const MiB = 1024 * 1024;
let c: LocalScaleCluster;

beforeAll(async () => {
  if (!haveMariaDB) return;
  await ensureBuilt();
  c = await LocalScaleCluster.create({ nodes: 1 });
}, 300_000);

afterAll(async () => {
  await c?.close();
});

const ctl = (args: string[]) =>
  runWolfOnce(["ctl", "scale", ...args, "--config", c.node(1).config], { env: { NO_COLOR: "1" }, timeoutMs: 60_000 });

async function globals(): Promise<Record<string, string>> {
  const rows = await c
    .node(1)
    .db.query<Array<{ Variable_name: string; Value: string }>>(
      "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', 'innodb_buffer_pool_size', 'sync_binlog', 'max_allowed_packet', 'binlog_checksum')",
    );
  return Object.fromEntries(rows.map((r) => [r.Variable_name, r.Value]));
}

describe.skipIf(!haveMariaDB)("wolf ctl scale tune-mariadb", () => {
  test("--dry-run lists every suggestion with current, suggested and why, and changes nothing", async () => {
    await c.node(1).db.query("SET GLOBAL max_connections = 20");
    await c.node(1).db.query("SET GLOBAL sync_binlog = 0");
    const before = await globals();
    expect(before.max_connections).toBe("20");

    // --memory keeps the suggested buffer pool small on the test machine (512M → 128 MiB).
    const r = await ctl(["tune-mariadb", "--dry-run", "--memory", "512M"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^max_connections\s+20\s+44\s+change\s+API pool \(database\.pool_size = 16\)/m);
    expect(r.stdout).toMatch(
      /^sync_binlog\s+0\s+1\s+change\s+.*crash must not lose a commit the binlog already showed/m,
    );
    expect(r.stdout).toMatch(/^innodb_buffer_pool_size\s+64\.0 MiB\s+128\.0 MiB\s+change\s+.*one MariaDB per machine/m);
    for (const name of [
      "binlog_row_image",
      "binlog_checksum",
      "innodb_flush_log_at_trx_commit",
      "max_allowed_packet",
      "log_bin",
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^${name}\\s`, "m"));
    }
    expect(r.stdout).toContain("dry run: nothing changed");
    expect(r.stdout).toContain("  SET GLOBAL max_connections = 44");
    expect(r.stdout).toMatch(/^\[mariadb\]\nlog_bin = /m);
    expect(r.stdout).toContain("SET GLOBAL does not survive a MariaDB restart");

    expect(await globals()).toEqual(before);
  });

  test("without --dry-run the runtime settings are applied (max_connections raised), and a second run finds nothing to do", async () => {
    await c.node(1).db.query("SET GLOBAL max_connections = 20");
    const r = await ctl(["tune-mariadb", "--memory", "512M"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("applied: SET GLOBAL max_connections = 44");
    expect(r.stdout).toContain("applied: SET GLOBAL sync_binlog = 1");
    expect(r.stdout).toMatch(/^max_connections = 44$/m);
    expect(r.stdout).toMatch(/^innodb_buffer_pool_size = 128M$/m);

    const after = await globals();
    expect(after.max_connections).toBe("44");
    expect(after.sync_binlog).toBe("1");
    expect(Number(after.max_allowed_packet)).toBeGreaterThanOrEqual(64 * MiB);
    expect(Number(after.innodb_buffer_pool_size)).toBeGreaterThanOrEqual(128 * MiB);

    const again = await ctl(["tune-mariadb", "--dry-run", "--json", "--memory", "512M"]);
    expect(again.code).toBe(0);
    const j = JSON.parse(again.stdout) as {
      dryRun: boolean;
      suggestions: Array<{ name: string; ok: boolean; set?: string }>;
      applied: string[];
    };
    expect(j.dryRun).toBe(true);
    expect(j.applied).toEqual([]);
    expect(j.suggestions.filter((s) => s.set).map((s) => s.name)).toEqual([]);
    expect(j.suggestions.find((s) => s.name === "max_connections")?.ok).toBe(true);
  });

  test("a bad --memory is a usage error before connecting", async () => {
    const r = await ctl(["tune-mariadb", "--dry-run", "--memory", "lots"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('not a size: "lots"');
  });
});

describe.skipIf(!haveMariaDB)("wolf ctl scale log-level", () => {
  test("a bad level is a usage error (exit 2) naming the levels, before any request (no daemon running)", async () => {
    const r = await ctl(["log-level", "loud"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown log level "loud"');
    expect(r.stderr).toContain("silent, error, warn, info, debug, trace");
  });

  test("no daemon: the same clear error as the other verbs", async () => {
    const r = await ctl(["log-level", "debug"]);
    expect(r.code).toBe(9);
    expect(r.stderr).toContain("the wolf scale daemon is not running");
  });

  test("switches a running node to debug and back", async () => {
    const node = await c.startNode(1, { bootstrap: true });
    expect(node.output()).not.toContain("debug logging is on");

    const up = await ctl(["log-level", "debug"]);
    expect(up.stderr).toBe("");
    expect(up.code).toBe(0);
    expect(up.stdout).toContain("log level info → debug");
    // Only printed when the daemon's loggers really are at debug.
    await node.waitForOutput(/debug logging is on/);

    const json = await ctl(["log-level", "warn", "--json"]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual({ old: "debug", level: "warn" });

    const back = await ctl(["log-level", "INFO"]);
    expect(back.code).toBe(0);
    expect(back.stdout).toContain("log level warn → info");
    await node.waitForOutput(/log level warn → info/);

    const bad = await c.api<{ error: string }>(1, "POST", "/admin/log-level", { level: "loud" });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain('"level" must be one of');
  });
});

describe.skipIf(!haveMariaDB)("wolf ctl scale promote / demote (3 nodes)", () => {
  let c3: LocalScaleCluster;
  const ctl3 = (node: number, args: string[]) =>
    runWolfOnce(["ctl", "scale", ...args, "--config", c3.node(node).config], {
      env: { NO_COLOR: "1" },
      timeoutMs: 120_000,
    });

  /** Polls every running node for `ms`: each must name `leader` as leader the whole time. */
  async function keepsLeading(leader: number, ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const all = await Promise.all(c3.running().map((n) => c3.status(n.id)));
      for (const s of all) {
        if (s && s.leader !== leader) throw new Error(`node ${s.id} says node ${s.leader} leads, expected ${leader}`);
      }
      await Bun.sleep(100); // the polling interval of this observation, not a synchronisation
    }
  }

  beforeAll(async () => {
    await ensureBuilt();
    c3 = await LocalScaleCluster.create({ nodes: 3, heartbeatMs: 200 });
    await c3.startAll();
  }, 300_000);

  afterAll(async () => {
    await c3?.close();
  });

  test("promote 2 sticks: node 2 still leads 5 s later and after node 1 restarts; --clear gives it back to node 1", async () => {
    try {
      expect(await c3.waitLeader()).toBe(1);
      const r = await ctl3(3, ["promote", "2"]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^node 2 leads \(term \d+\); node 2 is the preferred leader$/m);
      expect(await c3.waitLeader()).toBe(2);
      await keepsLeading(2, 5_000);

      const list = await ctl3(1, ["list", "servers"]);
      expect(list.code).toBe(0);
      expect(list.stdout).toMatch(/^2\s+Active\s+leader \(preferred\)/m);
      expect(list.stdout).toContain("preferred leader: node 2; failback = auto");
      const status = await ctl3(3, ["status"]);
      expect(status.stdout).toContain("leadership  preferred node 2, failback auto");
      expect((await c3.api<{ preferredLeader: number }>(1, "GET", "/cluster")).body.preferredLeader).toBe(2);

      // Node 1 restarts: it reads the preference from its own log and does not take leadership back.
      await c3.node(1).proc!.stop();
      await c3.startNode(1);
      await waitUntil(async () => (await c3.status(1))?.leader === 2, {
        timeoutMs: 30_000,
        what: "the restarted node 1 to follow node 2",
      });
      await keepsLeading(2, 5_000);
      expect((await c3.api<{ preferredLeader: number }>(1, "GET", "/status")).body.preferredLeader).toBe(2);

      const clear = await ctl3(2, ["promote", "--clear"]);
      expect(clear.code).toBe(0);
      expect(clear.stdout).toContain("preferred leader cleared");
      await waitUntil(async () => (await c3.status(1))?.role === "leader", {
        timeoutMs: 30_000,
        what: "node 1 to lead again (automatic handback to the lowest ID)",
      });
      expect(await c3.waitLeader()).toBe(1);
    } catch (err) {
      for (const n of c3.nodes) console.error(`--- node ${n.id} ---\n${n.proc?.output().slice(-4000) ?? ""}`);
      throw err;
    }
  }, 180_000);

  test("demote --to 3 sticks (node 3 becomes the preferred leader); bad input is a usage error", async () => {
    expect(await c3.waitLeader()).toBe(1);
    const r = await ctl3(1, ["demote", "--to", "3"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^node 3 leads \(term \d+\); node 3 is the preferred leader$/m);
    await keepsLeading(3, 5_000);
    const bad = await ctl3(1, ["promote", "two"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('promote takes a node ID, got "two"');
    const both = await ctl3(1, ["promote", "2", "--clear"]);
    expect(both.code).toBe(2);
  }, 120_000);

  test("promote to a node whose MariaDB is down: the preference is set, the answer says the move is pending and why; it takes over once its database is back", async () => {
    expect(await c3.waitLeader()).toBe(3);
    await c3.node(2).db.kill();
    await waitUntil(async () => ((await c3.api<{ held: string[] }>(2, "GET", "/status")).body.held?.length ?? 0) > 0, {
      timeoutMs: 30_000,
      what: "node 2 to hold itself back (database down)",
    });
    const r = await ctl3(1, ["promote", "2"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^node 2 is the preferred leader, but leadership did not move: node 2 may not lead right now/m,
    );
    expect(r.stdout).toContain("it takes over by itself once it may lead and is caught up (failback = auto)");
    // Node 2 may not lead: the lowest-ID rule applies among the rest, so node 1 takes over.
    await waitUntil(async () => (await c3.status(1))?.role === "leader", {
      timeoutMs: 30_000,
      what: "node 1 to lead while the preferred node 2 may not",
    });
    await c3.node(2).db.restart();
    await waitUntil(async () => (await c3.status(2))?.role === "leader", {
      timeoutMs: 60_000,
      what: "node 2 to take over by itself once its MariaDB is back",
    });
    expect(await c3.waitLeader()).toBe(2);
  }, 180_000);
});
