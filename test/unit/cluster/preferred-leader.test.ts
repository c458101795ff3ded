/**
 * The operator's preferred leader (ClusterMembers.preferred, ClusterNode.setPreferredLeader) and
 * `[cluster] failback`, on the in-memory transport with simulated time: a promoted node keeps
 * leading (no handback to the lowest ID), every node agrees on the preference and keeps it across
 * restarts, a preferred node that fails gets leadership back when it returns (failback auto) or
 * not (manual), clearing it brings back the lowest-ID rule, voter changes keep it, and an
 * ineligible preferred node is skipped.
 */
import { describe as group, expect, test } from "bun:test";
import { NotLeaderError, type NodeId } from "../../../lib/cluster/types.ts";
import { microtasks, SimCluster, track } from "./sim.ts";

const H = 100;

function cluster(ids: number[], extra: Partial<ConstructorParameters<typeof SimCluster>[0]> = {}) {
  return new SimCluster({
    ids,
    seed: 11,
    heartbeatMs: H,
    net: { minDelayMs: 1, maxDelayMs: 3, codec: true },
    ...extra,
  });
}

function expectClean(sim: SimCluster) {
  expect(sim.violations).toEqual([]);
  expect(sim.net.malformed).toEqual([]);
}

/** Sets the preference on the current leader and runs until it is committed. */
async function prefer(sim: SimCluster, id: NodeId | null): Promise<void> {
  const leader = sim.leaders()[0]!;
  const s = track(sim.node(leader).setPreferredLeader(id));
  for (let i = 0; i < 20 && !s.done && !s.error; i++) {
    sim.run(H / 2);
    await microtasks();
  }
  expect(s.error).toBeNull();
  expect(s.done).toBe(true);
}

/** What `wolf ctl scale promote <id>` does: prefer it, then hand over now. */
async function promote(sim: SimCluster, id: NodeId): Promise<void> {
  await prefer(sim, id);
  const leader = sim.leaders()[0]!;
  if (leader !== id) sim.node(leader).transferLeadership(id);
  expect(sim.stableLeader(10 * H, id)).toBe(id);
}

/** Runs `ms` and says whether any running node other than `id` led at any moment (false = `id` kept it). */
function someoneElseLed(sim: SimCluster, id: NodeId, ms: number): boolean {
  return sim.run(ms, () => sim.leaders().some((l) => l !== id));
}

const preferences = (sim: SimCluster) => sim.up().map((id) => sim.node(id).preferredLeader());

