/** Workloads both disk benchmarks run (run.ts: wolf vs a plain directory; profile.ts: one workload under the profiler). */
import { writeFileSync } from "node:fs";
import { execArgv } from "../../harness/index.ts";

/** Empties the page cache so reads come from the disk (a no-op when not root). */
export function dropCaches(): void {
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3");
  } catch {
    // not root: reads may come from the page cache on both sides alike
  }
}

/** create/stat/unlink of `files` empty files under `dir`, in a child process (never in the daemon's). */
export async function metadataRun(
  dir: string,
  files: number,
): Promise<{ create: number; stat: number; unlink: number }> {
  const script = `
    const fs = require("node:fs"); const d = ${JSON.stringify(dir)} + "/meta"; const n = ${files};
    fs.mkdirSync(d, { recursive: true });
    let t = performance.now();
    for (let i = 0; i < n; i++) fs.closeSync(fs.openSync(d + "/f" + i, "w"));
    const create = n / ((performance.now() - t) / 1000);
    t = performance.now();
    for (let i = 0; i < n; i++) fs.statSync(d + "/f" + i);
    const stat = n / ((performance.now() - t) / 1000);
    t = performance.now();
    for (let i = 0; i < n; i++) fs.unlinkSync(d + "/f" + i);
    const unlink = n / ((performance.now() - t) / 1000);
    fs.rmdirSync(d);
    console.log(JSON.stringify({ create, stat, unlink }));`;
  const r = await execArgv([process.execPath, "-e", script], { timeoutMs: 600_000 });
  if (r.code !== 0) throw new Error(`metadata run failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim());
}
