/**
 * A bare cluster node for the cluster integration test and the failover benchmark, run from source:
 *
 *   bun test/harness/cluster-node-main.ts --config FILE [--id N] [--data-dir DIR] [--bootstrap]
 *
 * (test/harness/cluster-node.ts starts it inside a network namespace). It runs the cluster core
 * with a file LogStore and StableStore under --data-dir and an FSM that keeps the applied entries
 * in memory (rebuilt from the log after a restart), and talks JSON lines:
 *
 *   stdout  {"event":"ready",…}  {"event":"role","role":…,"term":…,"leader":…,"at":<ms epoch>}
 *   stdin   {"id":1,"cmd":"append","data":"x","ack":"one","timeoutMs":3000} → {"reply":1,"ok":true,"lsn":7}
 *           {"id":2,"cmd":"status"}  → {"reply":2,"ok":true,"status":{…}}
 *           {"id":3,"cmd":"entries"} → {"reply":3,"ok":true,"entries":[{"lsn":…,"term":…,"kind":…,"data":…}]}
 *           {"id":4,"cmd":"stop"}
 * It exits when stdin closes (its test is gone) or on SIGTERM/SIGINT.
 *
 * It used to be `wolf internal cluster-node`, compiled into the product binary; nothing in the
 * product needs it, and bun runs it in a namespace as well as the binary did.
 */
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { defineSchema, loadConfig, nodeSection } from "../../lib/common/config/index.ts";
import { UsageError } from "../../lib/common/errors.ts";
import { logger } from "../../lib/common/log.ts";
import { clusterSection } from "../../lib/cluster/config.ts";
import { FileLogStore } from "../../lib/cluster/log-store.ts";
import { FileStableStore } from "../../lib/cluster/stable-store.ts";
import { startCluster } from "../../lib/cluster/start.ts";
import { ACK_LEVELS, type AckLevel, type EntryRef, type FSM, type LogEntry } from "../../lib/cluster/types.ts";

const clusterNodeSchema = defineSchema("cluster-node", "cluster-node-main.ts — a bare cluster node for tests.", {
  node: nodeSection({ dataDir: "/var/lib/wolf/cluster-node" }),
  cluster: clusterSection({ name: "wolf-test", port: 7854, discoveryPort: 7855 }),
});

class MemoryFSM implements FSM {
  readonly entries: LogEntry[] = [];
  apply(e: LogEntry): void {
    if (e.lsn !== this.entries.length + 1) throw new Error(`apply out of order: ${e.lsn} after ${this.entries.length}`);
    this.entries.push(e);
  }
  appliedLsn(): number {
    return this.entries.length;
  }
}

interface Command {
  id?: number;
  cmd?: string;
  data?: string;
  ack?: string;
  timeoutMs?: number;
}

async function runClusterNode(args: {
  config: string;
  id?: string;
  dataDir?: string;
  bootstrap?: boolean;
}): Promise<number> {
  const cfg = loadConfig(clusterNodeSchema, args.config);
  if (args.id !== undefined) {
    const id = Number(args.id);
    if (!Number.isInteger(id) || id < 1 || id > 1023)
      throw new UsageError(`--id must be an integer 1-1023, got "${args.id}"`);
    cfg.cluster.node_id = id;
  }
  const dataDir = args.dataDir ?? cfg.node.data_dir;
  const log = logger("cluster-node");
  const fsm = new MemoryFSM();
  const logStore = new FileLogStore(join(dataDir, "log"));
  const stableStore = new FileStableStore(join(dataDir, "cluster-state.json"));
  const running = await startCluster(cfg.cluster, { logStore, stableStore, fsm }, { bootstrap: args.bootstrap });
  const { node } = running;
  const out = (obj: unknown) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  node.events.onRoleChange = (role, term, leader) =>
    out({ event: "role", id: cfg.cluster.node_id, role, term, leader, at: Date.now() });
  out({ event: "ready", id: cfg.cluster.node_id, addr: running.address, pid: process.pid });

  return await new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      running.stop();
      logStore.close();
      resolve(code);
    };
    process.once("SIGTERM", () => finish(0));
    process.once("SIGINT", () => finish(0));
    const rl = createInterface({ input: process.stdin });
    rl.on("close", () => finish(0));
    rl.on("line", (line) => {
      let c: Command;
      try {
        c = JSON.parse(line) as Command;
      } catch {
        return out({ reply: null, ok: false, error: "not JSON" });
      }
      const reply = (obj: Record<string, unknown>) => out({ reply: c.id ?? null, ...obj });
      switch (c.cmd) {
        case "append": {
          const ack = (c.ack ?? "one") as AckLevel;
          if (!ACK_LEVELS.includes(ack))
            return reply({ ok: false, error: `ack must be one of ${ACK_LEVELS.join("|")}` });
          let entry: EntryRef;
          try {
            entry = node.append(new TextEncoder().encode(c.data ?? ""));
          } catch (err) {
            return reply({ ok: false, error: (err as Error).message, leader: node.leader() });
          }
          node.waitFor(entry, ack, c.timeoutMs ?? 5000).then(
            () => reply({ ok: true, lsn: entry.lsn, term: entry.term }),
            (err: Error) => reply({ ok: false, lsn: entry.lsn, error: err.message, leader: node.leader() }),
          );
          return;
        }
        case "status":
          return reply({ ok: true, status: { ...node.status(), discovery: running.discovery?.counters() ?? null } });
        case "entries":
          return reply({
            ok: true,
            entries: fsm.entries.map((e) => ({
              lsn: e.lsn,
              term: e.term,
              kind: e.kind,
              data: e.kind === "data" ? new TextDecoder().decode(e.data) : "",
            })),
          });
        case "stop":
          reply({ ok: true });
          return finish(0);
        default:
          log.warn(`unknown command ${JSON.stringify(c.cmd)}`);
          return reply({ ok: false, error: `unknown command ${JSON.stringify(c.cmd)}` });
      }
    });
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      config: { type: "string" },
      id: { type: "string" },
      "data-dir": { type: "string" },
      bootstrap: { type: "boolean" },
    },
  });
  if (values.config === undefined) throw new UsageError("--config FILE (with a [cluster] section) is required");
  const code = await runClusterNode({
    config: values.config,
    id: values.id,
    dataDir: values["data-dir"],
    bootstrap: values.bootstrap,
  });
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve())); // flush before exiting
  process.exit(code);
}
