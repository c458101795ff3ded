/**
 * `npm test`: builds dist/wolf, runs `bun test` and ends with one line
 * "N passed, N failed, N skipped" (bun prints its own summary to stderr in another shape, which CI
 * does not read). The exit code is bun's, and non-zero whenever anything failed.
 *
 *   bun test/run.ts [--unit] [--no-build] [bun test filters/options...]
 *   npm test -- net          runs only test files whose path contains "net"
 */
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const args = process.argv.slice(2);
const unitOnly = args.includes("--unit");
const noBuild = args.includes("--no-build");
const passThrough = args.filter((a) => a !== "--unit" && a !== "--no-build");

if (!noBuild) {
  const build = spawnSync(process.execPath, [join(root, "install", "build.ts")], { cwd: root, stdio: "inherit" });
  if (build.status !== 0) {
    console.error("build failed");
    console.log("0 passed, 1 failed, 0 skipped");
    process.exit(1);
  }
}

// bun 1.4.5 ignores bunfig's [test] timeout; integration tests set tighter deadlines of their own.
const hasTimeout = passThrough.some((a) => a.startsWith("--timeout"));
const bunArgs = [
  "test",
  ...(hasTimeout ? [] : ["--timeout=120000"]),
  ...(unitOnly ? ["test/unit"] : []),
  ...passThrough,
];
const child = spawn(process.execPath, bunArgs, {
  cwd: root,
  stdio: ["ignore", "inherit", "pipe"],
  env: { ...process.env, FORCE_COLOR: "0" },
});

const counts = { pass: 0, fail: 0, skip: 0, todo: 0 };
let sawSummary = false;
let pending = "";
child.stderr.on("data", (chunk: Buffer) => {
  process.stderr.write(chunk);
  pending += chunk.toString("utf8");
  const lines = pending.split("\n");
  pending = lines.pop() ?? "";
  for (const line of lines) scan(line);
});

function scan(line: string): void {
  // bun's summary: " 12 pass", " 1 fail", " 3 skip", " 2 todo" (one per line, after "Ran N tests").
  const m = /^\s*(\d+) (pass|fail|skip|todo)\s*$/.exec(line.replace(/\x1b\[[0-9;]*m/g, ""));
  if (m) {
    counts[m[2] as keyof typeof counts] = Number(m[1]);
    sawSummary = true;
  }
}

child.on("close", (code, signal) => {
  if (pending) scan(pending);
  let failed = counts.fail;
  if (!sawSummary || (code !== 0 && failed === 0)) {
    // bun crashed, was killed, or failed outside a test (e.g. an unhandled error between tests).
    console.error(`bun test ended without a clean summary (exit ${code ?? signal})`);
    failed = Math.max(failed, 1);
  }
  console.log(`${counts.pass} passed, ${failed} failed, ${counts.skip + counts.todo} skipped`);
  process.exit(code === 0 && failed === 0 ? 0 : code || 1);
});
