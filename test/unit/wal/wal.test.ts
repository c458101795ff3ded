import { afterEach, describe, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { waitUntil } from "../../../lib/common/wait.ts";
import { WalCorruptionError } from "../../../lib/wal/errors.ts";
import { RECORD_HEADER_BYTES } from "../../../lib/wal/record.ts";
import { segmentsToRemove } from "../../../lib/wal/retention.ts";
import { SEGMENT_HEADER_BYTES } from "../../../lib/wal/segment.ts";
import { Wal, type WalOptions } from "../../../lib/wal/wal.ts";

const dirs: string[] = [];
const open: Wal[] = [];
afterEach(async () => {
  for (const w of open.splice(0)) await w.close().catch(() => {});
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(join(os.tmpdir(), "wolf-wal-test-"));
  dirs.push(d);
  return d;
}

async function openWal(opts: WalOptions): Promise<Wal> {
  const w = await Wal.open(opts);
  open.push(w);
  return w;
}

async function reopen(w: Wal, opts: WalOptions): Promise<Wal> {
  await w.close();
  return openWal(opts);
}

/** A payload that says which LSN it belongs to and compresses (like row events do). */
function payload(i: number, size = 300): Uint8Array {
  const text = `txn ${i} `.padEnd(size, `row(${i % 7},'abc${i % 13}') `);
  return new TextEncoder().encode(text.slice(0, size));
}
const text = (b: Uint8Array) => new TextDecoder().decode(b);

function segmentFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith(".wal"))
    .sort();
}

describe("wal: append, read, reopen", () => {
  test("entries come back with their LSN, term, kind and bytes, also after reopen and across segments", async () => {
    const dir = tempDir();
    const opts = { dir, segmentBytes: 16 * 1024, compressMinBytes: 1000 };
    let w = await openWal(opts);
    expect(w.firstLsn).toBe(1);
    expect(w.lastLsn).toBe(0);
    for (let i = 1; i <= 300; i++) {
      const lsn = await w.append(payload(i, i % 50 === 0 ? 5000 : 300), i <= 100 ? 1 : 2);
      expect(lsn).toBe(i);
    }
    await w.appendEntries([{ lsn: 301, term: 3, kind: 2, timeMs: 123, data: new Uint8Array([1, 2, 3]) }]);
    expect(segmentFiles(dir).length).toBeGreaterThan(3);
    w = await reopen(w, opts);
    expect(w.lastLsn).toBe(301);
    expect(w.lastTerm).toBe(3);
    expect(w.termAt(100)).toBe(1);
    expect(w.termAt(101)).toBe(2);
    expect(w.termAt(0)).toBe(0);
    const all = w.read(1, { maxBytes: 1e9 });
    expect(all.map((e) => e.lsn)).toEqual(Array.from({ length: 301 }, (_, i) => i + 1));
    for (const e of all.slice(0, 300)) expect(text(e.data)).toBe(text(payload(e.lsn, e.lsn % 50 === 0 ? 5000 : 300)));
    expect(all[300]).toEqual({ lsn: 301, term: 3, kind: 2, timeMs: 123, data: new Uint8Array([1, 2, 3]) });
    // Range reads with limits, crossing segment boundaries.
    const mid = w.read(95, { toLsn: 205 });
    expect(mid[0]!.lsn).toBe(95);
    expect(mid[mid.length - 1]!.lsn).toBe(205);
    const limited = w.read(10, { maxBytes: 1000 });
    expect(limited.length).toBe(3);
    expect(w.read(1, { maxBytes: 1 }).length).toBe(1);
    expect(w.read(302)).toEqual([]);
    // Appends continue after reopen.
    expect(await w.append(payload(302), 3)).toBe(302);
    await expect(w.append(payload(303), 2)).rejects.toThrow(/term 2 after term 3/);
  });

  test("compression is applied where it pays and can be turned off", async () => {
    const a = await openWal({ dir: tempDir() });
    const b = await openWal({ dir: tempDir(), compression: "none" });
    for (let i = 1; i <= 50; i++) {
      await a.append(payload(i, 4000), 1);
      await b.append(payload(i, 4000), 1);
    }
    expect(a.stats().bytes).toBeLessThan(b.stats().bytes / 4);
    expect(text(a.read(7)[0]!.data)).toBe(text(payload(7, 4000)));
  });

  test("appendEntries must continue the log exactly", async () => {
    const w = await openWal({ dir: tempDir(), initialLsn: 10 });
    expect(w.lastLsn).toBe(9);
    await expect(w.appendEntries([{ lsn: 11, term: 1, timeMs: 0, data: payload(1) }])).rejects.toThrow(
      /does not continue/,
    );
    await w.appendEntries([
      { lsn: 10, term: 1, timeMs: 0, data: payload(10) },
      { lsn: 11, term: 1, timeMs: 0, data: payload(11) },
    ]);
    expect(w.lastLsn).toBe(11);
    expect(() => w.read(5)).toThrow(/removed by retention/);
  });

  test("appendSync is durable on return and interoperates with reads", async () => {
    const dir = tempDir();
    let w = await openWal({ dir, segmentBytes: 4096 });
    w.appendSync(
      Array.from({ length: 40 }, (_, i) => ({
        lsn: i + 1,
        term: 4,
        kind: 1,
        timeMs: Date.now(),
        data: payload(i + 1),
      })),
    );
    expect(w.lastLsn).toBe(40);
    w = await reopen(w, { dir, segmentBytes: 4096 });
    expect(w.read(40)[0]!.kind).toBe(1);
    expect(w.lastTerm).toBe(4);
  });

  test("waitFor resolves when an LSN becomes durable, or reports a timeout", async () => {
    const w = await openWal({ dir: tempDir(), fsync: false });
    const waiting = w.waitFor(3);
    expect(await w.waitFor(3, 20)).toBe(false);
    for (let i = 1; i <= 3; i++) void w.append(payload(i), 1);
    expect(await waiting).toBe(true);
    expect(w.lastLsn).toBe(3);
  });
});

