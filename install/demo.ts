/**
 * The README's demo: builds dist/wolf and walks through what works, using the binary exactly as a
 * user would: configs, a local wolf scale cluster (3 MariaDB + 3 nodes), a mounted wolf disk drive,
 * and a 3-node wolf net mesh in network namespaces. Every step cleans up after itself, also when
 * it fails. `bun install/demo.ts scale net` runs only the named steps.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { demoDisk } from "./demo-disk.ts";
import { demoNet } from "./demo-net.ts";

const root = join(import.meta.dir, "..");
const wolf = join(root, "dist", "wolf");

function title(text: string): void {
  process.stdout.write(`\n=== ${text} ===\n`);
}

function run(args: string[], opts: { allowFail?: boolean } = {}): string {
  process.stdout.write(`$ wolf ${args.join(" ")}\n`);
  const result = spawnSync(wolf, args, { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
  process.stdout.write(result.stdout);
  process.stdout.write(result.stderr);
  if (result.status !== 0 && !opts.allowFail) throw new Error(`wolf ${args.join(" ")} exited with ${result.status}`);
  return result.stdout;
}

function basicsDemo(): void {
  title("wolf --help");
  run(["--version"]);
  run(["--help"]);

  const dir = mkdtempSync(join(tmpdir(), "wolf-demo-"));
  try {
    title("a generated config");
    const file = join(dir, "scale.toml");
    run(["scale", "init", "--config", file, "--node-id", "1"]);
    process.stdout.write(readFileSync(file, "utf8"));
    run(["scale", "validate", "--config", file]);

    title("a typo is caught, with the nearest key");
    const typo = readFileSync(file, "utf8").replace(/^heartbeat_ms/m, "hartbeat_ms");
    writeFileSync(file, typo);
    run(["scale", "validate", "--config", file], { allowFail: true });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * wolf scale: three private MariaDB instances (ROW binlog) and three `wolf scale start` nodes on
 * loopback, writes through the HTTP API (one sent to a follower, which forwards it), the cluster
 * as `wolf ctl scale list servers` shows it, the rows on every MariaDB; then everything is stopped.
 */
async function scaleDemo(): Promise<void> {
  title("wolf scale: 3 MariaDB + 3 nodes, writes through the HTTP API");
  if (!Bun.which("mariadbd") || !Bun.which("mariadb-install-db")) {
    process.stdout.write("skipped: mariadb-server is not installed (apt-get install mariadb-server)\n");
    return;
  }
  const { LocalScaleCluster } = await import("../test/bench/scale-replication/local-cluster.ts");
  const dir = mkdtempSync(join(tmpdir(), "wolf-demo-scale-"));
  const c = await LocalScaleCluster.create({ nodes: 3, baseDir: dir, logLevel: "warn" });
  try {
    process.stdout.write(`started 3 MariaDB instances (server ids 1-3, --log-bin --binlog-format=ROW) under ${dir}\n`);
    process.stdout.write(
      `$ wolf scale start --config ${c.node(1).config} --bootstrap   (and the same without --bootstrap for nodes 2, 3)\n`,
    );
    await c.startAll();
    const post = async (node: number, path: string, body: unknown) => {
      process.stdout.write(
        `$ curl -s -H 'Authorization: Bearer …' -d '${JSON.stringify(body)}' ${c.node(node).api}${path}\n`,
      );
      const r = await c.api(node, "POST", path, body);
      process.stdout.write(`${JSON.stringify(r.body)}\n`);
      if (r.status !== 200) throw new Error(`${path} answered ${r.status}`);
    };
    await post(1, "/write/ddl", { sql: "CREATE DATABASE shop" });
    await post(1, "/write/ddl", {
      sql: "CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, item VARCHAR(40), qty INT, at DATETIME(6) DEFAULT NOW(6))",
    });
    await post(1, "/write/insert", {
      table: "shop.orders",
      rows: [
        { item: "apples", qty: 3 },
        { item: "pears", qty: 5 },
      ],
    });
    process.stdout.write(
      "# node 2 is a follower: it forwards the write to the leader and answers once a follower holds it (ack = one)\n",
    );
    await post(2, "/write/insert", { table: "shop.orders", values: { item: "plums", qty: 7 } });
    await post(3, "/sql", { sql: "UPDATE shop.orders SET qty = qty + 1 WHERE item = ?", params: ["apples"] });
    await c.waitConverged();
    run(["ctl", "scale", "list", "servers", "--config", c.node(1).config]);
    for (const n of c.nodes) {
      const rows = await n.db.query<Array<{ item: string; qty: number }>>(
        "SELECT item, qty FROM shop.orders ORDER BY id",
      );
      const sum = await c.checksums(n.id, ["shop.orders"]);
      process.stdout.write(
        `MariaDB of node ${n.id}: ${rows.map((r) => `${r.item}=${r.qty}`).join(" ")}  (CHECKSUM ${sum["shop.orders"]})\n`,
      );
    }
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
    process.stdout.write("stopped the 3 nodes and the 3 MariaDB instances\n");
  }
}

async function diskDemo(): Promise<void> {
  title("wolf disk: mount a drive, copy a tree into it, status, unmount");
  await demoDisk(wolf, run);
}

async function netDemo(): Promise<void> {
  title("wolf net: a 3-node mesh in network namespaces, joined by invite");
  await demoNet();
}

const steps: Record<string, () => void | Promise<void>> = {
  basics: basicsDemo,
  scale: scaleDemo,
  disk: diskDemo,
  net: netDemo,
};
const wanted = process.argv.slice(2);
for (const name of wanted)
  if (!(name in steps)) throw new Error(`unknown demo step ${name}; steps: ${Object.keys(steps).join(", ")}`);

title("build");
const build = spawnSync(process.execPath, [join(root, "install", "build.ts")], { stdio: "inherit" });
if (build.status !== 0) process.exit(build.status ?? 1);
for (const [name, step] of Object.entries(steps)) {
  if (wanted.length === 0 || wanted.includes(name)) await step();
}
process.stdout.write("\ndemo done\n");
