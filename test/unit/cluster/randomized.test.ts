/**
 * Randomized fault schedules (seeded, reproducible): crashes (some with power loss: what the node
 * had in flight is lost too), restarts, symmetric and one-way partitions, leader isolation, loss and
 * reordering, with clients writing throughout. Checked after every simulated event (sim.ts): at most
 * one leader per term (so never two leaders that can get an entry acknowledged in the same term);
 * every acknowledged entry (committed, ackedBy, or a resolved waitFor at ack one/majority/all) is in
 * the log of every leader of a later term, at the same LSN with the same term and payload, and no
 * node lacking one could still be elected (its log is not at least as up to date as a majority's);
 * every node applies strictly in LSN order with no gaps or duplicates, and all nodes apply the same
 * entry at the same LSN; no message is one the TCP codec would drop as malformed. After the faults
 * stop, the cluster must converge.
 *
 * The schedules are biased toward the rare interleavings that break consensus (Raft Figure 8):
 * mostly 5 nodes; small replication batches in half of them (so a new leader ships entries of
 * earlier terms to followers without its own no-op, as it does for any follower more than a batch
 * behind); "churn" bursts, often on a lossy network, that crash each new leader a few message delays
 * after it was elected or appended (partial replication across terms) and restart the previous
 * victim, so old leaders come back, win and ship their old entries partway; and short partitions
 * that flap around elections.
 *
 * A second family, "membership", covers what those never reach: 2, 3 or 5 nodes, often with a
 * witness (a voter that never leads), quorum auto or always, a short dead_after_ms so the leader
 * removes silent voters (down to min_voters, 3 or 2) and adds them back once they caught up, and a
 * node restarted with an empty data directory (at most one per schedule: losing two disks can lose
 * what only they held, and no protocol can help that).
 *
 * Reproduce one schedule: CLUSTER_SEED=<seed> bun test test/unit/cluster/randomized.test.ts
 * (CLUSTER_SCHEDULES=<n> changes the budget of each family; CLUSTER_FAMILY=default|membership runs one
 * family; CLUSTER_N=<n> gives every schedule n nodes; CLUSTER_ALL=1 keeps going after 5 failures, to
 * count them). `npm run soak` runs 10,000 of
 * each (CLUSTER_SCHEDULES overrides).
 */
import { expect, test } from "bun:test";
import { seededRng } from "../../../lib/cluster/clock.ts";
import type { AckLevel } from "../../../lib/cluster/types.ts";
import { microtasks, SimCluster } from "./sim.ts";

const SCHEDULES = Number(process.env.CLUSTER_SCHEDULES ?? 1000);
const ONLY_SEED = process.env.CLUSTER_SEED ? Number(process.env.CLUSTER_SEED) : undefined;
const FAMILIES = (process.env.CLUSTER_FAMILY ?? "default,membership").split(",") as Family[];
/** CLUSTER_N: every schedule with this many nodes (witness included) instead of the family's mix. */
const FORCED_N = process.env.CLUSTER_N ? Number(process.env.CLUSTER_N) : undefined;
type Family = "default" | "membership";
const H = 100; // simulated heartbeat; all timings scale with it

interface Outcome {
  seed: number;
  ids: number[];
  violations: string[];
  converged: boolean;
  logsEqual: boolean;
  missingAcked: number;
  acked: number;
  elections: number;
  events: number;
  log: string[];
}

