/**
 * Randomized fault schedules (seeded, reproducible): crashes, restarts, symmetric and one-way
 * partitions, leader isolation, loss and reordering, with clients writing throughout. Checked after
 * every simulated event (sim.ts): at most one leader per term (so never two leaders that can get an
 * entry acknowledged in the same term); every acknowledged (committed) entry is in the log of every
 * later leader; every node applies strictly in LSN order with no gaps or duplicates, and all nodes
 * apply the same entry at the same LSN. After the faults stop, the cluster must converge.
 *
 * Reproduce one schedule: CLUSTER_SEED=<seed> bun test test/unit/cluster/randomized.test.ts
 */
import { expect, test } from "bun:test";
import { seededRng } from "../../../lib/cluster/clock.ts";
import { SimCluster } from "./sim.ts";

const SCHEDULES = Number(process.env.CLUSTER_SCHEDULES ?? 1000);
const ONLY_SEED = process.env.CLUSTER_SEED ? Number(process.env.CLUSTER_SEED) : undefined;
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

function runSchedule(seed: number): Outcome {
  const rng = seededRng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rng() * xs.length)]!;
  const n = rng() < 0.35 ? 5 : 3;
  const ids = Array.from({ length: n }, (_, i) => i + 1);
  const sim = new SimCluster({ ids, seed, heartbeatMs: H, net: { minDelayMs: 0.5, maxDelayMs: 5 + rng() * 40, lossRate: 0 } });
  const log: string[] = [];
  const note = (s: string) => log.push(`${sim.clock.now().toFixed(0)} ${s}`);

  const aggressive = rng() < 0.5;
  const duration = 6000 + rng() * 6000;
  while (sim.clock.now() < duration) {
    const r = rng();
    const up = sim.up();
    const down = ids.filter((id) => !sim.isUp(id));
    if (r < 0.45) {
      sim.propose();
    } else if (r < 0.49 && aggressive) {
      // Crash whoever leads right after it appended: partly replicated entries across terms.
      sim.propose();
      sim.run(rng() * 8);
      const ls = sim.leaders();
      if (ls.length > 0) {
        note(`crash leader ${ls[0]}`);
        sim.crash(ls[0]!);
      }
    } else if (r < 0.52 && up.length > 0) {
      const id = pick(up);
      note(`crash ${id}`);
      sim.crash(id);
    } else if (r < 0.62 && down.length > 0) {
      const id = pick(down);
      note(`restart ${id}`);
      sim.restart(id);
    } else if (r < 0.67) {
      const side = ids.filter(() => rng() < 0.5);
      const other = ids.filter((id) => !side.includes(id));
      note(`partition ${side} | ${other}`);
      sim.net.heal();
      sim.net.partition(side, other);
    } else if (r < 0.72) {
      const a = pick(ids);
      const b = pick(ids.filter((x) => x !== a));
      note(`block ${a}>${b}`);
      sim.net.blockOneWay(a, b);
    } else if (r < 0.76) {
      const ls = sim.leaders();
      if (ls.length > 0) {
        note(`isolate leader ${ls[0]}`);
        sim.net.isolate(ls[0]!, ids);
      }
    } else if (r < 0.84) {
      note("heal");
      sim.net.heal();
    } else if (r < 0.88) {
      sim.net.lossRate = rng() < 0.5 ? 0 : rng() * 0.3;
      note(`loss ${sim.net.lossRate.toFixed(2)}`);
    } else if (r < 0.92) {
      sim.net.maxDelayMs = 2 + rng() * (rng() < 0.3 ? 250 : 40);
      note(`delay ${sim.net.maxDelayMs.toFixed(0)}`);
    }
    sim.run(10 + rng() * 300);
  }

  // Faults stop: everything heals and restarts; the cluster must converge.
  note("heal all");
  sim.net.heal();
  sim.net.lossRate = 0;
  sim.net.maxDelayMs = 5;
  for (const id of ids) if (!sim.isUp(id)) sim.restart(id);
  sim.propose();
  const converged = sim.converged(600 * H);
  const logsEqual = converged && sim.logsEqual();
  let missingAcked = 0;
  if (converged) {
    const store = sim.store(sim.leaders()[0]!);
    for (const [lsn, a] of sim.acked) if (store.get(lsn)?.term !== a.term) missingAcked++;
  }
  return {
    seed,
    ids,
    violations: sim.violations,
    converged,
    logsEqual,
    missingAcked,
    acked: sim.acked.size,
    elections: sim.elections.length,
    events: sim.clock.executed,
    log,
  };
}

test(`randomized fault schedules (${ONLY_SEED === undefined ? SCHEDULES : 1} seeds): safety after every event, convergence after healing`, () => {
  const seeds = ONLY_SEED === undefined ? Array.from({ length: SCHEDULES }, (_, i) => 1000 + i) : [ONLY_SEED];
  const started = performance.now();
  let acked = 0;
  let elections = 0;
  let events = 0;
  const failures: string[] = [];
  for (const seed of seeds) {
    const o = runSchedule(seed);
    acked += o.acked;
    elections += o.elections;
    events += o.events;
    const bad = o.violations.length > 0 || !o.converged || !o.logsEqual || o.missingAcked > 0;
    if (bad) {
      failures.push(
        `seed ${seed} (${o.ids.length} nodes): ${[...o.violations, !o.converged ? "did not converge" : "", !o.logsEqual ? "logs differ" : "", o.missingAcked ? `${o.missingAcked} acknowledged entries missing` : ""]
          .filter(Boolean)
          .join("; ")}\n    schedule tail: ${o.log.slice(-12).join(", ")}`,
      );
      if (failures.length >= 5) break;
    }
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.error(`[cluster] ${seeds.length} schedules, ${events} simulated events, ${elections} elections, ${acked} acknowledged entries checked, in ${secs} s`);
  expect(failures).toEqual([]);
  expect(acked).toBeGreaterThan(seeds.length); // the schedules did real work
}, 120_000);
