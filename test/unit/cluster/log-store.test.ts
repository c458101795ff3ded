/** The LogStores and StableStores: append/get/range, truncate, prune, reset, and crash recovery of the file ones. */
import { afterEach, describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, rmSync, statSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileLogStore, MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import { FileStableStore } from "../../../lib/cluster/stable-store.ts";
import type { LogEntry, LogStore } from "../../../lib/cluster/types.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "wolf-logstore-"));
  dirs.push(d);
  return d;
};
const entry = (lsn: number, term = 1, text = `e${lsn}`): LogEntry => ({
  lsn,
  term,
  kind: "data",
  data: new TextEncoder().encode(text),
});
const text = (e: LogEntry | undefined) => (e ? new TextDecoder().decode(e.data) : undefined);

function contract(name: string, make: () => LogStore) {
  describe(name, () => {
    test("append, get, range with a byte limit, truncate, prune, reset", () => {
      const s = make();
      expect(s.lastLsn()).toBe(0);
      s.append([entry(1), entry(2), entry(3, 2)]);
      expect(s.lastLsn()).toBe(3);
      expect(s.get(3)?.term).toBe(2);
      expect(s.range(2, 10).map((e) => e.lsn)).toEqual([2, 3]);
      expect(s.range(1, 3, 1).map((e) => e.lsn)).toEqual([1]); // at least one entry, then the limit
      expect(() => s.append([entry(5)])).toThrow(/out of order/);
      s.truncateAfter(1);
      expect(s.lastLsn()).toBe(1);
      s.append([entry(2, 3, "new2"), entry(3, 3)]);
      expect(text(s.get(2))).toBe("new2");
      s.pruneBefore(3);
      expect(s.base()).toEqual({ lsn: 2, term: 3 });
      expect(s.get(2)).toBeUndefined();
      expect(s.get(3)?.lsn).toBe(3);
      s.resetTo({ lsn: 40, term: 7 });
      expect(s.lastLsn()).toBe(40);
      s.append([entry(41, 7)]);
      expect(s.get(41)?.term).toBe(7);
    });
  });
}

contract("MemoryLogStore", () => new MemoryLogStore());
contract("FileLogStore", () => new FileLogStore(tmp()));

describe("FileLogStore recovery", () => {
  test("reopens with the same entries, base and kinds", () => {
    const dir = tmp();
    const a = new FileLogStore(dir);
    a.append([
      entry(1),
      { lsn: 2, term: 1, kind: "config", data: new TextEncoder().encode('{"voters":[]}') },
      entry(3, 2),
    ]);
    a.truncateAfter(2);
    a.append([entry(3, 4, "x"), entry(4, 4)]);
    a.pruneBefore(2);
    a.close();
    const b = new FileLogStore(dir);
    expect(b.base()).toEqual({ lsn: 1, term: 1 });
    expect(b.lastLsn()).toBe(4);
    expect(b.get(2)?.kind).toBe("config");
    expect(text(b.get(3))).toBe("x");
    b.append([entry(5, 4)]);
    b.close();
    expect(new FileLogStore(dir).lastLsn()).toBe(5);
  });

  test("a torn or corrupt tail from a crash is cut off, never served", () => {
    const dir = tmp();
    const a = new FileLogStore(dir);
    a.append([entry(1), entry(2), entry(3)]);
    a.close();
    const file = join(dir, "log.dat");
    truncateSync(file, statSync(file).size - 3); // torn last record
    appendFileSync(file, Buffer.from([1, 2, 3]));
    const b = new FileLogStore(dir);
    expect(b.lastLsn()).toBe(2);
    b.append([entry(3, 1, "again")]);
    b.close();
    expect(text(new FileLogStore(dir).get(3))).toBe("again");
  });
});

test("FileStableStore persists term, vote and committed config", () => {
  const path = join(tmp(), "state.json");
  const a = new FileStableStore(path);
  expect(a.get()).toEqual({ term: 0, votedFor: null, committedConfig: null });
  a.set({ term: 5, votedFor: 2, committedConfig: { lsn: 1, members: { voters: [{ id: 1, addr: "a:1" }] } } });
  expect(new FileStableStore(path).get().votedFor).toBe(2);
});
