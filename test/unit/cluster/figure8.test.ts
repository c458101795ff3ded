/**
 * Raft's "Figure 8" (Ongaro & Ousterhout, §5.4.2), step by step on the simulated network: a leader
 * must not treat an entry from an earlier term as committed because a majority stores it; only an
 * entry of its current term commits by counting (earlier ones commit with it). Otherwise a node
 * holding a newer-term entry can still win an election and overwrite it: an acknowledged write lost.
 *
 * Our election prefers the lowest eligible ID, so the Figure's S5 is steered into winning: S3 and S4
 * run with never_leader (they vote but never lead) and S2 is cut off while S5 campaigns. S1 restarts
 * with a replication batch of one entry, so the old-term entry reaches S3 without the new leader's
 * no-op (in production the same happens to a follower more than a batch behind).
 */
import { describe as group, expect, test } from "bun:test";
import { microtasks, SimCluster, track } from "./sim.ts";

const H = 100;
const ALL = [1, 2, 3, 4, 5];
const enc = new TextEncoder();
const dec = new TextDecoder();

function leaderOf(sim: SimCluster, id: number, maxMs: number): boolean {
  return sim.run(maxMs, () => sim.isUp(id) && sim.node(id).isLeader());
}

/**
 * Runs the Figure up to (c): S1 leads term 4 and has replicated its term-2 entry X to S2 and S3
 * (a majority with itself) but its term-4 no-op only to S2. The link S1 -> S3 is cut, S1 -> S4 too;
 * S5 is down holding a term-3 entry at X's LSN.
 */
async function figure8UpToC(seed: number) {
  const sim = new SimCluster({ ids: ALL, seed, heartbeatMs: H, net: { minDelayMs: 1, maxDelayMs: 5 } });
  for (const id of [3, 4]) {
    sim.crash(id);
    sim.startNode(id, { neverLeader: true });
  }

  // (a) S1 leads term 2 and replicates X to S2 only, then crashes.
  expect(sim.stableLeader(10 * H)).toBe(1);
  expect(sim.converged(10 * H)).toBe(true);
  const t2 = sim.node(1).currentTerm();
  expect(t2).toBe(2);
  const base = sim.node(1).lastLsn();
  sim.net.partition([1, 2], [3, 4, 5]);
  const xRef = sim.node(1).append(enc.encode("X"));
  const x = xRef.lsn;
  expect(x).toBe(base + 1);
  expect(sim.run(H, () => sim.store(2).lastLsn() === x)).toBe(true);
  sim.crash(1);

  // (b) S5 wins term 3 with the votes of S3, S4 and itself (S2, which holds X, is cut off), appends
  // an entry at X's LSN and crashes before replicating anything.
  sim.net.heal();
  sim.net.isolate(2, ALL);
  expect(
    sim.run(20 * H, () => {
      if (!sim.node(5).isLeader()) return false;
      sim.net.isolate(5, ALL); // its no-op and appends are lost in flight
      return true;
    }),
  ).toBe(true);
  const t3 = sim.node(5).currentTerm();
  expect(t3).toBe(3);
  sim.node(5).append(enc.encode("Y"));
  sim.run(H / 2);
  expect(sim.store(5).get(x)?.term).toBe(t3);
  for (const id of [3, 4]) expect(sim.store(id).lastLsn()).toBe(base);
  sim.crash(5);

  // (c) S1 restarts and wins term 4 with S2 and S3 (S2 cannot reach S3/S4, so it cannot win;
  // S1 does not reach S4, which keeps S4's log as it is).
  sim.net.heal();
  sim.net.block(2, 3);
  sim.net.block(2, 4);
  sim.net.block(1, 4);
  sim.startNode(1, { limits: { maxBatchEntries: 1 } });
  expect(leaderOf(sim, 1, 30 * H)).toBe(true);
  const t4 = sim.node(1).currentTerm();
  expect(t4).toBe(4);
  const noop = x + 1;
  expect(sim.store(1).get(noop)).toMatchObject({ term: t4, kind: "noop" });
  // X was appended in term 2; S1 leads term 4 and still holds it, so it may be waited for.
  const xAck = track(sim.node(1).waitFor(xRef, "one"));

  // S1 replicates X to S3 one entry at a time; cut S1 -> S3 the moment S3 stores X (S3's ack still
  // reaches S1, the no-op that would follow does not).
  expect(
    sim.run(5 * H, () => {
      if (sim.store(3).lastLsn() < x) return false;
      sim.net.blockOneWay(1, 3);
      return true;
    }),
  ).toBe(true);
  sim.run(H / 2, () => sim.store(2).lastLsn() === noop && matchOf(sim, 1, 2) === noop && matchOf(sim, 1, 3) === x);
  await microtasks();
  return { sim, x, noop, xAck, t2, t3, t4 };
}

