/**
 * Cluster failover time across real processes: three bare cluster nodes
 * (test/harness/cluster-node-main.ts, run by bun), each in its own network namespace on one LAN
 * (discovery on, bootstrap_expect = 3). Each run starts from a settled cluster (the lowest ID
 * leads, every log converged), writes a few entries with ack=majority, SIGKILLs the leader by PID
 * and polls the two survivors (every ~20 ms) until one of them reports role leader and then
 * acknowledges an ack=majority append:
 *
 *   kill → leader     the first survivor's `role` leader event (its clock, ms) minus the moment of the kill
 *   kill → writable   kill until the reply of the first acknowledged ack=majority append
 *
 * Every entry acknowledged so far must be in the new leader's log. The killed node is then
 * restarted on its data dir; the next run waits until it has caught up and taken leadership back
 * (the core hands it to the lowest ID). Medians of --runs runs.
 *
 *   node_modules/.bin/bun test/bench/cluster-failover/run.ts [--runs 10] [--heartbeat-ms 500] [--entries 5]
 *
 * Needs root and iproute2. Exits non-zero if an acknowledged entry was lost or a run timed out.
 * Namespaces and processes are cleaned up (by PID) on success, failure, SIGINT and SIGTERM.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ClusterStatus } from "../../../lib/cluster/status.ts";
import { waitUntil } from "../../../lib/common/wait.ts";
import { clusterNodeArgv, netnsSkipReason, NodeProc, onExitCleanup, TestNet, type Host } from "../../harness/index.ts";

const args = process.argv.slice(2);
function intArg(name: string, def: number, min: number, max: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < min || v > max) {
    console.error(`--${name} must be an integer ${min}-${max} (got "${args[i + 1] ?? ""}")`);
    process.exit(2);
  }
  return v;
}
const RUNS = intArg("runs", 10, 1, 1000);
const HEARTBEAT_MS = intArg("heartbeat-ms", 500, 50, 60_000);
const ENTRIES = intArg("entries", 5, 1, 1000);
const IDS = [1, 2, 3];
const POLL_MS = 20;
const FAILOVER_DEADLINE_MS = 30_000;
/** Catching up and the handover back to the lowest ID (its backoff can reach 64 heartbeats). */
const SETTLE_DEADLINE_MS = Math.max(60_000, 80 * HEARTBEAT_MS);

interface RunResult {
  run: number;
  killed: number;
  newLeader?: number;
  /** Survivor's role event − kill (ms, wall clock of the same machine). */
  electedMs?: number;
  /** Kill → first status poll showing a survivor as leader of a newer term. */
  electedSeenMs?: number;
  /** Kill → reply of the first acknowledged ack=majority append. */
  writableMs?: number;
  /** Failed append attempts (at a node that reported leader) before the first success. */
  failedAttempts: number;
  lost: string[];
  error?: string;
  /** Restart → the cluster settled again (caught up, handed back to the lowest ID). */
  settleMs?: number;
}

/** The first acknowledged write after the kill: when its reply came, from which node, at which LSN. */
type Writable = { at: number; node: number; lsn: number };

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const fmt = (ms: number | undefined) => (ms === undefined ? "-" : `${Math.round(ms)} ms`);
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

let net: TestNet | undefined;
let work = "";
const nodes = new Map<number, NodeProc>();
const hosts = new Map<number, Host>();
const argvOf = (id: number) => clusterNodeArgv(join(work, "cluster.toml"), id, join(work, `data${id}`));

/** Status of each running node (a node that does not answer within 2 s is left out). */
async function statuses(ids: number[]): Promise<ClusterStatus[]> {
  const all = await Promise.all(
    ids.map((id) =>
      nodes
        .get(id)!
        .status(2000)
        .catch(() => undefined),
    ),
  );
  return all.filter((s): s is ClusterStatus => s !== undefined);
}

/**
 * Settled: all three answer, exactly one leader, the lowest ID, no handover under way, everyone
 * agrees on it, every node Active (also in the leader's view), every log converged and applied.
 */
async function settledLeader(): Promise<number | undefined> {
  const s = await statuses(IDS);
  if (s.length !== IDS.length) return undefined;
  const leaders = s.filter((x) => x.role === "leader");
  if (leaders.length !== 1) return undefined;
  const l = leaders[0]!;
  if (l.id !== Math.min(...IDS) || l.handoverTo !== null || l.commitLsn !== l.lastLsn) return undefined;
  if (l.peers.some((p) => p.state !== "Active")) return undefined;
  const agreed = s.every(
    (x) => x.leader === l.id && x.term === l.term && x.state === "Active" && x.voters.length === IDS.length,
  );
  return agreed && s.every((x) => x.lastLsn === l.lastLsn && x.appliedLsn === l.lastLsn) ? l.id : undefined;
}

