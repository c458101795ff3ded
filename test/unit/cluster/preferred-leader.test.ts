/**
 * The operator's preferred leader (ClusterMembers.preferred, ClusterNode.setPreferredLeader) and
 * `[cluster] failback`, on the in-memory transport with simulated time: a promoted node keeps
 * leading (no handback to the lowest ID), every node agrees on the preference and keeps it across
 * restarts, a preferred node that fails gets leadership back when it returns (failback auto) or
 * not (manual), clearing it brings back the lowest-ID rule, voter changes keep it, and an
 * ineligible preferred node is skipped. Then randomized schedules (crashes, restarts, partitions,
 * loss) with preference changes and transfers mixed in: the safety checks of sim.ts after every
 * event, and after healing the cluster converges on the final preference (failback auto).
 * PREFERRED_SCHEDULES=<n> changes their number (default 300); PREFERRED_SEED=<seed> runs one.
 */
import { describe as group, expect, test } from "bun:test";
import { seededRng } from "../../../lib/cluster/clock.ts";
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

  test("a hold reaches the leader at once (a ping on the change): a transfer to that node is refused a network delay later", () => {
    const sim = cluster([1, 2, 3]);
    expect(sim.stableLeader(10 * H)).toBe(1);
    sim.run(H); // past the tick that just pinged
    sim.node(2).setEligible(false, "database down");
    sim.run(H / 20); // 5 ms: a few network delays, far less than a heartbeat
    expect(() => sim.node(1).transferLeadership(2)).toThrow("node 2 may not lead right now");
    expect(sim.leaders()).toEqual([1]);
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

const SCHEDULES = Number(process.env.PREFERRED_SCHEDULES ?? 300);
const ONLY_SEED = process.env.PREFERRED_SEED ? Number(process.env.PREFERRED_SEED) : undefined;

/** One randomized schedule; returns what went wrong (empty: nothing). */
async function schedule(seed: number): Promise<string[]> {
  const rng = seededRng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
  const ids = rng() < 0.6 ? [1, 2, 3] : [1, 2, 3, 4, 5];
  const failback = rng() < 0.7 ? "auto" : "manual";
  const sim = new SimCluster({
    ids,
    seed,
    heartbeatMs: H,
    net: { minDelayMs: 1, maxDelayMs: 5, lossRate: rng() < 0.3 ? 0.05 : 0, codec: true },
    node: { failback },
  });
  const problems: string[] = [];
  for (let step = 0; step < 40; step++) {
    const r = rng();
    const up = sim.up();
    if (r < 0.15 && up.length > Math.floor(ids.length / 2) + 1) sim.crash(pick(up), rng() < 0.5);
    else if (r < 0.3) {
      const down = ids.filter((id) => !sim.isUp(id));
      if (down.length) sim.startNode(pick(down));
    } else if (r < 0.4) sim.net.partition(...splitInTwo(ids, rng));
    else if (r < 0.55) sim.net.heal();
    else if (r < 0.75) {
      for (const l of sim.leaders()) {
        sim
          .node(l)
          .setPreferredLeader(rng() < 0.2 ? null : pick(ids))
          .catch(() => {});
      }
    } else if (r < 0.85) {
      for (const l of sim.leaders()) {
        try {
          sim.node(l).transferLeadership(pick(ids.filter((id) => id !== l)));
        } catch {
          // not a target right now (down, not a voter it replicates to): nothing to check
        }
      }
    }
    sim.propose(pick(["none", "one", "majority"] as const));
    sim.run(H * (1 + rng() * 8));
    await microtasks();
  }
  sim.net.heal();
  for (const id of ids) if (!sim.isUp(id)) sim.startNode(id);
  const leader = sim.stableLeader(60 * H);
  if (leader === undefined) problems.push("no stable leader after healing");
  else {
    sim.propose("majority");
    if (!sim.converged(60 * H)) problems.push("did not converge after healing");
    const prefs = new Set(sim.up().map((id) => sim.node(id).preferredLeader()));
    if (prefs.size !== 1) problems.push(`nodes disagree on the preferred leader: ${[...prefs].join(", ")}`);
    const want = [...prefs][0] ?? null;
    if (failback === "auto" && prefs.size === 1) {
      const expected = want ?? Math.min(...ids);
      if (sim.stableLeader(60 * H, expected) !== expected)
        problems.push(
          `failback auto: node ${expected} (preferred ${want ?? "none"}) does not lead; ${sim.leaders()} does`,
        );
    }
  }
  return [...sim.violations, ...sim.net.malformed.map((m) => `malformed: ${m}`), ...problems];
}

function splitInTwo(ids: number[], rng: () => number): [number[], number[]] {
  const a = ids.filter(() => rng() < 0.5);
  const b = ids.filter((id) => !a.includes(id));
  return a.length && b.length ? [a, b] : [ids.slice(0, 1), ids.slice(1)];
}

test(`randomized schedules with preference changes (${ONLY_SEED === undefined ? SCHEDULES : 1} seeds): safe, and the preference wins after healing`, async () => {
  const seeds = ONLY_SEED === undefined ? Array.from({ length: SCHEDULES }, (_, i) => 9000 + i) : [ONLY_SEED];
  const failed: string[] = [];
  for (const seed of seeds) {
    const problems = await schedule(seed);
    if (problems.length) failed.push(`seed ${seed}: ${problems.slice(0, 3).join("; ")}`);
    if (failed.length >= 5) break;
  }
  expect(failed).toEqual([]);
}, 300_000);
