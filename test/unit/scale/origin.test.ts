/**
 * Divergence detection: which of this MariaDB's transactions the log accounts for (own entries,
 * leader markers, baseline), and what is left over.
 */
import { describe, expect, test } from "bun:test";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import type { LogEntry } from "../../../lib/cluster/types.ts";
import { encodeTxn } from "../../../lib/scale/binlog/txn.ts";
import { decodeMarker, encodeMarker, isMarker } from "../../../lib/scale/marker.ts";
import { extrasOf, formatOwn, ownFromBinlogState, parseOwn, scanOwnRef } from "../../../lib/scale/origin.ts";

function txn(lsn: number, serverId: number, seq: number, state = `0-${serverId}-${seq}`): LogEntry {
  const data = encodeTxn({
    gtid: { domainId: 0, serverId, seqNo: BigInt(seq) },
    flags: 0,
    timestamp: 0,
    gtidState: state,
    binlogFile: "mysql-bin.000001",
    endPos: 100,
    formatDescription: new Uint8Array([1, 2, 3]),
    events: [],
  });
  return { lsn, term: 1, kind: "data", data };
}

function marker(lsn: number, node: number, own: string, pos: string): LogEntry {
  return {
    lsn,
    term: 1,
    kind: "data",
    data: encodeMarker({ v: 1, node, term: 1, serverId: node, api: "http://x:1", pos, own, at: 0 }),
  };
}

function store(entries: LogEntry[]): MemoryLogStore {
  const s = new MemoryLogStore();
  s.append(entries);
  return s;
}

describe("origin", () => {
  test("own state from @@gtid_binlog_state keeps only this server's GTIDs", () => {
    const own = ownFromBinlogState("0-1-10,0-2-99,5-1-3", 1);
    expect(formatOwn(own)).toBe("0:10,5:3");
    expect(parseOwn("0:10,5:3")).toEqual(own);
    expect(extrasOf(own, parseOwn("0:8,5:3"))).toEqual([{ domain: 0, from: 9n, to: 10n }]);
    expect(extrasOf(own, parseOwn("0:10,5:3"))).toEqual([]);
  });

  test("markers are told apart from captured transactions", () => {
    const m = marker(1, 2, "0:5", "0-2-5");
    expect(isMarker(m.data)).toBe(true);
    expect(isMarker(txn(1, 1, 1).data)).toBe(false);
    expect(decodeMarker(m.data).own).toBe("0:5");
  });

  test("the newest own marker and the own transactions after it form the reference", () => {
    const s = store([
      { lsn: 1, term: 1, kind: "noop", data: new Uint8Array() },
      marker(2, 1, "0:4", "0-1-4"),
      txn(3, 1, 5),
      txn(4, 1, 6),
      marker(5, 2, "", ""),
      txn(6, 2, 1),
    ]);
    const ref = scanOwnRef(s, 1, 1, undefined);
    expect(formatOwn(ref.own)).toBe("0:6");
    expect(ref.pos).toBe("0-1-6");
    expect(ref.lastOwnLsn).toBe(4);
    expect(ref.foreignAfter).toBe(true);
    // Node 2: its marker is the newest own entry; no foreign transaction after it.
    const ref2 = scanOwnRef(s, 2, 2, undefined);
    expect(ref2.foreignAfter).toBe(false);
    expect(formatOwn(ref2.own)).toBe("0:1");
  });

  test("without own entries the baseline speaks; truncating own entries leaves extras", () => {
    const s = store([txn(1, 2, 1), txn(2, 2, 2)]);
    const ref = scanOwnRef(s, 1, 1, { lsn: 0, own: "0:3", pos: "0-1-3" });
    expect(ref).toEqual({ own: parseOwn("0:3"), pos: "0-1-3", lastOwnLsn: 0, foreignAfter: true });
    const mine = store([marker(1, 1, "0:3", "0-1-3"), txn(2, 1, 4), txn(3, 1, 5)]);
    expect(extrasOf(parseOwn("0:5"), scanOwnRef(mine, 1, 1, undefined).own)).toEqual([]);
    mine.truncateAfter(2); // a new leader overrode our uncommitted tail
    expect(extrasOf(parseOwn("0:5"), scanOwnRef(mine, 1, 1, undefined).own)).toEqual([{ domain: 0, from: 5n, to: 5n }]);
  });
});