function waitSettled(what: string): Promise<number> {
  return waitUntil(settledLeader, { timeoutMs: SETTLE_DEADLINE_MS, intervalMs: 100, what });
}

async function setup(): Promise<void> {
  work = mkdtempSync(join(tmpdir(), "wolf-bench-failover-"));
  onExitCleanup(() => rmSync(work, { recursive: true, force: true }), 200);
  writeFileSync(
    join(work, "cluster.toml"),
    `[cluster]
name = "failover-bench"
secret = "${randomBytes(32).toString("hex")}"
port = 7854
discovery = true
discovery_port = 7855
heartbeat_ms = ${HEARTBEAT_MS}
bootstrap_expect = ${IDS.length}
`,
  );
  net = await TestNet.create();
  for (const id of IDS) {
    hosts.set(id, await net.addHost(`n${id}`));
    mkdirSync(join(work, `data${id}`));
    nodes.set(id, new NodeProc(id, hosts.get(id)!, argvOf(id)));
  }
}

/** Every entry acknowledged so far, in order. */
const acked: string[] = [];

async function oneRun(run: number): Promise<RunResult> {
  const leaderId = await waitSettled(`a settled cluster before run ${run}`);
  const leader = nodes.get(leaderId)!;
  const survivors = IDS.filter((id) => id !== leaderId).map((id) => nodes.get(id)!);
  const result: RunResult = { run, killed: leaderId, failedAttempts: 0, lost: [] };

  for (let i = 0; i < ENTRIES; i++) {
    const data = `run${run}-before-${i}`;
    const r = await leader.append(data, "majority", 5000);
    if (!r.ok) throw new Error(`run ${run}: append on the settled leader ${leaderId} failed: ${r.error}`);
    acked.push(data);
  }
  const termBefore = (await leader.status()).term;

  // ---- the kill, and polling the survivors until one acknowledges a majority write -----------
  const killEpoch = Date.now();
  const t0 = performance.now();
  const killed = leader.kill(); // SIGKILL is sent before this returns
  const deadline = t0 + FAILOVER_DEADLINE_MS;
  const inFlight = new Map<number, Promise<void>>();
  let writable: Writable | undefined;
  let attempt = 0;
  while (writable === undefined && performance.now() < deadline) {
    for (const s of await statuses(survivors.map((n) => n.id))) {
      if (s.role !== "leader" || s.term <= termBefore) continue;
      result.electedSeenMs ??= performance.now() - t0;
      if (inFlight.has(s.id)) continue;
      const node = nodes.get(s.id)!;
      const data = `run${run}-failover-${attempt++}`;
      const timeoutMs = Math.max(100, Math.min(3000, Math.floor(deadline - performance.now())));
      inFlight.set(
        s.id,
        node
          .append(data, "majority", timeoutMs)
          .then(
            (r) => {
              if (r.ok && r.lsn !== undefined) {
                acked.push(data);
                writable ??= { at: performance.now(), node: s.id, lsn: r.lsn };
              } else result.failedAttempts++;
            },
            () => void result.failedAttempts++,
          )
          .finally(() => inFlight.delete(s.id)),
      );
    }
    if (writable === undefined) await Bun.sleep(POLL_MS);
  }
  await Promise.allSettled([...inFlight.values()]);
  await killed;
  if (writable === undefined) {
    result.error = `no survivor acknowledged an ack=majority append within ${FAILOVER_DEADLINE_MS} ms of the kill`;
  } else {
    const w = writable as Writable; // set in an append callback, which TS's narrowing cannot see
    const nl = nodes.get(w.node)!;
    result.newLeader = w.node;
    result.writableMs = w.at - t0;
    // The first survivor to become leader (normally the one that then took the write).
    const elected = survivors
      .flatMap((n) => n.events)
      .filter((e) => e.event === "role" && e.role === "leader" && (e.term as number) > termBefore)
      .map((e) => e.at as number);
    if (elected.length > 0) result.electedMs = Math.min(...elected) - killEpoch;
    // Nothing acknowledged lost: once the new leader has applied its first write, every entry
    // acknowledged so far (this run's and all earlier ones) must be in its log.
    try {
      await waitUntil(async () => (await nl.status()).appliedLsn >= w.lsn, {
        timeoutMs: 10_000,
        intervalMs: POLL_MS,
        what: `node ${w.node} to apply lsn ${w.lsn}`,
      });
      const have = new Set((await nl.entries()).map((e) => e.data));
      result.lost = acked.filter((d) => !have.has(d));
    } catch (err) {
      result.error = `checking node ${w.node}'s log: ${errText(err)}`;
    }
  }

  // ---- restart the killed node on its data dir; it catches up and takes leadership back -------
  nodes.set(leaderId, new NodeProc(leaderId, hosts.get(leaderId)!, argvOf(leaderId)));
  const r0 = performance.now();
  await waitSettled(`node ${leaderId} restarted, caught up and leading again after run ${run}`);
  result.settleMs = performance.now() - r0;
  return result;
}

