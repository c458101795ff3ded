/**
 * Scenario tests of election and log shipping on the in-memory transport with simulated time
 * (heartbeat 500 ms as in production; a simulated minute runs in milliseconds).
 */
import { describe as group, expect, test } from "bun:test";
import { NotLeaderError } from "../../../lib/cluster/types.ts";
import { microtasks, SimCluster, track } from "./sim.ts";

const H = 500;
const enc = new TextEncoder();

function cluster(ids: number[], seed = 1, extra: Partial<ConstructorParameters<typeof SimCluster>[0]> = {}) {
  return new SimCluster({ ids, seed, heartbeatMs: H, net: { minDelayMs: 1, maxDelayMs: 5 }, ...extra });
}

function expectNoViolations(sim: SimCluster) {
  expect(sim.violations).toEqual([]);
}

group("election", () => {
  test("a fresh 3-node cluster elects the lowest ID", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    expect(sim.node(1).status().voters).toEqual([1, 2, 3]);
    expect(sim.node(1).quorum()).toBe(true);
    expectNoViolations(sim);
  });

  test("leader crash: the lowest surviving ID leads within 3 s, nothing acknowledged is lost", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    const leader = sim.node(1);
    const { lsn } = leader.append(enc.encode("before-crash"));
    const ack = track(leader.waitFor({ lsn, term: leader.currentTerm() }, "one"));
    sim.run(H);
    await microtasks();
    expect(ack.done).toBe(true);

    const crashedAt = sim.clock.now();
    sim.crash(1);
    const next = sim.stableLeader(10 * H);
    expect(next).toBe(2);
    const failoverMs = sim.elections.at(-1)!.at - crashedAt;
    expect(failoverMs).toBeLessThan(3000);
    expect(sim.store(2).get(lsn)?.term).toBe(sim.store(1).get(lsn)?.term);
    expect(sim.node(2).currentTerm()).toBeGreaterThan(leader.currentTerm());
    expectNoViolations(sim);
  });

  test("follower crash: the leader keeps committing with the majority", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    sim.crash(3);
    const x = sim.node(1).append(enc.encode("x"));
    const ack = track(sim.node(1).waitFor(x, "majority"));
    sim.run(2 * H);
    await microtasks();
    expect(ack.done).toBe(true);
    const all = track(sim.node(1).waitFor(x, "all"));
    sim.run(2 * H);
    await microtasks();
    expect(all.done).toBe(false); // node 3 is down: "all" cannot be met with quorum on
    sim.restart(3);
    expect(sim.converged(10 * H)).toBe(true);
    await microtasks();
    expect(all.done).toBe(true);
    expect(sim.logsEqual()).toBe(true);
    expectNoViolations(sim);
  });

  test("leader isolated from the majority steps down; its late writes are never acknowledged", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    const { lsn: acked } = sim.node(1).append(enc.encode("acked"));
    sim.run(H);
    sim.net.isolate(1, sim.ids);
    const cutAt = sim.clock.now();
    const late = sim.node(1).append(enc.encode("late"));
    const lateAck = track(sim.node(1).waitFor(late, "one"));

    // The majority side elects node 2; the old leader steps down on its own (check-quorum).
    let newLeaderAt = -1;
    let oldSteppedDownAt = -1;
    sim.run(10 * H, () => {
      if (newLeaderAt < 0 && sim.node(2).isLeader()) newLeaderAt = sim.clock.now();
      if (oldSteppedDownAt < 0 && sim.node(1).getRole() !== "leader") oldSteppedDownAt = sim.clock.now();
      return newLeaderAt >= 0 && oldSteppedDownAt >= 0;
    });
    expect(newLeaderAt - cutAt).toBeLessThan(3000);
    expect(oldSteppedDownAt - cutAt).toBeLessThan(3000);
    await microtasks();
    expect(lateAck.error).toBeInstanceOf(NotLeaderError);
    expect(lateAck.done).toBe(false);
    // The minority node cannot elect itself while cut off.
    sim.run(20 * H);
    expect(sim.node(1).getRole()).not.toBe("leader");

    sim.net.heal();
    expect(sim.stableLeader(30 * H, 1)).toBe(1); // after catching up, the lowest ID gets leadership back
    expect(sim.converged(20 * H)).toBe(true);
    const entry = sim.store(1).get(acked)!;
    expect(new TextDecoder().decode(entry.data)).toBe("acked");
    // The unacknowledged "late" entry was overwritten everywhere.
    for (const id of sim.ids) {
      const texts = sim.fsm(id).applied.map((e) => new TextDecoder().decode(e.data));
      expect(texts).not.toContain("late");
      expect(texts).toContain("acked");
    }
    expectNoViolations(sim);
  });

  test("symmetric partition 2|3 of 5: only the majority side has a leader; it heals", () => {
    const sim = cluster([1, 2, 3, 4, 5]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    sim.net.partition([1, 2], [3, 4, 5]);
    sim.run(10 * H);
    expect(sim.leaders()).toEqual([3]);
    for (let i = 0; i < 10; i++) {
      sim.propose();
      sim.run(H / 5);
    }
    const minorityCommit = sim.node(1).committed();
    sim.run(10 * H);
    expect(sim.node(1).getRole()).not.toBe("leader");
    expect(sim.node(2).getRole()).not.toBe("leader");
    expect(sim.node(1).committed()).toBe(minorityCommit);
    sim.net.heal();
    expect(sim.stableLeader(30 * H, 1)).toBe(1);
    expect(sim.converged(30 * H)).toBe(true);
    expect(sim.logsEqual()).toBe(true);
    expectNoViolations(sim);
  });

  test("asymmetric partition: a leader whose replies are cut steps down and a reachable node leads", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    // Node 1 can still send to everyone, but nothing reaches it.
    sim.net.blockOneWay(2, 1);
    sim.net.blockOneWay(3, 1);
    sim.run(20 * H);
    expect(sim.node(1).getRole()).not.toBe("leader");
    const ls = sim.leaders();
    expect(ls.length).toBe(1);
    expect([2, 3]).toContain(ls[0]!);
    const l = sim.node(ls[0]!);
    const before = l.committed();
    sim.propose();
    sim.run(2 * H);
    expect(l.committed()).toBeGreaterThan(before);
    sim.net.heal();
    expect(sim.converged(40 * H)).toBe(true);
    expectNoViolations(sim);
  });

  test("asymmetric partition: one cut link does not depose a leader that has a majority", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    const term = sim.node(1).currentTerm();
    sim.net.block(1, 3);
    for (let i = 0; i < 20; i++) {
      sim.propose();
      sim.run(H);
    }
    expect(sim.leaders()).toEqual([1]);
    expect(sim.node(1).currentTerm()).toBe(term); // node 3 could not inflate terms (pre-vote + lease)
    expect(sim.node(3).currentTerm()).toBe(term);
    sim.net.heal();
    expect(sim.converged(10 * H)).toBe(true);
    expectNoViolations(sim);
  });

  test("message loss and reordering: safe throughout, converges after healing", () => {
    const sim = new SimCluster({
      ids: [1, 2, 3, 4, 5],
      seed: 7,
      heartbeatMs: H,
      net: { minDelayMs: 1, maxDelayMs: 300, lossRate: 0.25 },
    });
    for (let i = 0; i < 200; i++) {
      sim.propose();
      sim.run(H / 4);
    }
    sim.net.lossRate = 0;
    sim.net.maxDelayMs = 5;
    expect(sim.converged(60 * H)).toBe(true);
    expect(sim.logsEqual()).toBe(true);
    expect(sim.node(sim.leaders()[0]!).committed()).toBeGreaterThan(50);
    expectNoViolations(sim);
  });

  test("rejoin of the lowest ID: catch-up, then a clean handover (never two leaders)", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    sim.crash(1);
    expect(sim.stableLeader(10 * H)).toBe(2);
    const acks: ReturnType<typeof track>[] = [];
    const lsns: number[] = [];
    for (let i = 0; i < 30; i++) {
      const entry = sim.node(2).append(enc.encode(`w${i}`));
      lsns.push(entry.lsn);
      acks.push(track(sim.node(2).waitFor(entry, "one")));
      sim.run(20);
    }
    sim.run(H);
    await microtasks();
    expect(acks.every((a) => a.done)).toBe(true);

    sim.restart(1);
    let maxLeaders = 0;
    let writesDuringHandover = 0;
    const handedBack = sim.run(30 * H, () => {
      maxLeaders = Math.max(maxLeaders, sim.leaders().length);
      // Keep writing through the handover: the leader must refuse while handing over.
      if (sim.clock.executed % 10 === 0) writesDuringHandover += sim.propose();
      return sim.node(1).isLeader() && sim.up().every((id) => sim.node(id).leader() === 1);
    });
    expect(handedBack).toBe(true);
    expect(maxLeaders).toBe(1);
    expect(writesDuringHandover).toBeGreaterThan(0);
    for (const lsn of lsns) expect(sim.store(1).get(lsn)?.term).toBe(sim.store(2).get(lsn)?.term);
    expect(sim.converged(10 * H)).toBe(true);
    expectNoViolations(sim);
  });

  test("never_leader: the node never leads even with the lowest ID", () => {
    const sim = cluster([1, 2, 3], 3, { node: {} });
    sim.crash(1);
    sim.startNode(1, { neverLeader: true });
    expect(sim.stableLeader(10 * H)).toBe(2);
    sim.crash(2);
    expect(sim.stableLeader(20 * H)).toBe(3);
    sim.run(20 * H);
    expect(sim.node(1).getRole()).toBe("follower");
    expectNoViolations(sim);
  });
});

