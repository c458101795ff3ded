/**
 * lib/scale/cluster-adapter.ts reaches into ClusterNode's private members; this fails loudly if
 * lib/cluster renames them, and checks the behaviour scale relies on over the in-memory transport.
 */
import { expect, test } from "bun:test";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import { ClusterNode } from "../../../lib/cluster/node.ts";
import { MemoryStableStore } from "../../../lib/cluster/stable-store.ts";
import { realClock } from "../../../lib/cluster/clock.ts";
import { SimNetwork } from "../../../lib/cluster/transport-memory.ts";
import type { FSM, LogEntry } from "../../../lib/cluster/types.ts";
import { waitUntil } from "../../../lib/common/wait.ts";
import { ClusterControl } from "../../../lib/scale/cluster-adapter.ts";

class Fsm implements FSM {
  n = 0;
  apply(e: LogEntry) {
    this.n = e.lsn;
  }
  appliedLsn() {
    return this.n;
  }
}

test("step down hands leadership over at once; holds keep a node from leading; NeedsMigration sticks", async () => {
  const net = new SimNetwork(realClock, Math.random);
  const nodes = [1, 2, 3].map(
    (id) => new ClusterNode({ id, heartbeatMs: 50 }, { transport: net.transport(id), logStore: new MemoryLogStore(), stableStore: new MemoryStableStore(), fsm: new Fsm() }),
  );
  const voters = [1, 2, 3].map((id) => ({ id, addr: "" }));
  try {
    for (const n of nodes) n.bootstrap(voters);
    for (const n of nodes) n.start();
    const leader = await waitUntil(() => nodes.find((n) => n.isLeader()), { timeoutMs: 5000, what: "a leader" });
    await leader.waitFor(leader.append(new Uint8Array([1])), "all", 5000);
    const ctl = new ClusterControl(leader);
    ctl.hold("database down", true);
    expect(ctl.held()).toEqual(["database down"]);
    ctl.stepDown("test");
    expect(leader.getRole()).toBe("follower");
    const next = await waitUntil(() => nodes.find((n) => n.isLeader()), { timeoutMs: 2000, what: "the next leader" });
    expect(next.id).not.toBe(leader.id);
    const other = new ClusterControl(nodes.find((n) => n !== leader && n !== next)!);
    other.markNeedsMigration();
    expect(other.needsMigration()).toBe(true);
    await waitUntil(() => other.node.status().state === "NeedsMigration", { timeoutMs: 2000, what: "NeedsMigration" });
    expect(other.retryApply()).toBe(false);
  } finally {
    for (const n of nodes) n.stop();
  }
});
