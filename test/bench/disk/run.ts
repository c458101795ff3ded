/**
 * wolf disk benchmark, side by side with a plain local directory on the same disk:
 *   fio sequential write/read (1 MiB), random read/write (4 KiB), and a metadata run
 *   (create/stat/unlink 10k files). Each is run RUNS times per target; medians and ratios printed.
 *
 *   node_modules/.bin/bun test/bench/disk/run.ts [--runs N] [--size-mb N] [--files N] [--no-writeback]
 *
 * Needs fio (apt-get install -y fio) and root (FUSE mount, drop_caches). Not part of `npm test`.
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, execArgv, runDir } from "../../harness/index.ts";
import { mountDrive } from "../../integration/disk-helpers.ts";
import { dropCaches, metadataRun } from "./workloads.ts";

const argv = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : def;
};
const RUNS = opt("runs", 3);
/** --no-writeback: the wolf side without the kernel's writeback cache ([fuse] writeback_cache = false). */
const NO_WRITEBACK = argv.includes("--no-writeback");
const SIZE_MB = opt("size-mb", 512);
const META_FILES = opt("files", 10_000);

if (!Bun.which("fio")) {
  console.error("fio is missing: apt-get install -y fio");
  process.exit(2);
}

async function fio(dir: string, name: string, args: string[]): Promise<{ mibps: number; iops: number }> {
  const r = await execArgv(
    ["fio", `--name=${name}`, `--directory=${dir}`, "--ioengine=psync", "--output-format=json", "--numjobs=1", ...args],
    { timeoutMs: 600_000 },
  );
  if (r.code !== 0) throw new Error(`fio ${name} failed: ${r.stderr}${r.stdout}`);
  const job = JSON.parse(r.stdout.slice(r.stdout.indexOf("{"))).jobs[0];
  const side = args.some((a) => /rw=(rand)?write/.test(a)) ? job.write : job.read;
  return { mibps: side.bw / 1024, iops: side.iops };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Row {
  name: string;
  unit: string;
  wolf: number[];
  plain: number[];
}

async function suite(dir: string): Promise<Record<string, number>> {
  const size = `--size=${SIZE_MB}M`;
  const out: Record<string, number> = {};
  out["seq write 1M (MiB/s)"] = (await fio(dir, "seq", ["--rw=write", "--bs=1M", size, "--end_fsync=1"])).mibps;
  dropCaches();
  out["seq read 1M (MiB/s)"] = (await fio(dir, "seq", ["--rw=read", "--bs=1M", size])).mibps;
  dropCaches();
  out["rand read 4K (IOPS)"] = (
    await fio(dir, "seq", ["--rw=randread", "--bs=4k", size, "--runtime=10", "--time_based"])
  ).iops;
  out["rand write 4K (IOPS)"] = (
    await fio(dir, "seq", ["--rw=randwrite", "--bs=4k", size, "--runtime=10", "--time_based", "--end_fsync=1"])
  ).iops;
  rmSync(join(dir, "seq.0.0"), { force: true });
  const m = await metadataRun(dir, META_FILES);
  out["create (files/s)"] = m.create;
  out["stat (files/s)"] = m.stat;
  out["unlink (files/s)"] = m.unlink;
  return out;
}

await ensureBuilt();
const drive = await mountDrive(
  "",
  NO_WRITEBACK ? (toml) => toml.replace(/^writeback_cache = true$/m, "writeback_cache = false") : undefined,
);
const plain = join(runDir(), "plain");
mkdirSync(plain, { recursive: true });
const rows = new Map<string, Row>();
try {
  for (let run = 1; run <= RUNS; run++) {
    for (const [label, dir] of [
      ["wolf", drive.mnt],
      ["plain", plain],
    ] as const) {
      console.error(`run ${run}/${RUNS}: ${label} (${dir})`);
      const res = await suite(dir);
      for (const [name, value] of Object.entries(res)) {
        const row = rows.get(name) ?? { name, unit: "", wolf: [], plain: [] };
        row[label].push(value);
        rows.set(name, row);
      }
    }
  }
} finally {
  await drive.cleanup();
  rmSync(plain, { recursive: true, force: true });
}

const pad = (s: string, n: number) => s.padEnd(n);
console.log(
  `\nwolf disk${NO_WRITEBACK ? " (writeback_cache = false)" : ""} vs plain directory (same disk), median of ${RUNS} runs, fio psync, ${SIZE_MB} MiB files, ${META_FILES} files for metadata`,
);
console.log(`${pad("test", 24)}${pad("wolf", 12)}${pad("plain", 12)}${pad("ratio", 8)}runs (wolf / plain)`);
for (const row of rows.values()) {
  const w = median(row.wolf);
  const p = median(row.plain);
  const runs = row.wolf.map((x, i) => `${x.toFixed(0)}/${row.plain[i]!.toFixed(0)}`).join("  ");
  console.log(
    `${pad(row.name, 24)}${pad(w.toFixed(0), 12)}${pad(p.toFixed(0), 12)}${pad((w / p).toFixed(2), 8)}${runs}`,
  );
}
