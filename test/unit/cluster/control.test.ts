/**
 * The control API applications use (scale: MariaDB down, divergence, operator handover) and the
 * log-shipping details it relies on, on the in-memory transport with simulated time: step down,
 * hold-back, NeedsMigration, apply retry, leadership transfer with an application drain, prompt
 * commit notification, acknowledgements tied to the entry's term, and followers whose log base
 * differs from the leader's (pruned / migrated), checked through the TCP codec.
 */
import { describe as group, expect, test } from "bun:test";
import { SimClock, seededRng } from "../../../lib/cluster/clock.ts";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import { ClusterNode } from "../../../lib/cluster/node.ts";
import { MemoryStableStore } from "../../../lib/cluster/stable-store.ts";
import { SimNetwork } from "../../../lib/cluster/transport-memory.ts";
import { type FSM, type LogEntry, NotLeaderError } from "../../../lib/cluster/types.ts";
import { microtasks, SimCluster, track } from "./sim.ts";

const H = 100;
const enc = new TextEncoder();
const dec = new TextDecoder();

function cluster(ids: number[], extra: Partial<ConstructorParameters<typeof SimCluster>[0]> = {}) {
  return new SimCluster({ ids, seed: 7, heartbeatMs: H, net: { minDelayMs: 1, maxDelayMs: 3, codec: true }, ...extra });
}

function expectClean(sim: SimCluster) {
  expect(sim.violations).toEqual([]);
  expect(sim.net.malformed).toEqual([]);
}

const texts = (sim: SimCluster, id: number) =>
  sim
    .fsm(id)
    .applied.filter((e) => e.kind === "data")
    .map((e) => dec.decode(e.data));

group("step down and hold-back", () => {
  test("stepDown: the best follower takes over at once; a held node is skipped and never campaigns", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.propose("all");
    expect(sim.converged(5 * H)).toBe(true);
    sim.node(1).setEligible(false, "database down");
    expect(sim.node(1).heldBack()).toEqual(["database down"]);
    expect(sim.node(1).status().neverLeader).toBe(true);
    const pending = track(sim.node(1).waitFor(sim.node(1).append(enc.encode("in flight")), "all"));
    const t0 = sim.clock.now();
    sim.node(1).stepDown("test");
    expect(sim.node(1).getRole()).toBe("follower");
    await microtasks();
    expect(pending.error).toBeInstanceOf(NotLeaderError); // a deposed leader acknowledges nothing
    let maxLeaders = 0;
    const next = sim.run(H, () => {
      maxLeaders = Math.max(maxLeaders, sim.leaders().length);
      return sim.leaders().length === 1 && sim.leaders()[0] !== 1;
    });
    expect(next).toBe(true);
    // TimeoutNow: about one round trip, far below an election timeout (2 heartbeats and more).
    expect(sim.clock.now() - t0).toBeLessThan(H / 4);
    expect(maxLeaders).toBe(1);
    expect(sim.stableLeader(10 * H)).toBe(2);
    // Held back: no handback to the lowest ID, no campaign, even when the leader dies.
    sim.run(20 * H);
    expect(sim.leaders()).toEqual([2]);
    sim.crash(2);
    expect(sim.stableLeader(20 * H)).toBe(3);
    sim.run(10 * H);
    expect(sim.node(1).getRole()).toBe("follower");
    // Released: node 3 hands leadership back to the lowest ID.
    sim.node(1).setEligible(true, "database down");
    expect(sim.stableLeader(30 * H, 1)).toBe(1);
    expect(pending.done).toBe(false);
    expectClean(sim);
  });

  test("markNeedsMigration: the node stops applying and accepting entries, cannot lead, and leaders see it", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    expect(sim.converged(5 * H)).toBe(true);
    sim.node(3).markNeedsMigration("diverged in a test");
    expect(sim.node(3).needsMigration()).toBe(true);
    expect(sim.node(3).status().state).toBe("NeedsMigration");
    const appliedBefore = sim.node(3).applied();
    for (let i = 0; i < 5; i++) sim.propose("majority");
    sim.run(5 * H);
    expect(sim.node(3).applied()).toBe(appliedBefore);
    expect(
      sim
        .node(1)
        .status()
        .peers.find((p) => p.id === 3)?.state,
    ).toBe("NeedsMigration");
    // The leader marking itself steps down; node 3 is not a candidate.
    sim.node(1).markNeedsMigration("also diverged");
    expect(sim.stableLeader(20 * H)).toBe(2);
    expectClean(sim);
  });
});

