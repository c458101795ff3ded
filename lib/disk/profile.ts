/**
 * Counters for finding where a wolf disk daemon spends its time: FUSE requests per opcode,
 * journal appends and fdatasyncs, chunk stores and loads. Always on (a few additions per
 * operation); printed when the daemon exits with WOLF_DISK_PROFILE=1, and by the benchmark.
 */

export interface Timing {
  count: number;
  /** Total milliseconds. */
  ms: number;
  /** Longest single one (ms). */
  maxMs: number;
  bytes: number;
  /** Counts per power-of-two microsecond bucket: [0] < 2 µs, [i] < 2^(i+1) µs. */
  buckets: number[];
}

export const profile = {
  /** Per FUSE opcode name: time from the request reaching the JS thread to its reply. */
  ops: new Map<string, Timing>(),
  requests: 0,
  /** GETATTRs the reader Worker answered from the shared attribute cache (not in `requests`). */
  workerGetattrs: 0,
  /** FLUSHes of clean handles the reader Worker answered (not in `requests`). */
  workerFlushes: 0,
  journalAppends: 0,
  journalAppendBytes: 0,
  journalSyncs: timing(),
  chunkPuts: timing(),
  chunkDedup: 0,
  chunkSyncs: timing(),
  /** Chunks read back to merge a partial write (read-modify-write). */
  chunkLoads: timing(),
  chunkHashes: timing(),
  chunkReads: timing(),
};

export function timing(): Timing {
  return { count: 0, ms: 0, maxMs: 0, bytes: 0, buckets: new Array(24).fill(0) };
}

export function record(t: Timing, ms: number, bytes = 0): void {
  t.count++;
  t.ms += ms;
  if (ms > t.maxMs) t.maxMs = ms;
  t.bytes += bytes;
  const us = ms * 1000;
  t.buckets[Math.min(23, us < 2 ? 0 : Math.floor(Math.log2(us)))]!++;
}

/** The upper bound (µs) of the bucket holding the median. */
function medianUs(t: Timing): number {
  let seen = 0;
  for (let i = 0; i < t.buckets.length; i++) {
    seen += t.buckets[i]!;
    if (seen * 2 >= t.count) return 2 ** (i + 1);
  }
  return 0;
}

export function recordOp(name: string, ms: number, bytes: number): void {
  let t = profile.ops.get(name);
  if (!t) {
    t = timing();
    profile.ops.set(name, t);
  }
  record(t, ms, bytes);
}

function line(name: string, t: Timing): string {
  const avgUs = t.count ? (t.ms * 1000) / t.count : 0;
  const mib = t.bytes ? `  ${(t.bytes / 1024 / 1024).toFixed(1)} MiB` : "";
  return `${name.padEnd(16)}${String(t.count).padStart(9)}  avg ${avgUs.toFixed(0).padStart(7)} µs  p50 <${String(medianUs(t)).padStart(6)} µs  max ${t.maxMs.toFixed(1).padStart(8)} ms  total ${t.ms.toFixed(0).padStart(7)} ms${mib}`;
}

export function formatProfile(): string {
  const cpu = process.cpuUsage();
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const out = [
    `requests ${profile.requests} (+ ${profile.workerGetattrs} GETATTR, ${profile.workerFlushes} FLUSH answered by the reader); process CPU ${cpuMs.toFixed(0)} ms (user ${(cpu.user / 1000).toFixed(0)}, system ${(cpu.system / 1000).toFixed(0)})`,
    `journal: ${profile.journalAppends} appends (${(profile.journalAppendBytes / 1024).toFixed(0)} KiB), chunk dedup hits ${profile.chunkDedup}`,
  ];
  for (const [name, t] of [...profile.ops].sort((a, b) => b[1].ms - a[1].ms)) out.push(line(name, t));
  out.push(line("journal fsync", profile.journalSyncs));
  out.push(line("chunk put", profile.chunkPuts));
  out.push(line("chunk fdatasync", profile.chunkSyncs));
  out.push(line("chunk hash", profile.chunkHashes));
  out.push(line("chunk load(rmw)", profile.chunkLoads));
  out.push(line("chunk read", profile.chunkReads));
  return out.join("\n");
}
