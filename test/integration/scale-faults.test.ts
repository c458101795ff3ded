/**
 * Jepsen-style fault suite for wolf scale against the compiled binary (issue 10): 3 nodes in
 * network namespaces, concurrent writers with unique keys through every node's API, and a seeded
 * nemesis (kill -9 of wolf or MariaDB, SIGSTOP of the leader beyond the election timeout,
 * nftables partitions: leader isolated, majority/minority, non-transitive bridge; a full disk under
 * a node's data dir), the last cycles with CPU-bound processes beside the cluster. After healing,
 * every acknowledged write must be on every node exactly once, CHECKSUM TABLE equal everywhere,
 * and no term led by two nodes. Prints a one-line verdict and the seed:
 *
 *   SCALE_FAULTS_SEED=<n> node_modules/.bin/bun test test/integration/scale-faults.test.ts   (replay)
 *   SCALE_FAULTS_CYCLES=<n> (default 32)        npm run soak -- --minutes N   (long runs)
 */
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { waitUntil } from "../../lib/common/wait.ts";
import { ensureBuilt } from "../harness/index.ts";
import { createSchema, faultSeed, faultSuiteSkipReason, NetScaleCluster, runFaults } from "./scale-faults-cluster.ts";

const skip = faultSuiteSkipReason();
const CYCLES = Number(process.env.SCALE_FAULTS_CYCLES ?? 32);
/** The last 8 cycles run beside CPU-bound processes. */
const HOGS_FROM = Math.max(1, CYCLES - 7);
let c: NetScaleCluster | undefined;

afterAll(async () => {
  await c?.close();
}, 120_000);

describe.skipIf(skip !== undefined)(`wolf scale under faults${skip ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    await ensureBuilt();
    c = await NetScaleCluster.create(3);
    await c.startAll();
    await createSchema(c);
  }, 300_000);

  test(`${CYCLES} nemesis cycles (the last ${CYCLES - HOGS_FROM + 1} beside CPU hogs): 0 acknowledged writes lost or duplicated, checksums equal, no split brain`, async () => {
    const seed = faultSeed();
    console.log(`[faults] seed ${seed} (replay: SCALE_FAULTS_SEED=${seed})`);
    let result: Awaited<ReturnType<typeof runFaults>>;
    try {
      result = await runFaults(c!, { seed, cycles: CYCLES, cpuHogCycles: [HOGS_FROM, CYCLES] });
    } catch (err) {
      console.error(`[faults] seed ${seed}: the run itself failed\n${c!.logs()}`);
      throw err;
    }
    console.log(result.line);
    console.log(
      `[faults] per fault: ${JSON.stringify(result.perKind)}; ${result.verdict.indeterminate} writes indeterminate (error or no answer), ${result.verdict.indeterminateLanded} of them landed`,
    );
    if (result.explanation) {
      const file = `/tmp/wolf-scale-faults-${seed}.log`;
      writeFileSync(file, `${result.line}\n${result.steps.join("\n")}\n${result.explanation}\n${c!.logs(Infinity)}\n`);
      console.error(`${result.explanation}\n[faults] full node logs: ${file}`);
    }
    expect(result.verdict.stuck).toBeUndefined();
    expect(result.cycles).toBe(CYCLES);
    expect([...result.verdict.lost.keys()]).toEqual([]);
    expect([...result.verdict.duplicated.keys()]).toEqual([]);
    expect(result.verdict.tallyMismatch).toEqual([]);
    expect(result.verdict.splitBrain).toEqual([]);
    expect(result.verdict.checksumsEqual).toBe(true);
    expect(result.verdict.acknowledged).toBeGreaterThan(CYCLES * 3);
  }, 900_000);

  // The core counts a follower's copy only when its log fsyncs (AppendReply.volatile, from
  // scale's WalLogStore.durable = wal.fsync): with the only durable follower stopped, nothing is
  // acknowledged, even though a follower that does not fsync holds the write.
  test("a follower with wal.fsync = false is not counted in acknowledgements", async () => {
    const cl = c!;
    const leader = await cl.waitLeader();
    const [volatile, durable] = cl.ids.filter((id) => id !== leader);
    if (volatile === undefined || durable === undefined) throw new Error("needs 3 nodes");
    cl.reconfigure(volatile, { wal: ["fsync = false"] });
    try {
      await cl.wolf(volatile)!.stop(5000);
      await cl.startWolf(volatile);
      await cl.waitConverged();
      const l = await cl.waitLeader();
      const d = cl.ids.find((id) => id !== l && id !== volatile)!;
      // The only durable follower is stopped: the leader plus a follower that does not fsync are
      // no durable majority, so nothing may be acknowledged (ack = majority, ack_fallback = fail).
      cl.wolf(d)!.kill("SIGSTOP");
      let r: { status: number; body: Record<string, unknown> };
      try {
        r = await cl.api(l, "POST", "/sql", { sql: "INSERT INTO app.acked (k, w) VALUES ('fsync-off', -1)" }, 15_000);
      } finally {
        cl.wolf(d)!.kill("SIGCONT");
      }
      console.log(
        `[faults] write with only a wal.fsync = false follower reachable: ${r.status} ${JSON.stringify(r.body)}`,
      );
      expect(r.status).not.toBe(200);
      expect(cl.wolf(l)!.output()).toContain("does not fsync its log");
      // Once the durable follower is back, writes are acknowledged again.
      await waitUntil(
        async () =>
          (await cl.api(l, "POST", "/sql", { sql: "INSERT INTO app.acked (k, w) VALUES ('fsync-on', -1)" })).status ===
          200,
        { timeoutMs: 30_000, what: "a write acknowledged with the durable follower back" },
      );
    } finally {
      cl.reconfigure(volatile, {});
      await cl.wolf(volatile)?.stop(5000);
      await cl.startWolf(volatile);
    }
  }, 120_000);
});