group("transferLeadership and the application's drain", () => {
  test("appends continue while the application drains; then they stop, the target gets everything and leads", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    const calls: number[] = [];
    let finishDrain: (resume: () => void) => void = () => {};
    let resumed = 0;
    sim.node(1).events.prepareHandover = (target) => {
      calls.push(target);
      return new Promise((resolve) => (finishDrain = resolve));
    };
    sim.node(1).setEligible(false, "demoted"); // an operator's choice is not undone by the handback
    expect(sim.node(1).transferLeadership(2)).toBe(2);
    expect(calls).toEqual([2]);
    expect(sim.node(1).status().handoverTo).toBe(2);
    // Draining: still the leader, appends accepted (the application flushes what it has).
    sim.run(3 * H);
    expect(sim.node(1).isLeader()).toBe(true);
    const drained = sim.node(1).append(enc.encode("drained"));
    const drainedAck = track(sim.node(1).waitFor(drained, "one"));
    sim.run(H);
    await microtasks();
    expect(drainedAck.done).toBe(true);
    finishDrain(() => resumed++);
    await microtasks();
    expect(() => sim.node(1).append(enc.encode("too late"))).toThrow(NotLeaderError);
    let maxLeaders = 0;
    expect(
      sim.run(5 * H, () => {
        maxLeaders = Math.max(maxLeaders, sim.leaders().length);
        return sim.node(2).isLeader();
      }),
    ).toBe(true);
    expect(maxLeaders).toBe(1);
    expect(resumed).toBe(1);
    expect(sim.store(2).get(drained.lsn)?.term).toBe(drained.term);
    // Node 1 is held: node 2 keeps leading until it is released, then hands back.
    sim.run(20 * H);
    expect(sim.leaders()).toEqual([2]);
    sim.node(1).setEligible(true, "demoted");
    expect(sim.stableLeader(30 * H, 1)).toBe(1);
    expect(sim.converged(10 * H)).toBe(true);
    expect(texts(sim, 3)).toContain("drained");
    expectClean(sim);
  });

  test("a failed or slow drain abandons the handover: the leader keeps leading and resumes", async () => {
    const sim = cluster([1, 2, 3], { node: { handoverDrainTimeoutMs: 5 * H } });
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.node(1).events.prepareHandover = () => Promise.reject(new Error("MariaDB did not answer"));
    sim.node(1).transferLeadership(3);
    await microtasks();
    expect(sim.node(1).status().handoverTo).toBe(null);
    expect(sim.node(1).isLeader()).toBe(true);
    sim.node(1).append(enc.encode("after a failed drain"));

    let finishDrain: (resume: () => void) => void = () => {};
    let resumed = 0;
    sim.node(1).events.prepareHandover = () => new Promise((resolve) => (finishDrain = resolve));
    sim.node(1).transferLeadership(3);
    sim.run(10 * H);
    expect(sim.node(1).status().handoverTo).toBe(null); // timed out
    expect(sim.node(1).isLeader()).toBe(true);
    finishDrain(() => resumed++); // too late: resumed at once, no transfer
    await microtasks();
    expect(resumed).toBe(1);
    sim.run(5 * H);
    expect(sim.leaders()).toEqual([1]);
    expect(() => sim.node(1).transferLeadership(1)).toThrow(/already leads/);
    expect(() => sim.node(2).transferLeadership(3)).toThrow(NotLeaderError);
    expectClean(sim);
  });

  test("the automatic handback to the lowest ID drains the application first", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.crash(1);
    expect(sim.stableLeader(20 * H)).toBe(2);
    const drains: number[] = [];
    sim.node(2).events.prepareHandover = async (target) => {
      drains.push(target);
      sim.node(2).append(enc.encode("flushed by the drain"));
    };
    sim.restart(1);
    for (let i = 0; i < 200 && !sim.node(1).isLeader(); i++) {
      sim.run(H / 4);
      await microtasks();
    }
    expect(sim.node(1).isLeader()).toBe(true);
    expect(drains).toEqual([1]);
    expect(sim.converged(10 * H)).toBe(true);
    expect(texts(sim, 1)).toContain("flushed by the drain");
    expectClean(sim);
  });
});

