import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import type { EntryKind, LogEntry } from "../../../lib/cluster/types.ts";
import { WalLogStore } from "../../../lib/scale/wal-logstore.ts";
import { Wal } from "../../../lib/wal/wal.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test("scale WalLogStore behaves like the cluster's MemoryLogStore under random operations and reopens", async () => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "wolf-wal-logstore-"));
  dirs.push(dir);
  const opts = { dir, segmentBytes: 2048, compression: "none" as const };
  let store = new WalLogStore(await Wal.open(opts));
  const ref = new MemoryLogStore();
  const rand = rng(11);
  const kinds: EntryKind[] = ["data", "noop", "config"];
  let term = 1;
  expect(store.base()).toEqual({ lsn: 0, term: 0 });
  expect(store.lastLsn()).toBe(0);

  const check = () => {
    expect(store.lastLsn()).toBe(ref.lastLsn());
    const base = ref.base().lsn;
    // Pruning is per segment in the WAL: it may keep more, never less.
    expect(store.base().lsn).toBeLessThanOrEqual(base);
    const ours = store.range(base + 1, ref.lastLsn());
    const theirs = ref.range(base + 1, ref.lastLsn());
    expect(ours.length).toBe(theirs.length);
    for (let i = 0; i < ours.length; i++) {
      expect(ours[i]!.lsn).toBe(theirs[i]!.lsn);
      expect(ours[i]!.term).toBe(theirs[i]!.term);
      expect(ours[i]!.kind).toBe(theirs[i]!.kind);
      expect(Buffer.compare(ours[i]!.data, theirs[i]!.data)).toBe(0);
    }
    if (ref.lastLsn() > base) expect(store.get(ref.lastLsn())!.term).toBe(ref.get(ref.lastLsn())!.term);
  };

  for (let step = 0; step < 300; step++) {
    const r = rand();
    if (r < 0.6) {
      const n = 1 + Math.floor(rand() * 5);
      if (rand() < 0.1) term++;
      const entries: LogEntry[] = [];
      for (let i = 0; i < n; i++) {
        const lsn = ref.lastLsn() + 1 + i;
        entries.push({
          lsn,
          term,
          kind: kinds[Math.floor(rand() * 3)]!,
          data: new TextEncoder().encode(`entry ${lsn} `.repeat(1 + (lsn % 9))),
        });
      }
      store.append(entries);
      ref.append(entries);
    } else if (r < 0.75) {
      const base = ref.base().lsn;
      const to = base + Math.floor(rand() * (ref.lastLsn() - base + 1));
      store.truncateAfter(to);
      ref.truncateAfter(to);
      term = Math.max(term, ref.lastLsn() > base ? ref.get(ref.lastLsn())!.term : term);
    } else if (r < 0.85) {
      const lsn = ref.base().lsn + Math.floor(rand() * (ref.lastLsn() - ref.base().lsn + 1));
      store.pruneBefore(lsn);
      ref.pruneBefore(lsn);
    } else if (r < 0.88) {
      const base = { lsn: ref.lastLsn() + 10, term: term + 1 };
      term = base.term;
      store.resetTo(base);
      ref.resetTo(base);
      expect(store.base()).toEqual(base);
    } else {
      await store.wal.close();
      store = new WalLogStore(await Wal.open(opts));
    }
    check();
  }
  await store.wal.close();
});