describe("wal: group commit", () => {
  test("concurrent appenders get distinct, ordered LSNs and share fsyncs", async () => {
    const w = await openWal({ dir: tempDir() });
    const n = 2000;
    const lsns = await Promise.all(Array.from({ length: n }, (_, i) => w.append(payload(i + 1), 1)));
    expect(lsns).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const s = w.stats();
    expect(s.lastLsn).toBe(n);
    expect(s.fsyncs).toBe(s.batches);
    expect(s.batches).toBeLessThan(n / 10);
    // Every entry is where its LSN says.
    for (const e of w.read(1, { maxBytes: 1e9 })) expect(text(e.data)).toBe(text(payload(e.lsn)));
  });

  test("waves of appenders while a batch is being synced form the next batch", async () => {
    const w = await openWal({ dir: tempDir(), maxBatchEntries: 64 });
    const all: Promise<number>[] = [];
    for (let wave = 0; wave < 10; wave++) {
      for (let i = 0; i < 100; i++) all.push(w.append(payload(wave * 100 + i), 1));
      await Promise.resolve();
    }
    const lsns = await Promise.all(all);
    expect(new Set(lsns).size).toBe(1000);
    expect(lsns).toEqual([...lsns].sort((a, b) => a - b));
    expect(w.stats().batches).toBeGreaterThanOrEqual(1000 / 64);
  });

  test("batchWaitMs lingers to grow a batch; a full batch does not wait", async () => {
    const w = await openWal({ dir: tempDir(), batchWaitMs: 1000, maxBatchEntries: 50 });
    const started = performance.now();
    await Promise.all(Array.from({ length: 50 }, (_, i) => w.append(payload(i), 1)));
    expect(performance.now() - started).toBeLessThan(900);
    expect(w.stats().batches).toBe(1);
  });
});

