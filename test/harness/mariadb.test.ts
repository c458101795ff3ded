import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { execArgv, pidAlive, runDir } from "./procs.ts";
import { startMariaDB, type MariaDBInstance } from "./mariadb.ts";
import { TestNet, hasNetnsSupport } from "./netns.ts";

const haveMariaDB = Bun.which("mariadbd") !== null && Bun.which("mariadb-install-db") !== null;
if (!haveMariaDB) console.warn("[skip] MariaDB harness tests: mariadbd / mariadb-install-db not installed");

/** Everything started here, stopped in afterAll even when a test fails half-way. */
const started: MariaDBInstance[] = [];
async function start(...args: Parameters<typeof startMariaDB>): Promise<MariaDBInstance> {
  const db = await startMariaDB(...args);
  started.push(db);
  return db;
}
afterAll(async () => {
  await Promise.all(started.map((db) => db.stop()));
});

describe.skipIf(!haveMariaDB)("startMariaDB", () => {
  test("two concurrent instances on different ports are isolated, and stop() leaves nothing", async () => {
    const t0 = performance.now();
    const [one, two] = await Promise.all([start(), start()]);
    console.log(`two instances ready in ${Math.round(performance.now() - t0)} ms`);
    expect(one.port).not.toBe(two.port);
    expect(one.datadir).not.toBe(two.datadir);
    expect(pidAlive(one.pid) && pidAlive(two.pid)).toBe(true);

    await one.query("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)");
    await one.query("INSERT INTO app.t VALUES (?, ?)", [1, "only in one"]);
    expect(await one.query("SELECT v FROM app.t")).toEqual([{ v: "only in one" }]);
    expect(await two.query("SHOW DATABASES LIKE 'app'")).toEqual([]);

    // TCP on the advertised host/port reaches the same server as the socket.
    const viaTcp = await execArgv([
      "mariadb",
      "--no-defaults",
      "-h",
      one.host,
      "-P",
      String(one.port),
      "-uroot",
      "-N",
      "-e",
      "SELECT v FROM app.t",
    ]);
    expect(viaTcp.stdout.trim()).toBe("only in one");

    const pids = [one.pid, two.pid];
    const dirs = [one.dir, two.dir];
    await Promise.all([one.stop(), two.stop()]);
    for (const pid of pids) expect(pidAlive(pid)).toBe(false);
    for (const dir of dirs) expect(existsSync(dir)).toBe(false);
    expect(one.running).toBe(false);
    await one.stop(); // idempotent
    await expect(one.query("SELECT 1")).rejects.toThrow(/not running/);
  });

  test("extraArgs and serverId reach mariadbd; kill() crashes it and restart() recovers committed data", async () => {
    const db = await start({ serverId: 42, extraArgs: ["--log-bin=binlog", "--binlog-format=ROW"] });
    const [vars] = await db.query<{ log_bin: number; fmt: string; sid: number }[]>(
      "SELECT @@log_bin AS log_bin, @@binlog_format AS fmt, @@server_id AS sid",
    );
    expect(vars).toEqual({ log_bin: 1, fmt: "ROW", sid: 42 });

    await db.query("CREATE DATABASE crash; CREATE TABLE crash.t (id INT PRIMARY KEY) ENGINE=InnoDB");
    await db.query("INSERT INTO crash.t VALUES (1), (2)"); // autocommit: durable before kill
    const oldPid = db.pid;
    await db.kill();
    expect(pidAlive(oldPid)).toBe(false);
    expect(db.running).toBe(false);
    expect(existsSync(db.datadir)).toBe(true);

    await db.restart();
    expect(db.pid).not.toBe(oldPid);
    expect(await db.query("SELECT COUNT(*) AS n FROM crash.t")).toEqual([{ n: 2 }]);
    await db.stop();
    expect(existsSync(db.dir)).toBe(false);
  });

  test("a server that cannot start fails with its error log, and leaves nothing behind", async () => {
    const t0 = performance.now();
    const err = await startMariaDB({ extraArgs: ["--no-such-option-for-wolf-tests"] }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/exited with code .*\n.*no-such-option-for-wolf-tests/s);
    expect(performance.now() - t0).toBeLessThan(10_000);
    const leftovers = readdirSync(runDir()).filter(
      (n) => n.startsWith("mariadb-") && !started.some((db) => db.dir.endsWith(n)),
    );
    expect(leftovers).toEqual([]);
    expect(readdirSync(join(runDir(), "pids"))).toEqual([]); // its PID is no longer tracked: it is gone
  });
});

describe.skipIf(!haveMariaDB || !hasNetnsSupport())("startMariaDB in a namespace", () => {
  test("serves other hosts on the LAN over TCP as root@'%'", async () => {
    const net = await TestNet.create();
    try {
      const [dbHost, client] = await Promise.all([net.addHost("db"), net.addHost("app")]);
      const db = await start({ netns: dbHost.ns, port: 3306 });
      try {
        expect(db.netns).toBe(dbHost.ns);
        await db.query("CREATE DATABASE shop");
        const r = await client.exec([
          "mariadb",
          "--no-defaults",
          "-h",
          dbHost.ip,
          "-P",
          "3306",
          "-uroot",
          "-N",
          "-e",
          "SHOW DATABASES LIKE 'shop'",
        ]);
        expect(r.stderr).toBe("");
        expect(r.stdout.trim()).toBe("shop");
        // Not reachable from the root namespace: the server really lives inside the namespace.
        const fromRoot = await execArgv([
          "mariadb",
          "--no-defaults",
          "-h",
          dbHost.ip,
          "-P",
          "3306",
          "-uroot",
          "--connect-timeout=1",
          "-e",
          "SELECT 1",
        ]);
        expect(fromRoot.code).not.toBe(0);
      } finally {
        await db.stop();
      }
    } finally {
      await net.destroy();
    }
  });
});