group("commit notification and acknowledgements", () => {
  test("a follower applies an entry one network delay after it commits, not at the next heartbeat", () => {
    const sim = new SimCluster({
      ids: [1, 2, 3],
      seed: 3,
      heartbeatMs: 500,
      net: { minDelayMs: 1, maxDelayMs: 1, codec: true },
    });
    expect(sim.stableLeader(5000)).toBe(1);
    expect(sim.converged(2000)).toBe(true);
    sim.run(250); // halfway between heartbeats
    for (let i = 0; i < 20; i++) {
      const { lsn } = sim.node(1).append(enc.encode(`w${i}`));
      let committedAt = -1;
      const applied = sim.run(400, () => {
        if (committedAt < 0 && sim.node(1).committed() >= lsn) committedAt = sim.clock.now();
        return [2, 3].every((id) => sim.node(id).applied() >= lsn);
      });
      expect(applied).toBe(true);
      expect(sim.clock.now() - committedAt).toBeLessThanOrEqual(1);
      sim.run(37);
    }
    expectClean(sim);
  });

  test("waitFor names the entry by LSN and term: a leader that lost and regained leadership does not ack another entry at that LSN", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    expect(sim.converged(5 * H)).toBe(true);
    sim.net.isolate(1, sim.ids);
    const lost = sim.node(1).append(enc.encode("lost"));
    sim.run(H);
    const early = track(sim.node(1).waitFor(lost, "one"));
    expect(sim.stableLeader(20 * H, 2) ?? sim.leaders()).toBeDefined();
    expect(sim.node(2).isLeader()).toBe(true);
    sim.node(2).append(enc.encode("the entry at that LSN now"));
    sim.net.heal();
    expect(sim.stableLeader(40 * H, 1)).toBe(1); // handed back to the lowest ID, in a later term
    await microtasks();
    expect(early.error).toBeInstanceOf(NotLeaderError);
    expect(sim.store(1).get(lost.lsn)?.term).not.toBe(lost.term);
    const late = track(sim.node(1).waitFor(lost, "none"));
    await microtasks();
    expect(late.error).toBeInstanceOf(NotLeaderError);
    expect(late.error?.message).toMatch(/no longer in the log/);
    // The current entry at a given LSN is acknowledged as usual.
    const now = sim.node(1).append(enc.encode("fresh"));
    const ok = track(sim.node(1).waitFor(now, "all"));
    sim.run(2 * H);
    await microtasks();
    expect(ok.done).toBe(true);
    expectClean(sim);
  });
});