group("preferred leader", () => {
  test("promote 2: node 2 leads and keeps leading for 100 heartbeats; every node holds the preference", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.propose("all");
    await promote(sim, 2);
    expect(someoneElseLed(sim, 2, 100 * H)).toBe(false);
    expect(sim.leaders()).toEqual([2]);
    expect(preferences(sim)).toEqual([2, 2, 2]);
    const st = sim.node(1).status();
    expect(st.preferredLeader).toBe(2);
    expect(st.failback).toBe("auto");
    expect(sim.converged(10 * H)).toBe(true);
    expectClean(sim);
  });

  test("without a preference the lowest ID takes leadership back (today's rule, unchanged)", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.node(1).transferLeadership(2);
    expect(sim.stableLeader(10 * H, 2)).toBe(2);
    expect(sim.stableLeader(30 * H, 1)).toBe(1);
    expectClean(sim);
  });

  test("restart every node: the preference survives (committed config in the StableStore) and node 2 leads again", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    await promote(sim, 2);
    sim.propose("all");
    expect(sim.converged(10 * H)).toBe(true);
    for (const id of [1, 2, 3]) sim.crash(id);
    sim.run(5 * H);
    for (const id of [1, 2, 3]) sim.startNode(id);
    expect(preferences(sim)).toEqual([2, 2, 2]);
    expect(sim.stableLeader(30 * H, 2)).toBe(2);
    expect(someoneElseLed(sim, 2, 100 * H)).toBe(false);
    expectClean(sim);
  });

  test("failback auto: node 2 crashes, node 1 leads; node 2 returns and leads again once caught up", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    await promote(sim, 2);
    sim.crash(2);
    expect(sim.stableLeader(10 * H)).toBe(1); // lowest ID among the rest
    sim.propose("majority");
    sim.run(5 * H);
    sim.startNode(2);
    expect(sim.stableLeader(30 * H, 2)).toBe(2);
    expect(someoneElseLed(sim, 2, 50 * H)).toBe(false);
    expect(sim.converged(10 * H)).toBe(true);
    expectClean(sim);
  });

  test("failback manual: node 2 returns but node 1 keeps leading; promote moves it again", async () => {
    const sim = cluster([1, 2, 3], { node: { failback: "manual" } });
    expect(sim.stableLeader(10 * H)).toBe(1);
    await promote(sim, 2);
    sim.crash(2);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.run(5 * H);
    sim.startNode(2);
    expect(someoneElseLed(sim, 1, 100 * H)).toBe(false);
    expect(sim.leaders()).toEqual([1]);
    expect(sim.node(1).status().failback).toBe("manual");
    await promote(sim, 2);
    expect(someoneElseLed(sim, 2, 50 * H)).toBe(false);
    expectClean(sim);
  });

  test("failback manual and no preference: a lower ID that returns does not take leadership back", () => {
    const sim = cluster([1, 2, 3], { node: { failback: "manual" } });
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.crash(1);
    expect(sim.stableLeader(10 * H)).toBe(2);
    sim.startNode(1);
    expect(someoneElseLed(sim, 2, 100 * H)).toBe(false);
    expectClean(sim);
  });

  test("clear: the lowest-ID rule is back and node 1 takes leadership back", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    await promote(sim, 3);
    expect(someoneElseLed(sim, 3, 30 * H)).toBe(false);
    await prefer(sim, null);
    expect(preferences(sim)).toEqual([null, null, null]);
    expect(sim.stableLeader(30 * H, 1)).toBe(1);
    expect(someoneElseLed(sim, 1, 30 * H)).toBe(false);
    expectClean(sim);
  });

  test("a preferred node that may not lead is skipped: the lowest ID among the rest leads until it may again", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    await promote(sim, 3);
    sim.node(3).setEligible(false, "database down");
    sim.node(3).stepDown("database down");
    expect(sim.stableLeader(10 * H)).toBe(1);
    expect(someoneElseLed(sim, 1, 30 * H)).toBe(false);
    sim.node(3).setEligible(true, "database down");
    expect(sim.stableLeader(30 * H, 3)).toBe(3);
    expectClean(sim);
  });

  test("voter changes keep the preference: a dead voter is removed, a new node added, node 2 still preferred", async () => {
    const sim = cluster([1, 2, 3, 4], { node: { deadAfterMs: 20 * H, minVoters: 3 } });
    expect(sim.stableLeader(10 * H)).toBe(1);
    await promote(sim, 2);
    sim.crash(4);
    expect(sim.run(60 * H, () => sim.node(2).voters().length === 3)).toBe(true);
    expect(sim.node(2).voters()).toEqual([1, 2, 3]);
    sim.run(5 * H);
    expect(preferences(sim)).toEqual([2, 2, 2]);
    sim.wipe(4);
    expect(sim.run(60 * H, () => sim.node(2).voters().length === 4)).toBe(true);
    sim.run(5 * H);
    expect(preferences(sim)).toEqual([2, 2, 2, 2]);
    expect(sim.leaders()).toEqual([2]);
    expectClean(sim);
  });

  test("the preferred voter ranks first in an election: leader 1 crashes, node 3 (preferred) wins, not node 2", async () => {
    const sim = cluster([1, 2, 3], { node: { failback: "manual" } });
    expect(sim.stableLeader(10 * H)).toBe(1);
    await prefer(sim, 3);
    sim.propose("all");
    expect(sim.converged(10 * H)).toBe(true);
    sim.crash(1);
    expect(sim.stableLeader(10 * H)).toBe(3);
    expectClean(sim);
  });

  test("refused: on a follower (NotLeaderError with the leader), and a node that is no voter", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    const onFollower = track(sim.node(2).setPreferredLeader(3));
    const noVoter = track(sim.node(1).setPreferredLeader(9));
    await microtasks();
    expect(onFollower.error).toBeInstanceOf(NotLeaderError);
    expect((onFollower.error as NotLeaderError).leader).toBe(1);
    expect(noVoter.error?.message).toContain("node 9 is not a voter");
    expect(sim.node(1).preferredLeader()).toBeNull();
  });

  test("a leader that loses leadership before writing the preference rejects the request", async () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.net.isolate(1, [1, 2, 3]);
    const s = track(sim.node(1).setPreferredLeader(2));
    sim.run(10 * H);
    await microtasks();
    expect(s.error).toBeInstanceOf(NotLeaderError);
  });
});