async function runSchedule(seed: number, family: Family): Promise<Outcome> {
  const rng = seededRng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rng() * xs.length)]!;
  const membership = family === "membership";
  let n = membership ? pick([2, 3, 3, 5, 5]) : rng() < 0.7 ? 5 : 3;
  let witness = membership && n < 5 && rng() < 0.5 ? n + 1 : undefined;
  if (FORCED_N !== undefined) {
    n = witness !== undefined ? FORCED_N - 1 : FORCED_N;
    witness = witness !== undefined ? FORCED_N : undefined;
  }
  const ids = Array.from({ length: witness ?? n }, (_, i) => i + 1);
  const limits =
    rng() < 0.5 ? { maxBatchEntries: 1 + Math.floor(rng() * 3), maxInflight: 1 + Math.floor(rng() * 4) } : undefined;
  const membershipOptions = membership
    ? {
        quorum: pick(["auto", "always"] as const),
        deadAfterMs: Math.round((8 + rng() * 22) * H),
        minVoters: ids.length >= 3 && rng() < 0.4 ? 2 : 3,
      }
    : {};
  const sim = new SimCluster({
    ids,
    seed,
    heartbeatMs: H,
    net: { minDelayMs: 0.5, maxDelayMs: 5 + rng() * 40, lossRate: 0 },
    node: { limits, ...membershipOptions },
    perNode: (id) => (id === witness ? { witness: true } : {}),
  });
  const log: string[] = [];
  const note = (s: string) => log.push(`${sim.clock.now().toFixed(0)} ${s}`);
  let wiped = false;
  const ack = (): AckLevel | undefined => pick<AckLevel | undefined>([undefined, "one", "majority", "all"]);
  /** Time for a few message hops: crashing within it leaves entries on some followers only. */
  const hops = () => rng() * 2 * sim.net.maxDelayMs;
  note(
    `${family}: ${n} nodes${witness ? ` + witness ${witness}` : ""}${limits ? ` batch ${limits.maxBatchEntries} inflight ${limits.maxInflight}` : ""}` +
      (membership ? ` ${JSON.stringify(membershipOptions)}` : ""),
  );

  /**
   * Figure-8 churn: crashes whoever leads a few message delays after it was elected or appended
   * (often on a lossy network, so its newest entries reach only some followers), then restarts the
   * previous victim, so old leaders holding entries of earlier terms come back, win, ship those
   * entries partway and crash again.
   */
  const churn = () => {
    const rounds = 2 + Math.floor(rng() * 4);
    const loss = sim.net.lossRate;
    if (rng() < 0.6) sim.net.lossRate = 0.1 + rng() * 0.4;
    note(`churn (loss ${sim.net.lossRate.toFixed(2)})`);
    let previous: number | undefined;
    for (let i = 0; i < rounds; i++) {
      if (!sim.run(20 * H, () => sim.leaders().length > 0)) break;
      const l = sim.leaders()[0]!;
      for (let k = Math.floor(rng() * 4); k > 0; k--) sim.propose(ack());
      sim.run(hops());
      if (sim.isUp(l)) {
        const powerLoss = rng() < 0.5;
        note(`churn: crash leader ${l}${powerLoss ? " (power loss)" : ""}`);
        sim.crash(l, powerLoss);
      }
      const down = ids.filter((id) => !sim.isUp(id) && id !== l);
      const back =
        previous !== undefined && !sim.isUp(previous) && rng() < 0.8
          ? previous
          : down.length > 0 && rng() < 0.5
            ? pick(down)
            : undefined;
      if (back !== undefined) {
        note(`churn: restart ${back}`);
        sim.restart(back);
      }
      previous = l;
      // Keep a majority running so elections continue.
      while (sim.up().length < Math.floor(n / 2) + 1) sim.restart(pick(ids.filter((id) => !sim.isUp(id))));
    }
    sim.net.lossRate = loss;
  };

  const duration = 6000 + rng() * 6000;
  while (sim.clock.now() < duration) {
    const r = rng();
    const up = sim.up();
    const down = ids.filter((id) => !sim.isUp(id));
    if (r < 0.4) {
      sim.propose(ack());
    } else if (r < 0.46) {
      // Crash whoever leads right after it appended: partly replicated entries across terms.
      sim.propose(ack());
      sim.run(hops());
      const ls = sim.leaders();
      if (ls.length > 0) {
        const powerLoss = rng() < 0.5;
        note(`crash leader ${ls[0]}${powerLoss ? " (power loss)" : ""}`);
        sim.crash(ls[0]!, powerLoss);
      }
    } else if (r < 0.52) {
      churn();
    } else if (r < 0.55 && up.length > 0) {
      const id = pick(up);
      note(`crash ${id}`);
      sim.crash(id);
    } else if (r < 0.65 && down.length > 0) {
      const id = pick(down);
      note(`restart ${id}`);
      sim.restart(id);
    } else if (r < 0.69) {
      const side = ids.filter(() => rng() < 0.5);
      const other = ids.filter((id) => !side.includes(id));
      note(`partition ${side} | ${other}`);
      sim.net.heal();
      sim.net.partition(side, other);
    } else if (r < 0.73) {
      // A short partition around an election: some nodes miss the new leader's first appends.
      const side = ids.filter(() => rng() < 0.5);
      const other = ids.filter((id) => !side.includes(id));
      note(`flap ${side} | ${other}`);
      sim.net.partition(side, other);
      sim.run(rng() * 4 * H);
      sim.net.heal();
    } else if (r < 0.76) {
      const a = pick(ids);
      const b = pick(ids.filter((x) => x !== a));
      note(`block ${a}>${b}`);
      sim.net.blockOneWay(a, b);
    } else if (r < 0.79) {
      const ls = sim.leaders();
      if (ls.length > 0) {
        note(`isolate leader ${ls[0]}`);
        sim.net.isolate(ls[0]!, ids);
      }
    } else if (r < 0.86) {
      note("heal");
      sim.net.heal();
    } else if (r < 0.89) {
      sim.net.lossRate = rng() < 0.5 ? 0 : rng() * 0.3;
      note(`loss ${sim.net.lossRate.toFixed(2)}`);
    } else if (r < 0.92) {
      sim.net.maxDelayMs = 2 + rng() * (rng() < 0.3 ? 250 : 40);
      note(`delay ${sim.net.maxDelayMs.toFixed(0)}`);
    } else if (membership && r < 0.95 && !wiped) {
      const id = pick(ids);
      wiped = true;
      note(`wipe ${id} (restart with an empty data directory)`);
      sim.wipe(id);
    } else if (membership && r < 0.97 && up.length > 1) {
      // Long enough for the leader to decide the node is dead and remove it (down to min_voters).
      const id = pick(up);
      note(`crash ${id} for a while`);
      sim.crash(id);
      sim.run(membershipOptions.deadAfterMs! * (1 + rng()));
    }
    sim.run(10 + rng() * 300);
    await microtasks(); // resolved waitFor calls record their acknowledgements
  }

  // Faults stop: everything heals and restarts; the cluster must converge.
  note("heal all");
  sim.net.heal();
  sim.net.lossRate = 0;
  sim.net.maxDelayMs = 5;
  for (const id of ids) if (!sim.isUp(id)) sim.restart(id);
  sim.rediscover();
  sim.propose("all");
  // Removed voters come back through auto-join once caught up: allow for dead_after_ms + catching up.
  const converged = sim.converged(600 * H);
  await microtasks();
  const logsEqual = converged && sim.logsEqual();
  if (!converged) {
    // What each node was doing when it gave up: enough to see which rule held the cluster back.
    for (const id of ids) {
      const s = sim.node(id).status();
      note(
        `end: node ${id} ${s.role} term ${s.term} leader ${s.leader} last ${sim.store(id).lastLsn()} commit ${sim.node(id).committed()} ` +
          `voters ${sim.node(id).voters()} state ${s.state}${s.neverLeader ? " never-leader" : ""}`,
      );
    }
  }
  let missingAcked = 0;
  if (converged) {
    const store = sim.store(sim.leaders()[0]!);
    for (const a of sim.acked.values()) if (store.get(a.lsn)?.term !== a.term) missingAcked++;
  }
  return {
    seed,
    ids,
    violations: [...sim.violations, ...sim.net.malformed.map((m) => `malformed message: ${m}`)],
    converged,
    logsEqual,
    missingAcked,
    acked: sim.acked.size,
    elections: sim.elections.length,
    events: sim.clock.executed,
    log,
  };
}