function printRun(r: RunResult): void {
  const lost =
    r.lost.length > 0
      ? `  LOST ${r.lost.length}: ${r.lost.slice(0, 5).join(", ")}${r.lost.length > 5 ? ", …" : ""}`
      : "";
  console.log(
    `${String(r.run).padStart(3)}  ${`${r.killed} → ${r.newLeader ?? "?"}`.padEnd(7)}` +
      `${fmt(r.electedMs).padStart(10)}${fmt(r.electedSeenMs).padStart(12)}${fmt(r.writableMs).padStart(11)}` +
      `${String(r.failedAttempts).padStart(8)}${fmt(r.settleMs).padStart(12)}${lost}${r.error ? `  ERROR: ${r.error}` : ""}`,
  );
}

function summarize(results: RunResult[]): boolean {
  const row = (label: string, xs: number[]) => {
    const cells = xs.length ? [median(xs), Math.min(...xs), Math.max(...xs)].map(fmt) : ["-", "-", "-"];
    console.log(`${label.padEnd(34)}${cells.map((c) => c.padStart(10)).join("")}`);
  };
  const ok = results.filter((r) => r.writableMs !== undefined);
  const lost = results.reduce((n, r) => n + r.lost.length, 0);
  const failed = results.filter((r) => r.error !== undefined).length;
  console.log(
    `\ncluster failover: 3 nodes in namespaces, SIGKILL of the leader, heartbeat ${HEARTBEAT_MS} ms, ${ok.length}/${RUNS} runs`,
  );
  console.log(`${"".padEnd(34)}${"median".padStart(10)}${"min".padStart(10)}${"max".padStart(10)}`);
  row(
    "kill → leader elected",
    ok.flatMap((r) => (r.electedMs === undefined ? [] : [r.electedMs])),
  );
  row(
    "kill → writable (ack=majority OK)",
    ok.map((r) => r.writableMs!),
  );
  console.log(
    `acknowledged entries: ${acked.length}, lost: ${lost}; runs with errors: ${failed}; runs done: ${results.length}/${RUNS}`,
  );
  return lost === 0 && failed === 0 && results.length === RUNS;
}

async function main(): Promise<boolean> {
  const reason = netnsSkipReason();
  if (reason) throw new Error(`cluster-failover benchmark ${reason}`);
  await setup();
  await waitSettled("the 3-node cluster to form (node 1 leading)");
  console.log(
    `cluster failover, heartbeat ${HEARTBEAT_MS} ms, ${RUNS} runs, ${ENTRIES} ack=majority entries before each kill`,
  );
  console.log(
    `${"run".padStart(3)}  ${"killed".padEnd(7)}${"elected".padStart(10)}${"seen".padStart(12)}${"writable".padStart(11)}` +
      `${"failed".padStart(8)}${"settled".padStart(12)}`,
  );
  console.log(
    "(killed: old → new leader; elected: kill → first survivor's role event; seen: kill → a status poll shows it;\n" +
      " writable: kill → first ack=majority append OK; failed: append attempts at a reported leader that failed first;\n" +
      " settled: restart of the killed node → caught up and leading again)",
  );
  const results: RunResult[] = [];
  try {
    for (let run = 1; run <= RUNS; run++) {
      const r = await oneRun(run);
      results.push(r);
      printRun(r);
    }
  } catch (err) {
    console.error(`benchmark aborted: ${errText(err)}`);
    for (const n of nodes.values())
      if (n.running) console.error(`--- node ${n.id} output (tail) ---\n${n.output.slice(-2000)}`);
  }
  return summarize(results);
}

let ok = false;
try {
  ok = await main();
} catch (err) {
  console.error(`cluster-failover benchmark failed: ${errText(err)}`);
} finally {
  await Promise.allSettled([...nodes.values()].map((n) => n.stop()));
  await net?.destroy().catch((err: unknown) => console.error(errText(err)));
  if (work) rmSync(work, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