describe("wal: recovery", () => {
  async function filled(dir: string, n: number, opts: Partial<WalOptions> = {}): Promise<void> {
    const w = await Wal.open({ dir, compression: "none", ...opts });
    // One entry per batch, so batches are easy to reason about.
    for (let i = 1; i <= n; i++) await w.append(payload(i), 1);
    await w.close();
  }
  const lastSegment = (dir: string) => join(dir, segmentFiles(dir).at(-1)!);

  test("a torn tail (partial last record) is cut and the log continues", async () => {
    const dir = tempDir();
    await filled(dir, 20);
    const path = lastSegment(dir);
    const size = fs.statSync(path).size;
    fs.truncateSync(path, size - 100); // the last record lost its end
    const w = await openWal({ dir });
    expect(w.lastLsn).toBe(19);
    expect(w.recovery[0]!.truncatedBytes).toBeGreaterThan(0);
    expect(await w.append(payload(20), 1)).toBe(20);
    expect(text(w.read(20)[0]!.data)).toBe(text(payload(20)));
  });

  test("garbage and zeros after the last record are a torn tail", async () => {
    const dir = tempDir();
    await filled(dir, 10);
    fs.appendFileSync(lastSegment(dir), new Uint8Array(4096)); // zero-filled (e.g. preallocated) tail
    let w = await openWal({ dir });
    expect(w.lastLsn).toBe(10);
    await w.close();
    fs.appendFileSync(lastSegment(dir), new Uint8Array(333).fill(0xa7));
    w = await openWal({ dir });
    expect(w.lastLsn).toBe(10);
    expect(fs.statSync(lastSegment(dir)).size).toBe(w.stats().bytes);
  });

  test("damage inside the last, unsynced batch is a torn tail even if later records of it survived", async () => {
    const dir = tempDir();
    const w = await openWal({ dir, compression: "none" });
    await w.append(payload(1), 1);
    await Promise.all([2, 3, 4].map((i) => w.append(payload(i), 1))); // one batch: 2..4
    expect(w.stats().batches).toBe(2);
    await w.close();
    open.length = 0;
    const path = lastSegment(dir);
    const buf = fs.readFileSync(path);
    const rec = RECORD_HEADER_BYTES + 300;
    buf[SEGMENT_HEADER_BYTES + rec + 50]! ^= 0xff; // inside record 2; 3 and 4 stay intact
    fs.writeFileSync(path, buf);
    const again = await openWal({ dir });
    expect(again.lastLsn).toBe(1);
  });

  test("damage followed by a later completed batch is refused with a clear error", async () => {
    const dir = tempDir();
    await filled(dir, 10);
    const path = lastSegment(dir);
    const buf = fs.readFileSync(path);
    const rec = RECORD_HEADER_BYTES + 300;
    buf[SEGMENT_HEADER_BYTES + 3 * rec + 60]! ^= 0x01; // a bit flip in record 4 of 10
    fs.writeFileSync(path, buf);
    const err = await Wal.open({ dir }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WalCorruptionError);
    expect((err as Error).message).toMatch(
      /corrupt at byte \d+: record LSN 4: checksum mismatch, yet LSN 5 .* is intact/,
    );
    expect((err as WalCorruptionError).hint).toMatch(/migrate/);
    // Nothing was cut: the file is unchanged, so an operator can still inspect it.
    expect(fs.readFileSync(path).equals(buf)).toBe(true);
  });

  test("damage in a completed (not last) segment is refused", async () => {
    const dir = tempDir();
    await filled(dir, 60, { segmentBytes: 4096 });
    const files = segmentFiles(dir);
    expect(files.length).toBeGreaterThan(2);
    const first = join(dir, files[0]!);
    const buf = fs.readFileSync(first);
    buf[buf.length - 10]! ^= 0x40; // in the last record of the first segment
    fs.writeFileSync(first, buf);
    await expect(Wal.open({ dir })).rejects.toThrow(/in a completed segment/);
  });

  test("a missing middle segment is refused", async () => {
    const dir = tempDir();
    await filled(dir, 60, { segmentBytes: 4096 });
    fs.unlinkSync(join(dir, segmentFiles(dir)[1]!));
    await expect(Wal.open({ dir })).rejects.toThrow(/starts at LSN \d+ but the previous one ends at/);
  });

  test("a last segment whose header never got written is removed", async () => {
    const dir = tempDir();
    await filled(dir, 5);
    fs.writeFileSync(join(dir, "00000000000000000006.wal"), new Uint8Array(10));
    const w = await openWal({ dir });
    expect(w.lastLsn).toBe(5);
    expect(await w.append(payload(6), 1)).toBe(6);
  });
});

