/**
 * Long fault runs: the same cluster, nemesis and checker as scale-faults.test.ts, for as many
 * cycles as fit in --minutes (--cpu-hogs: the whole soak beside CPU-bound processes).
 *
 *   npm run soak -- --minutes 30 [--writers 4] [--cpu-hogs] [--kinds kill-wolf,disk-full,…] [--overlap]
 *   (--overlap: strike again once writable, without waiting for every node to recover; see
 *   FaultRunOptions.overlap)
 *   SCALE_FAULTS_SEED=<n> npm run soak -- --minutes 30     (replay a seed's schedule)
 *
 * Ends with the one-line verdict (exit 0) or the failure (exit 1); the steps and every node's log
 * go to /tmp/wolf-scale-faults-<seed>.log. Needs root, iproute2, nftables, socat and MariaDB.
 */
import { writeFileSync } from "node:fs";
import { ensureBuilt, runCleanupsAsync } from "../harness/index.ts";
import { FAULT_KINDS, type FaultKind } from "../harness/nemesis.ts";
import { createSchema, faultSeed, faultSuiteSkipReason, NetScaleCluster, runFaults } from "./scale-faults-cluster.ts";

const args = process.argv.slice(2);
function numArg(name: string, def: number): number {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`--${name} must be a positive number (got "${args[i + 1] ?? ""}")`);
    process.exit(2);
  }
  return v;
}

const minutes = numArg("minutes", 10);
const writers = numArg("writers", 4);
const hogs = args.includes("--cpu-hogs");
const overlap = args.includes("--overlap");
const kindsArg = args.indexOf("--kinds") >= 0 ? (args[args.indexOf("--kinds") + 1] ?? "") : undefined;
const kinds = kindsArg?.split(",").filter((k): k is FaultKind => (FAULT_KINDS as readonly string[]).includes(k));
if (kindsArg !== undefined && (!kinds || kinds.length === 0 || kinds.length !== kindsArg.split(",").length)) {
  console.error(`--kinds takes a comma-separated list of: ${FAULT_KINDS.join(", ")}`);
  process.exit(2);
}
const skip = faultSuiteSkipReason();
if (skip) {
  console.error(`scale faults: cannot run here: ${skip}`);
  process.exit(2);
}

const seed = faultSeed();
console.log(`[faults] seed ${seed}, ${minutes} minute(s) (replay: SCALE_FAULTS_SEED=${seed})`);
let c: NetScaleCluster | undefined;
let code = 1;
try {
  await ensureBuilt();
  c = await NetScaleCluster.create(3);
  await c.startAll();
  await createSchema(c);
  const result = await runFaults(c, {
    seed,
    untilMs: Date.now() + minutes * 60_000,
    writers,
    overlap,
    cpuHogCycles: hogs ? [1, Number.MAX_SAFE_INTEGER] : undefined,
    kinds,
  });
  console.log(`[faults] per fault: ${JSON.stringify(result.perKind)}`);
  const file = `/tmp/wolf-scale-faults-${seed}.log`;
  writeFileSync(file, `${result.line}\n${result.steps.join("\n")}\n${result.explanation ?? ""}\n${c.logs(Infinity)}\n`);
  if (result.explanation) console.error(result.explanation);
  console.log(`[faults] steps and full node logs: ${file}`);
  console.log(result.line);
  code = result.verdict.ok ? 0 : 1;
} catch (err) {
  console.error(`scale faults: seed ${seed}: the run failed: ${(err as Error).stack ?? err}`);
  if (c) console.error(c.logs());
  console.log(`scale faults: seed ${seed}, run aborted — FAILED; replay: SCALE_FAULTS_SEED=${seed}`);
} finally {
  await c?.close();
  await runCleanupsAsync();
}
process.exit(code);
