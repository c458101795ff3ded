/**
 * WAL append throughput: entries/s and MB/s (payload bytes) with fsync on and off, one appender
 * awaiting each append and many concurrent appenders (group commit), next to a peer: the same
 * bytes written with plain write + fdatasync and no WAL logic (what the disk allows).
 *
 *   node_modules/.bin/bun test/bench/scale-wal/wal-append.bench.ts [--seconds 2] [--runs 3]
 */
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Wal } from "../../../lib/wal/wal.ts";

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const SECONDS = arg("seconds", 1.5);
const RUNS = arg("runs", 3);

/** Row-event-like payload: repetitive structure, varying values (compresses ~3-5x). */
function payload(size: number, seed: number): Uint8Array {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = i % 16 < 6 ? (seed * 31 + i * 7) & 0xff : i % 16;
  return b;
}

interface Result {
  entriesPerSec: number;
  mbPerSec: number;
  batches: number;
  entries: number;
}

async function runWal(opts: { fsync: boolean; size: number; concurrency: number }): Promise<Result> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "wolf-wal-bench-"));
  try {
    const wal = await Wal.open({ dir, fsync: opts.fsync });
    const data = Array.from({ length: 64 }, (_, i) => payload(opts.size, i));
    const deadline = performance.now() + SECONDS * 1000;
    let n = 0;
    const started = performance.now();
    const worker = async () => {
      while (performance.now() < deadline) {
        await wal.append(data[n++ & 63]!, 1);
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
    const secs = (performance.now() - started) / 1000;
    const s = wal.stats();
    await wal.close();
    return {
      entriesPerSec: s.lastLsn / secs,
      mbPerSec: (s.lastLsn * opts.size) / secs / 1e6,
      batches: s.batches,
      entries: s.lastLsn,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Peer: the disk's own limit for one writer doing write + fdatasync per entry (no encoding). */
function runRaw(opts: { fsync: boolean; size: number }): Result {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "wolf-wal-bench-"));
  try {
    const fd = fs.openSync(join(dir, "raw"), "w");
    const data = payload(opts.size + 40, 1);
    const deadline = performance.now() + SECONDS * 1000;
    const started = performance.now();
    let n = 0;
    let pos = 0;
    while (performance.now() < deadline) {
      pos += fs.writeSync(fd, data, 0, data.length, pos);
      if (opts.fsync) fs.fdatasyncSync(fd);
      n++;
    }
    fs.closeSync(fd);
    const secs = (performance.now() - started) / 1000;
    return { entriesPerSec: n / secs, mbPerSec: (n * opts.size) / secs / 1e6, batches: n, entries: n };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main() {
  console.log(`WAL append throughput (median of ${RUNS} runs x ${SECONDS}s), ${os.cpus().length} cores`);
  console.log(
    "fsync  size   appenders  | wal entries/s   MB/s  entries/batch | raw write(+fdatasync) entries/s  ratio",
  );
  for (const fsync of [true, false]) {
    for (const size of [300, 4096]) {
      const raw: Result[] = [];
      for (let r = 0; r < RUNS; r++) raw.push(runRaw({ fsync, size }));
      const rawEps = median(raw.map((x) => x.entriesPerSec));
      for (const concurrency of [1, 64]) {
        const res: Result[] = [];
        for (let r = 0; r < RUNS; r++) res.push(await runWal({ fsync, size, concurrency }));
        const eps = median(res.map((x) => x.entriesPerSec));
        const mbs = median(res.map((x) => x.mbPerSec));
        const perBatch = median(res.map((x) => x.entries / x.batches));
        console.log(
          `${fsync ? "on " : "off"}    ${String(size).padEnd(5)}  ${String(concurrency).padEnd(9)}  | ${eps.toFixed(0).padStart(9)}  ${mbs
            .toFixed(1)
            .padStart(
              7,
            )}  ${perBatch.toFixed(1).padStart(12)}  | ${rawEps.toFixed(0).padStart(24)}  ${(eps / rawEps).toFixed(2)}x`,
        );
      }
    }
  }
}

await main();
