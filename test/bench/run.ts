/**
 * `npm run bench`: runs every benchmark under test/bench/<name>/run.ts (or only those named on the
 * command line), one after another so they do not compete for the two cores.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

const here = import.meta.dir;
const wanted = process.argv.slice(2);
const benches = readdirSync(here, { withFileTypes: true })
  .filter((e) => e.isDirectory() && existsSync(join(here, e.name, "run.ts")))
  .map((e) => e.name)
  .filter((name) => wanted.length === 0 || wanted.some((w) => name.includes(w)));

if (benches.length === 0) {
  console.error(wanted.length ? `no benchmark matches ${wanted.join(", ")}` : "no benchmarks yet");
  process.exit(wanted.length ? 2 : 0);
}
let failed = 0;
for (const name of benches) {
  console.log(`\n### bench: ${name}`);
  const r = spawnSync(process.execPath, [join(here, name, "run.ts")], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