function matchOf(sim: SimCluster, leader: number, peer: number): number {
  return sim
    .node(leader)
    .status()
    .peers.find((p) => p.id === peer)!.lsn;
}

group("Raft Figure 8: commit only by counting entries of the current term", () => {
  test("an earlier-term entry on a majority is not acknowledged; a later leader may overwrite it, nothing acknowledged is lost", async () => {
    const { sim, x, noop, xAck, t2, t3 } = await figure8UpToC(8);

    // X (term 2) is on S1, S2 and S3: a majority. The term-4 no-op is only on S1 and S2.
    expect(sim.node(1).isLeader()).toBe(true);
    expect(matchOf(sim, 1, 2)).toBe(noop);
    expect(matchOf(sim, 1, 3)).toBe(x);
    for (const id of [1, 2, 3]) expect(sim.store(id).get(x)?.term).toBe(t2);
    // ... yet it is not committed, not acknowledged at any level, and ackedBy does not count it.
    expect(sim.node(1).committed()).toBeLessThan(x);
    expect(xAck.done).toBe(false);
    expect(sim.node(1).ackedBy(1)).toBeLessThan(x);
    expect(sim.node(1).ackedBy(2)).toBeLessThan(x);
    expect(sim.acked.has(x)).toBe(false);

    // (d) S1 crashes. S5 returns and wins term 5 with S3 and S4 (its last term 3 beats their 2;
    // S2, which has the term-4 no-op and would refuse, is cut off) and overwrites X on S3.
    sim.crash(1);
    sim.net.heal();
    sim.net.isolate(2, ALL);
    sim.startNode(5);
    expect(leaderOf(sim, 5, 30 * H)).toBe(true);
    expect(sim.node(5).currentTerm()).toBe(5);
    sim.run(5 * H, () => sim.store(3).get(x)?.term === t3 && sim.node(5).committed() > noop);
    expect(sim.store(3).get(x)?.term).toBe(t3);
    expect(sim.node(5).committed()).toBeGreaterThan(noop); // X's slot now holds S5's entry, committed
    await microtasks();
    expect(xAck.error).not.toBeNull(); // S1's wait ended with "outcome unknown", never "acknowledged"

    // Everyone heals and converges on S5's history; X is gone, nothing acknowledged is lost.
    sim.net.heal();
    sim.startNode(1);
    expect(sim.converged(60 * H)).toBe(true);
    expect(sim.logsEqual()).toBe(true);
    for (const id of ALL) {
      expect(sim.store(id).get(x)?.term).toBe(t3);
      expect(sim.fsm(id).applied.map((e) => dec.decode(e.data))).not.toContain("X");
    }
    const final = sim.store(sim.leaders()[0]!);
    for (const a of sim.acked.values()) expect(final.get(a.lsn)?.term).toBe(a.term);
    expect(sim.violations).toEqual([]);
  });

  test("once the term-4 no-op is on a majority, X commits with it and S5 can no longer win", async () => {
    const { sim, x, noop, xAck, t2 } = await figure8UpToC(8);
    expect(sim.node(1).committed()).toBeLessThan(x);

    // (e) The no-op reaches S3: now an entry of S1's own term is on a majority and X commits with it.
    sim.net.heal();
    sim.net.block(1, 4);
    sim.net.block(2, 3);
    sim.net.block(2, 4);
    expect(sim.run(5 * H, () => sim.node(1).committed() >= noop)).toBe(true);
    await microtasks();
    expect(xAck.done).toBe(true);
    expect(sim.acked.get(x)?.term).toBe(t2);

    // S1 crashes; S5 returns but S3 (and S2) hold a term-4 entry and refuse it: it cannot win.
    sim.crash(1);
    sim.net.heal();
    sim.net.isolate(2, ALL);
    sim.startNode(5);
    sim.run(30 * H);
    expect(sim.elections.some((e) => e.id === 5 && e.term > 3)).toBe(false);
    expect(sim.leaders()).toEqual([]);

    // With S2 back, it leads (it holds X) and everyone converges with X kept.
    sim.net.heal();
    expect(sim.stableLeader(30 * H, 2)).toBe(2);
    sim.startNode(1);
    expect(sim.converged(60 * H)).toBe(true);
    for (const id of ALL) expect(sim.store(id).get(x)).toMatchObject({ term: t2, kind: "data" });
    for (const id of ALL) expect(sim.fsm(id).applied.map((e) => dec.decode(e.data))).toContain("X");
    expect(sim.violations).toEqual([]);
  });
});