group("followers whose log base differs from the leader's", () => {
  test("a leader with a pruned log never sends entries that do not follow prevLsn; the new node is migrated and catches up", () => {
    // Node 4 has an empty log and is not a voter; the others prune everything they applied.
    const sim = cluster([1, 2, 3, 4], { bootstrap: false });
    const voters = [1, 2, 3].map((id) => ({ id, addr: `sim:${id}` }));
    sim.crash(4);
    for (const id of [1, 2, 3]) sim.node(id).bootstrap(voters);
    expect(sim.stableLeader(10 * H)).toBe(1);
    for (let i = 0; i < 10; i++) sim.propose("all");
    expect(sim.converged(10 * H)).toBe(true);
    for (const id of [1, 2, 3]) sim.node(id).prune(sim.node(id).applied() + 1);
    expect(sim.store(1).base().lsn).toBeGreaterThan(0);
    sim.startNode(4);
    // Before the fix the leader answered node 4's "my log ends at 0" with prevLsn 0 and entries
    // from its base on: every such message was dropped as malformed, forever.
    expect(sim.run(20 * H, () => sim.isUp(4) && sim.node(4).needsMigration())).toBe(true);
    expect(sim.net.malformed).toEqual([]);

    // Migrate node 4 from node 2 (a dump of its applied state) while writes go on.
    for (let i = 0; i < 5; i++) sim.propose("majority");
    sim.run(H);
    const source = sim.node(2);
    const lsn = source.applied();
    const term = sim.store(2).get(lsn)?.term ?? sim.store(2).base().term;
    sim.fsm(4).applied = sim.fsm(2).applied.slice(0, lsn);
    sim.node(4).migrated(lsn, term, { voters });
    for (let i = 0; i < 5; i++) sim.propose("majority");
    expect(sim.converged(30 * H)).toBe(true);
    expect(texts(sim, 4)).toEqual(texts(sim, 1));
    expectClean(sim);

    // Node 4 joins the voters and leads (its log starts at the dump): still nothing malformed.
    expect(sim.run(30 * H, () => sim.node(1).voters().includes(4))).toBe(true);
    for (const id of [1, 2, 3]) sim.node(id).setEligible(false, "test");
    sim.node(1).stepDown("test");
    expect(sim.stableLeader(30 * H, 4)).toBe(4);
    for (let i = 0; i < 5; i++) sim.propose("all");
    expect(sim.converged(30 * H)).toBe(true);
    expect(texts(sim, 1)).toEqual(texts(sim, 4));
    expectClean(sim);
  });

  /** Node `target` is restored from a dump of `source` holding the entries up to `lsn` (its own log is gone). */
  function restoreFromDump(sim: ReturnType<typeof cluster>, target: number, source: number, lsn: number): void {
    const term = sim.store(source).get(lsn)!.term;
    sim.fsm(target).applied = sim.fsm(source).applied.slice(0, lsn);
    sim.store(target).resetTo({ lsn: 0, term: 0 }); // whatever the store held is replaced by migrated()
    sim.node(target).migrated(lsn, term, { voters: [1, 2, 3].map((id) => ({ id, addr: `sim:${id}` })) });
  }

  test("a migrated follower that the leader still thinks far behind continues after its base", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    for (let i = 0; i < 30; i++) sim.propose("majority");
    expect(sim.converged(10 * H)).toBe(true);
    // Node 3 is restored from a dump of node 2 at its applied LSN (its own log is gone).
    sim.node(3).markNeedsMigration("test");
    for (let i = 0; i < 10; i++) sim.propose("majority");
    sim.run(2 * H);
    restoreFromDump(sim, 3, 2, sim.node(2).applied());
    for (let i = 0; i < 10; i++) sim.propose("majority");
    expect(sim.converged(20 * H)).toBe(true);
    expect(texts(sim, 3)).toEqual(texts(sim, 1));
    expectClean(sim);
  });

  test("a follower restored from a dump below what it had acknowledged is shipped its entries again", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    for (let i = 0; i < 30; i++) sim.propose("majority");
    expect(sim.converged(10 * H)).toBe(true);
    // The source of the dump lags node 3: the dump holds less than node 3 had acknowledged, so the
    // leader's record of node 3's log (match) is now above the log node 3 really has.
    sim.node(3).markNeedsMigration("test");
    restoreFromDump(sim, 3, 2, sim.node(2).applied() - 10);
    sim.run(4 * H); // no new entries: only the leader's heartbeats can bring node 3 back
    expect(sim.node(3).lastLsn()).toBe(sim.node(1).lastLsn());
    for (let i = 0; i < 5; i++) sim.propose("majority");
    expect(sim.converged(20 * H)).toBe(true);
    expect(texts(sim, 3)).toEqual(texts(sim, 1));
    expectClean(sim);
  });
});

group("apply errors", () => {
  test("retryApply re-applies the entry that failed once its cause is fixed", () => {
    const clock = new SimClock();
    const net = new SimNetwork(clock, seededRng(5), { minDelayMs: 1, maxDelayMs: 2, codec: true });
    class FlakyFSM implements FSM {
      entries: LogEntry[] = [];
      broken = false;
      apply(e: LogEntry): void {
        if (this.broken && e.kind === "data") throw new Error("disk full");
        this.entries.push(e);
      }
      appliedLsn() {
        return this.entries.length;
      }
    }
    const fsms = [1, 2, 3].map(() => new FlakyFSM());
    const nodes = [1, 2, 3].map(
      (id) =>
        new ClusterNode(
          { id, heartbeatMs: H },
          {
            transport: net.transport(id),
            logStore: new MemoryLogStore(),
            stableStore: new MemoryStableStore(),
            fsm: fsms[id - 1]!,
            clock,
            rng: seededRng(id),
          },
        ),
    );
    const voters = [1, 2, 3].map((id) => ({ id, addr: "" }));
    for (const n of nodes) n.bootstrap(voters);
    for (const n of nodes) n.start();
    expect(clock.runFor(10 * H, () => nodes[0]!.isLeader())).toBe(true);
    fsms[2]!.broken = true;
    const e = nodes[0]!.append(enc.encode("x"));
    clock.runFor(2 * H);
    expect(nodes[2]!.status().applyError).toMatch(/disk full/);
    expect(nodes[2]!.applied()).toBe(e.lsn - 1);
    expect(nodes[2]!.retryApply()).toBe(true); // still broken: fails again, nothing skipped
    expect(nodes[2]!.applied()).toBe(e.lsn - 1);
    fsms[2]!.broken = false;
    expect(nodes[2]!.retryApply()).toBe(true);
    expect(nodes[2]!.applied()).toBe(e.lsn);
    expect(nodes[2]!.status().applyError).toBe(null);
    expect(nodes[2]!.retryApply()).toBe(false);
    expect(net.malformed).toEqual([]);
    for (const n of nodes) n.stop();
  });
});
