/**
 * Where a wolf disk daemon spends its time, one workload at a time: runs the daemon from source
 * (or dist/wolf with --bin) with WOLF_DISK_PROFILE=1, runs the workload from another process,
 * unmounts and prints the client's result and the daemon's profile (per FUSE op, journal
 * fsyncs, chunk stores/loads/hashes).
 *
 *   node_modules/.bin/bun test/bench/disk/profile.ts <workload> [--size-mb N] [--files N] [--bin] [--no-writeback] [--read-ahead-kb N]
 *   workloads: cmd (--cmd 'SHELL COMMAND', the mount in $MNT), roundtrip, meta, seqwrite, seqread, randread, randwrite, all
 *
 * Not part of `npm test`.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../../lib/common/wait.ts";
import { findMount } from "../../../lib/disk/mounts.ts";
import { ensureBuilt, execArgv, REPO_ROOT, runDir, runWolf, runWolfOnce, WOLF_BIN } from "../../harness/index.ts";
import { dropCaches, metadataRun } from "./workloads.ts";

const argv = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const workload = argv[0] ?? "all";
const SIZE_MB = opt("size-mb", 256);
const FILES = opt("files", 5000);
const useBin = argv.includes("--bin");
const BUN = join(REPO_ROOT, "node_modules", ".bin", "bun");

async function fio(dir: string, args: string[]): Promise<string> {
  const r = await execArgv(
    ["fio", "--name=p", `--directory=${dir}`, "--ioengine=psync", "--output-format=json", "--numjobs=1", ...args],
    { timeoutMs: 600_000 },
  );
  if (r.code !== 0) throw new Error(`fio failed: ${r.stderr}${r.stdout}`);
  const job = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))).jobs[0];
  const side = args.some((a) => /rw=(rand)?write/.test(a)) ? job.write : job.read;
  return `${(side.bw / 1024).toFixed(0)} MiB/s, ${side.iops.toFixed(0)} IOPS, clat p50 ${((side.clat_ns?.percentile?.["50.000000"] ?? 0) / 1000).toFixed(0)} µs`;
}

const workloads: Record<string, (mnt: string) => Promise<string>> = {
  // Any shell command run against the mount (in $MNT): --cmd 'python3 -c ...'
  cmd: async (mnt) => {
    const i = argv.indexOf("--cmd");
    if (i < 0) throw new Error("workload cmd needs --cmd 'COMMAND'");
    const r = await execArgv(["sh", "-c", argv[i + 1]!], { timeoutMs: 600_000, env: { ...process.env, MNT: mnt } });
    return (r.stdout + r.stderr).trim();
  },
  // GETXATTR is never cached by the kernel: one FUSE round trip per call.
  roundtrip: (mnt) =>
    execArgv(
      [
        "python3",
        "-c",
        `import os,time\np=${JSON.stringify(mnt)}+"/x"\nopen(p,"w").close()\nn=20000\nt=time.perf_counter()\nfor i in range(n):\n  try: os.getxattr(p,"user.none")\n  except OSError: pass\nd=time.perf_counter()-t\nprint(f"{n/d:.0f} getxattr/s, {d/n*1e6:.1f} µs each")`,
      ],
      { timeoutMs: 120_000 },
    ).then((r) => r.stdout.trim() + r.stderr),
  meta: async (mnt) => {
    const m = await metadataRun(mnt, FILES);
    return `create ${m.create.toFixed(0)}/s, stat ${m.stat.toFixed(0)}/s, unlink ${m.unlink.toFixed(0)}/s`;
  },
  seqwrite: (mnt) => fio(mnt, ["--rw=write", "--bs=1M", `--size=${SIZE_MB}M`, "--end_fsync=1"]),
  seqread: async (mnt) => {
    await fio(mnt, ["--rw=write", "--bs=1M", `--size=${SIZE_MB}M`, "--end_fsync=1"]);
    dropCaches(); // as run.ts does: the chunks come from the disk
    return fio(mnt, ["--rw=read", "--bs=1M", `--size=${SIZE_MB}M`]);
  },
  randread: async (mnt) => {
    await fio(mnt, ["--rw=write", "--bs=1M", `--size=${SIZE_MB}M`, "--end_fsync=1"]);
    return fio(mnt, ["--rw=randread", "--bs=4k", `--size=${SIZE_MB}M`, "--runtime=8", "--time_based"]);
  },
  randwrite: async (mnt) => {
    await fio(mnt, ["--rw=write", "--bs=1M", `--size=${SIZE_MB}M`, "--end_fsync=1"]);
    return fio(mnt, [
      "--rw=randwrite",
      "--bs=4k",
      `--size=${SIZE_MB}M`,
      "--runtime=8",
      "--time_based",
      "--end_fsync=1",
    ]);
  },
};

const names = workload === "all" ? Object.keys(workloads) : workload.split(",");
for (const n of names)
  if (!workloads[n]) throw new Error(`unknown workload ${n}; one of ${Object.keys(workloads).join(", ")}`);
if (useBin) await ensureBuilt();

for (const name of names) {
  const root = mkdtempSync(join(runDir(), "prof-"));
  const config = join(root, "disk.toml");
  const mnt = join(root, "mnt");
  mkdirSync(mnt);
  const command = useBin ? [WOLF_BIN] : [BUN, join(REPO_ROOT, "cmd", "wolf.ts")];
  const init = await runWolfOnce(["disk", "init", "-c", config], { command });
  if (init.code !== 0) throw new Error(`init failed: ${init.stderr}`);
  if (argv.includes("--no-writeback"))
    writeFileSync(config, readFileSync(config, "utf8").replace(/^writeback_cache = true$/m, "writeback_cache = false"));
  if (argv.includes("--read-ahead-kb"))
    writeFileSync(
      config,
      readFileSync(config, "utf8").replace(/^read_ahead_kb = \d+$/m, `read_ahead_kb = ${opt("read-ahead-kb", 1024)}`),
    );
  const daemon = runWolf(["disk", "mount", "-c", config, "--data-dir", join(root, "data"), "-m", mnt], {
    command,
    env: { NO_COLOR: "1", WOLF_DISK_PROFILE: "1" },
  });
  try {
    await daemon.waitForOutput(/mounted drive/, 30_000);
    const started = performance.now();
    const result = await workloads[name]!(mnt);
    const secs = (performance.now() - started) / 1000;
    const un = await runWolfOnce(["disk", "unmount", "-m", mnt], { command });
    if (un.code !== 0) throw new Error(`unmount failed: ${un.stderr}`);
    const code = await daemon.waitForExit(60_000);
    const out = daemon.output();
    console.log(`\n### ${name}: ${result} (${secs.toFixed(1)} s; daemon exit ${code})`);
    console.log(out.slice(out.indexOf("wolf disk profile:")));
  } finally {
    if (daemon.running) await daemon.stop(10_000);
    if (findMount(mnt)) await execArgv(["umount", "-l", mnt]);
    await waitUntil(() => !findMount(mnt), { timeoutMs: 10_000, what: `${mnt} unmounted` }).catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}