for (const family of FAMILIES) {
  test(`randomized fault schedules, ${family} (${ONLY_SEED === undefined ? SCHEDULES : 1} seeds): safety after every event, convergence after healing`, async () => {
    const seeds = ONLY_SEED === undefined ? Array.from({ length: SCHEDULES }, (_, i) => 1000 + i) : [ONLY_SEED];
    const started = performance.now();
    let acked = 0;
    let elections = 0;
    let events = 0;
    let failed = 0;
    let ran = 0;
    const failures: string[] = [];
    for (const seed of seeds) {
      const o = await runSchedule(seed, family);
      ran++;
      acked += o.acked;
      elections += o.elections;
      events += o.events;
      const bad = o.violations.length > 0 || !o.converged || !o.logsEqual || o.missingAcked > 0;
      if (bad) {
        failed++;
        if (failures.length < 5) {
          failures.push(
            `seed ${seed} (${o.ids.length} nodes): ${[
              ...o.violations.slice(0, 3),
              !o.converged ? "did not converge" : "",
              !o.logsEqual ? "logs differ" : "",
              o.missingAcked ? `${o.missingAcked} acknowledged entries missing` : "",
            ]
              .filter(Boolean)
              .join("; ")}\n    schedule: ${o.log[0]} ... ${o.log.slice(-12).join(", ")}`,
          );
        }
        if (!process.env.CLUSTER_ALL && failed >= 5) break;
      }
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    console.error(
      `[cluster] ${family}: ${ran} of ${seeds.length} schedules run, ${failed} failed, ${events} simulated events, ${elections} elections, ${acked} acknowledged entries checked, in ${secs} s`,
    );
    expect(failures).toEqual([]);
    expect(acked).toBeGreaterThan(seeds.length); // the schedules did real work
  }, 600_000);
}