describe("wal: truncate, reset", () => {
  test("truncateAfter drops the suffix across segments, durably", async () => {
    const dir = tempDir();
    let w = await openWal({ dir, segmentBytes: 4096, compression: "none" });
    for (let i = 1; i <= 60; i++) await w.append(payload(i), i > 30 ? 2 : 1);
    expect(w.stats().segments).toBeGreaterThan(3);
    await w.truncateAfter(25);
    expect(w.lastLsn).toBe(25);
    expect(w.lastTerm).toBe(1);
    expect(await w.append(payload(26), 3)).toBe(26);
    w = await reopen(w, { dir, segmentBytes: 4096 });
    expect(w.lastLsn).toBe(26);
    expect(w.termAt(26)).toBe(3);
    expect(text(w.read(25)[0]!.data)).toBe(text(payload(25)));
  });

  test("reset discards everything and continues at the given LSN (also after a crash mid-reset)", async () => {
    const dir = tempDir();
    let w = await openWal({ dir, segmentBytes: 4096 });
    for (let i = 1; i <= 30; i++) await w.append(payload(i), 1);
    await w.reset(1001, 7);
    expect(w.firstLsn).toBe(1001);
    expect(w.lastLsn).toBe(1000);
    expect(w.termAt(1000)).toBe(7);
    expect(await w.append(payload(1001), 7)).toBe(1001);
    w = await reopen(w, { dir });
    expect(w.firstLsn).toBe(1001);
    expect(w.lastLsn).toBe(1001);
    await w.close();
    // A reset that crashed after staging its new segment is finished on open.
    fs.copyFileSync(join(dir, segmentFiles(dir)[0]!), join(dir, "scratch"));
    const staged = await Wal.open({ dir: join(dir, "staged"), initialLsn: 5000 });
    await staged.close();
    fs.renameSync(join(dir, "staged", "00000000000000005000.wal"), join(dir, "reset.wal.tmp"));
    w = await openWal({ dir });
    expect(w.firstLsn).toBe(5000);
    expect(w.lastLsn).toBe(4999);
    expect(segmentFiles(dir)).toEqual(["00000000000000005000.wal"]);
  });
});

describe("wal: retention", () => {
  test("the policy removes oldest closed segments by age and size, never the active one", () => {
    const segs = [
      { firstLsn: 1, lastLsn: 10, bytes: 100, lastTimeMs: 0 },
      { firstLsn: 11, lastLsn: 20, bytes: 100, lastTimeMs: 5 * 3600_000 },
      { firstLsn: 21, lastLsn: 30, bytes: 100, lastTimeMs: 10 * 3600_000 },
    ];
    const now = 10 * 3600_000;
    expect(segmentsToRemove(segs, { maxAgeHours: 6 }, now)).toBe(1);
    expect(segmentsToRemove(segs, { maxAgeHours: 1 }, now)).toBe(2);
    expect(segmentsToRemove(segs, { maxAgeHours: 1 }, now, 15)).toBe(1);
    expect(segmentsToRemove(segs, { maxBytes: 250 }, now)).toBe(1);
    expect(segmentsToRemove(segs, { maxBytes: 1 }, now)).toBe(2);
    expect(segmentsToRemove(segs, {}, now)).toBe(0);
  });

  test("size retention is applied on rotation; pruned ranges are refused on read and stay pruned after reopen", async () => {
    const dir = tempDir();
    const opts = {
      dir,
      segmentBytes: 8192,
      retention: { maxBytes: 20_000, checkIntervalMs: 0 },
      compression: "none" as const,
    };
    let w = await openWal(opts);
    for (let i = 1; i <= 400; i++) await w.append(payload(i), 1);
    const s = w.stats();
    expect(s.bytes).toBeLessThanOrEqual(20_000 + 8192 + 400);
    expect(s.removedSegments).toBeGreaterThan(5);
    expect(w.firstLsn).toBeGreaterThan(1);
    expect(() => w.read(1)).toThrow(/removed by retention/);
    expect(w.termAt(w.firstLsn - 1)).toBe(1);
    const first = w.firstLsn;
    w = await reopen(w, opts);
    expect(w.firstLsn).toBe(first);
    expect(w.read(first)[0]!.lsn).toBe(first);
  });

  test("age retention runs on its timer and respects protectFromLsn", async () => {
    const dir = tempDir();
    let protect: number | undefined = 1;
    const w = await openWal({
      dir,
      segmentBytes: 4096,
      compression: "none",
      retention: { maxAgeHours: 1e-9, checkIntervalMs: 20 },
      protectFromLsn: () => protect,
    });
    for (let i = 1; i <= 60; i++) await w.append(payload(i), 1);
    const segments = w.stats().segments;
    expect(segments).toBeGreaterThan(3);
    // Everything is "old", but a follower still needs LSN 1.
    expect(w.applyRetention().removedSegments).toBe(0);
    protect = 40;
    await waitUntil(() => w.stats().removedSegments > 0, { timeoutMs: 5000, what: "timed retention" });
    expect(w.firstLsn).toBeLessThanOrEqual(40);
    expect(w.read(40)[0]!.lsn).toBe(40);
    protect = undefined;
    await waitUntil(() => w.stats().segments === 1, { timeoutMs: 5000, what: "all closed segments pruned" });
    expect(w.lastLsn).toBe(60);
  });
});
