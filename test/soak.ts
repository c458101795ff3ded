/**
 * `npm run soak`: the long runs that do not fit the default suite, one after the other.
 *   1. the cluster core's seeded fault schedules (test/unit/cluster/randomized.test.ts), 10,000 of
 *      each family unless CLUSTER_SCHEDULES says otherwise (CLUSTER_SEED/CLUSTER_FAMILY/CLUSTER_N
 *      work as in the test);
 *   2. the scale fault suite against the real binary for --minutes (default 10), with its own
 *      options (--writers, --cpu-hogs, --kinds; SCALE_FAULTS_SEED replays a schedule).
 *
 *   npm run soak -- [--only cluster|scale] [--minutes N] [scale fault options]
 *
 * Exits non-zero if either part failed; each part prints its own one-line verdict.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const args = process.argv.slice(2);
const onlyAt = args.indexOf("--only");
const only = onlyAt >= 0 ? args[onlyAt + 1] : undefined;
const rest = onlyAt >= 0 ? args.filter((_, i) => i !== onlyAt && i !== onlyAt + 1) : args;
if (only !== undefined && only !== "cluster" && only !== "scale") {
  console.error('--only takes "cluster" or "scale"');
  process.exit(2);
}

let failed = 0;
if (only !== "scale") {
  console.log("### soak: cluster core schedules");
  const r = spawnSync(
    process.execPath,
    ["test", "--timeout=36000000", join(root, "test/unit/cluster/randomized.test.ts")],
    {
      cwd: root,
      stdio: "inherit",
      env: { ...process.env, CLUSTER_SCHEDULES: process.env.CLUSTER_SCHEDULES ?? "10000" },
    },
  );
  if (r.status !== 0) failed++;
}
if (only !== "cluster") {
  console.log("### soak: scale under faults");
  const r = spawnSync(process.execPath, [join(root, "test/integration/scale-faults-soak.ts"), ...rest], {
    cwd: root,
    stdio: "inherit",
  });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
