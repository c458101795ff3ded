/**
 * Three ClusterNodes over the real TCP transport on 127.0.0.1, in one process, real time with a
 * 100 ms heartbeat: election, replication with acks, leader crash and failover, rejoin.
 */
import { afterEach, expect, test } from "bun:test";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import { ClusterNode } from "../../../lib/cluster/node.ts";
import { MemoryStableStore } from "../../../lib/cluster/stable-store.ts";
import { TcpTransport } from "../../../lib/cluster/transport-tcp.ts";
import type { EntryRef, FSM, LogEntry } from "../../../lib/cluster/types.ts";
import { setLogLevel } from "../../../lib/common/log.ts";
import { waitUntil } from "../../../lib/common/wait.ts";

if (!process.env.WOLF_LOG_LEVEL) setLogLevel("error");

const H = 100;
const SECRET = "e".repeat(64);
const running: { node: ClusterNode; transport: TcpTransport }[] = [];
afterEach(() => {
  for (const r of running.splice(0)) {
    r.node.stop();
    r.transport.close();
  }
});

class ListFSM implements FSM {
  entries: LogEntry[] = [];
  apply(e: LogEntry) {
    if (e.lsn !== this.entries.length + 1) throw new Error(`out of order: ${e.lsn}`);
    this.entries.push(e);
  }
  appliedLsn() {
    return this.entries.length;
  }
}

async function start(
  id: number,
  ports: Map<number, number>,
  state: Map<number, { log: MemoryLogStore; stable: MemoryStableStore; fsm: ListFSM }>,
) {
  const s = state.get(id) ?? { log: new MemoryLogStore(), stable: new MemoryStableStore(), fsm: new ListFSM() };
  state.set(id, s);
  let node: ClusterNode | null = null;
  const transport = new TcpTransport({
    id,
    clusterName: "tcp-test",
    secret: SECRET,
    bindHost: "127.0.0.1",
    port: ports.get(id) ?? 0,
    deadConnectionMs: 4 * H,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    onPeer: (pid, addr) => node?.addPeer(pid, addr),
  });
  ports.set(id, await transport.listen());
  node = new ClusterNode(
    { id, addr: transport.address(), heartbeatMs: H },
    { transport, logStore: s.log, stableStore: s.stable, fsm: s.fsm },
  );
  running.push({ node, transport });
  return node;
}

test("3 nodes over TCP: elect, replicate with acks, fail over, rejoin and hand back", async () => {
  const ports = new Map<number, number>();
  const state = new Map();
  const nodes = new Map<number, ClusterNode>();
  for (const id of [1, 2, 3]) nodes.set(id, await start(id, ports, state));
  const voters = [1, 2, 3].map((id) => ({ id, addr: `127.0.0.1:${ports.get(id)}` }));
  for (const n of nodes.values()) {
    for (const v of voters) n.addPeer(v.id, v.addr);
    n.bootstrap(voters);
    n.start();
  }
  await waitUntil(() => nodes.get(1)!.isLeader() && [2, 3].every((id) => nodes.get(id)!.leader() === 1), {
    timeoutMs: 5000,
    what: "node 1 leading",
  });
  const enc = new TextEncoder();
  const lsns: EntryRef[] = [];
  for (let i = 0; i < 50; i++) lsns.push(nodes.get(1)!.append(enc.encode(`w${i}`)));
  await nodes.get(1)!.waitFor(lsns.at(-1)!, "all", 5000);

  // Crash the leader: node 2 takes over.
  const crashedAt = performance.now();
  const r1 = running.find((r) => r.node === nodes.get(1))!;
  r1.node.stop();
  r1.transport.close();
  running.splice(running.indexOf(r1), 1);
  await waitUntil(() => nodes.get(2)!.isLeader(), { timeoutMs: 5000, what: "node 2 leading" });
  const failoverMs = performance.now() - crashedAt;
  expect(failoverMs).toBeLessThan(6 * H + 500);
  const more = nodes.get(2)!.append(enc.encode("after-failover"));
  await nodes.get(2)!.waitFor(more, "one", 5000);

  // Node 1 returns with its state, catches up, and gets leadership back by a handover.
  const again = await start(1, ports, state);
  for (const v of voters) again.addPeer(v.id, v.addr);
  again.start();
  nodes.set(1, again);
  await waitUntil(() => again.isLeader() && [2, 3].every((id) => nodes.get(id)!.leader() === 1), {
    timeoutMs: 10_000,
    what: "handover back to node 1",
  });
  const last = again.append(enc.encode("back"));
  await again.waitFor(last, "all", 5000);
  await waitUntil(() => [1, 2, 3].every((id) => nodes.get(id)!.applied() === last.lsn), {
    timeoutMs: 5000,
    what: "all applied",
  });
  const texts = (id: number) =>
    state.get(id).fsm.entries.map((e: LogEntry) => `${e.term}/${e.kind}/${new TextDecoder().decode(e.data)}`);
  expect(texts(2)).toEqual(texts(1));
  expect(texts(3)).toEqual(texts(1));
  expect(texts(1).filter((t: string) => t.includes("/data/"))).toHaveLength(52);
  console.error(`[cluster] TCP failover (heartbeat ${H} ms): ${Math.round(failoverMs)} ms`);
}, 30_000);