group("acknowledgement levels and quorum off", () => {
  test("two nodes with quorum = never: one survivor keeps serving, and its acks say what is true", async () => {
    const sim = cluster([1, 2], 1, { node: { quorum: "never" } });
    expect(sim.stableLeader(5 * H)).toBe(1);
    expect(sim.node(1).quorum()).toBe(false);
    const a = sim.node(1).append(enc.encode("both"));
    const one = track(sim.node(1).waitFor(a, "one"));
    sim.run(H);
    await microtasks();
    expect(one.done).toBe(true);
    expect(sim.store(2).get(a.lsn)).toBeDefined(); // ack=one means the follower has it

    sim.crash(2);
    sim.run(4 * H); // node 2 is Dropped after 3 heartbeats
    const b = sim.node(1).append(enc.encode("alone"));
    const local = track(sim.node(1).waitFor(b, "none"));
    const alone = track(sim.node(1).waitFor(b, "all", 3 * H));
    sim.run(4 * H);
    await microtasks();
    expect(sim.node(1).committed()).toBeGreaterThanOrEqual(b.lsn); // it keeps committing alone
    expect(local.done).toBe(true);
    expect(alone.done).toBe(false); // but "all" is not claimed while the other node lacks it
    expect(alone.error?.name).toBe("AckTimeoutError");

    sim.restart(2);
    expect(sim.converged(10 * H)).toBe(true);
    sim.crash(1);
    expect(sim.stableLeader(10 * H)).toBe(2); // the survivor takes over alone
    const c = sim.node(2).append(enc.encode("survivor"));
    sim.run(H);
    expect(sim.node(2).committed()).toBeGreaterThanOrEqual(c.lsn);
    expectNoViolations(sim);
  });

  test("two nodes with quorum auto: majority rule, so the survivor of a failure does not lead", () => {
    const sim = cluster([1, 2]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    expect(sim.node(1).quorum()).toBe(true);
    sim.crash(1);
    sim.run(30 * H);
    expect(sim.leaders()).toEqual([]);
    expectNoViolations(sim);
  });

  test("ack=none resolves locally; ack=all waits for every voter", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    sim.net.block(1, 3);
    const x = sim.node(1).append(enc.encode("x"));
    const { lsn } = x;
    const none = track(sim.node(1).waitFor(x, "none"));
    const all = track(sim.node(1).waitFor(x, "all"));
    sim.run(H);
    await microtasks();
    expect(none.done).toBe(true);
    expect(all.done).toBe(false);
    expect(sim.node(1).ackedBy(1)).toBeGreaterThanOrEqual(lsn);
    expect(sim.node(1).ackedBy(2)).toBeLessThan(lsn);
    sim.net.heal();
    sim.run(2 * H);
    await microtasks();
    expect(all.done).toBe(true);
  });

  test("append on a follower is refused with the leader's id", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    try {
      sim.node(2).append(enc.encode("x"));
      throw new Error("append on a follower succeeded");
    } catch (err) {
      expect(err).toBeInstanceOf(NotLeaderError);
      expect((err as NotLeaderError).leader).toBe(1);
    }
  });
});

group("membership and catch-up", () => {
  test("bootstrap_expect forms a 3-node cluster; a 4th node joins as a voter; a dead one is removed", () => {
    const sim = new SimCluster({
      ids: [1, 2, 3, 4],
      seed: 11,
      heartbeatMs: H,
      bootstrap: false,
      node: { bootstrapExpect: 3, deadAfterMs: 10_000 },
    });
    sim.crash(4);
    expect(sim.stableLeader(20 * H)).toBe(1);
    sim.run(10 * H);
    expect(sim.node(1).voters()).toEqual([1, 2, 3]);
    sim.restart(4);
    sim.run(20 * H, () => sim.node(1).voters().length === 4);
    expect(sim.node(1).voters()).toEqual([1, 2, 3, 4]);
    expect(sim.converged(10 * H)).toBe(true);
    for (const id of sim.ids) expect(sim.node(id).status().state).toBe("Active");
    // Everyone converges on the same view (states travel in pings, once per heartbeat).
    const views = () =>
      sim.ids.map((id) => {
        const s = sim.node(id).status();
        return JSON.stringify(
          [{ id: s.id, state: s.state }, ...s.peers.map((p) => ({ id: p.id, state: p.state }))].sort(
            (a, b) => a.id - b.id,
          ),
        );
      });
    sim.run(3 * H, () => new Set(views()).size === 1);
    for (const v of views()) expect(v).toEqual(views()[0]!);

    sim.crash(3);
    sim.run(5 * H);
    expect(
      sim
        .node(1)
        .status()
        .peers.find((p) => p.id === 3)?.state,
    ).toBe("Dropped");
    sim.run(10 * H);
    expect(
      sim
        .node(1)
        .status()
        .peers.find((p) => p.id === 3)?.state,
    ).toBe("Offline");
    sim.run(20_000, () => !sim.node(1).voters().includes(3));
    expect(sim.node(1).voters()).toEqual([1, 2, 4]);
    expectNoViolations(sim);
  });

  test("a new leader changes the voter set only after an entry of its own term committed", () => {
    // Voters 1-3; node 4 is a learner that comes up while node 2 has just won leadership but its
    // no-op is not committed yet (node 1 is down, node 2 cannot reach node 3).
    const sim = new SimCluster({
      ids: [1, 2, 3, 4],
      seed: 5,
      heartbeatMs: H,
      bootstrap: false,
      net: { minDelayMs: 1, maxDelayMs: 5 },
    });
    sim.crash(4);
    for (const id of [1, 2, 3]) sim.node(id).bootstrap([1, 2, 3].map((v) => ({ id: v, addr: `sim:${v}` })));
    expect(sim.stableLeader(10 * H)).toBe(1);
    expect(sim.converged(10 * H)).toBe(true); // node 2 knows the config is committed
    sim.crash(1);
    expect(
      sim.run(10 * H, () => {
        if (!sim.node(2).isLeader()) return false;
        sim.net.blockOneWay(2, 3);
        return true;
      }),
    ).toBe(true);
    const term = sim.node(2).currentTerm();
    const noop = sim.node(2).lastLsn();
    expect(sim.store(2).get(noop)).toMatchObject({ term, kind: "noop" });
    sim.restart(4);
    sim.run(2 * H); // node 4 catches up and stays caught up over more than one leader tick
    expect(sim.store(4).lastLsn()).toBe(noop);
    expect(sim.node(2).committed()).toBeLessThan(noop);
    expect(sim.node(2).lastLsn()).toBe(noop); // no config entry appended before the no-op committed
    expect(sim.node(2).voters()).toEqual([1, 2, 3]);

    sim.net.heal();
    sim.run(10 * H, () => sim.node(2).voters().length === 4);
    expect(sim.node(2).voters()).toEqual([1, 2, 3, 4]);
    const config = sim
      .store(2)
      .range(noop + 1, sim.store(2).lastLsn())
      .find((e) => e.kind === "config");
    expect(config?.term).toBe(term);
    expect(sim.violations).toEqual([]);
  });

  test("a follower whose entries were pruned is NeedsMigration; migrated() resumes it", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    sim.crash(3);
    for (let i = 0; i < 20; i++) {
      sim.propose();
      sim.run(50);
    }
    sim.run(H);
    sim.node(1).prune(15);
    sim.node(2).prune(15);
    sim.restart(3);
    sim.run(10 * H);
    expect(sim.node(3).status().state).toBe("NeedsMigration");
    expect(
      sim
        .node(1)
        .status()
        .peers.find((p) => p.id === 3)?.state,
    ).toBe("NeedsMigration");
    expect(sim.node(3).getRole()).toBe("follower");

    // Restore node 3 "from a dump" of node 2 at its applied LSN, then resume.
    const at = sim.node(2).applied();
    const fsm3 = sim.fsm(3);
    fsm3.applied = sim.fsm(2).applied.slice(0, at);
    sim.node(3).migrated(at, sim.store(2).get(at)!.term);
    expect(sim.converged(10 * H)).toBe(true);
    expect(sim.node(3).status().state).toBe("Active");
  });

  test("status reports role, term, leader, LSNs and per-peer lag", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(5 * H)).toBe(1);
    sim.crash(3);
    for (let i = 0; i < 5; i++) sim.propose();
    sim.run(H);
    const s = sim.node(1).status();
    expect(s).toMatchObject({ id: 1, role: "leader", state: "Active", leader: 1, quorum: true, voters: [1, 2, 3] });
    expect(s.lastLsn).toBe(s.commitLsn);
    const p2 = s.peers.find((p) => p.id === 2)!;
    const p3 = s.peers.find((p) => p.id === 3)!;
    expect(p2.lag).toBe(0);
    expect(p3.lag).toBeGreaterThanOrEqual(5);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s); // plain JSON-safe object
  });
});
