/**
 * Divergence detection: which of this MariaDB's transactions the log accounts for (own entries,
 * leader markers, baseline), and what is left over.
 */
import { describe, expect, test } from "bun:test";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import type { LogEntry } from "../../../lib/cluster/types.ts";
import { encodeTxn } from "../../../lib/scale/binlog/txn.ts";
import { decodeMarker, encodeMarker, isMarker } from "../../../lib/scale/marker.ts";
import { GtidSet } from "../../../lib/scale/binlog/gtid-set.ts";
import {
  accountedFor,
  type Baseline,
  coverOf,
  describeExtras,
  extrasOf,
  formatOwn,
  type OwnRef,
  originMessage,
  ownFromBinlogState,
  parseOwn,
  planCaptureStart,
  scanOwnRef,
} from "../../../lib/scale/origin.ts";

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

function ref(s: MemoryLogStore, node: number, baseline?: Baseline): OwnRef {
  return scanOwnRef(s, node, node, baseline);
}

describe("origin", () => {
  test("own state keeps this server's GTIDs; the cover keeps every server's, per domain", () => {
    const own = ownFromBinlogState("0-1-10,0-2-99,5-1-3", 1);
    expect(formatOwn(own)).toBe("0:10,5:3");
    expect(parseOwn("0:10,5:3")).toEqual(own);
    expect(formatOwn(coverOf("0-1-10,0-2-99,5-1-3"))).toBe("0:99,5:3");
  });

  test("markers are told apart from captured transactions", () => {
    const m = marker(1, 2, "0:5", "0-2-5");
    expect(isMarker(m.data)).toBe(true);
    expect(isMarker(txn(1, 1, 1).data)).toBe(false);
    expect(decodeMarker(m.data).own).toBe("0:5");
  });

  test("the newest own marker and the transactions captured after it form the reference", () => {
    const s = store([
      { lsn: 1, term: 1, kind: "noop", data: new Uint8Array() },
      marker(2, 1, "0:4", "0-1-4"),
      txn(3, 1, 5),
      txn(4, 1, 6),
      marker(5, 2, "", ""),
      txn(6, 2, 1),
    ]);
    const r = ref(s, 1);
    expect(formatOwn(r.own)).toBe("0:4");
    expect(r.captured.toString()).toBe("0-1-5..6");
    expect(accountedFor(r).toString()).toBe("0-0-1..4,0-1-5..6");
    expect(r.pos).toBe("0-1-6");
    expect(r.lastOwnLsn).toBe(4);
    expect(r.foreignAfter).toBe(true);
    // Node 2: its marker is the newest own entry; no foreign transaction after it.
    const r2 = ref(s, 2);
    expect(r2.foreignAfter).toBe(false);
    expect(r2.captured.toString()).toBe("0-2-1");
    expect(extrasOf("0-2-1", r2).isEmpty()).toBe(true);
  });

  test("a transaction captured from this binlog under another server_id is still this node's", () => {
    // A session on node 1 replayed a binlog with SET server_id = 77: node 1 captured it.
    const s = store([marker(1, 1, "0:4", "0-1-4"), txn(2, 77, 5), txn(3, 1, 6)]);
    const r = ref(s, 1);
    expect(r.foreignAfter).toBe(false);
    expect(extrasOf("0-1-6,0-77-5", r).isEmpty()).toBe(true);
    // Written on node 2 the same way and never captured: named, although its server_id is not 2's.
    const r2 = ref(store([marker(1, 2, "0:3", "0-2-3")]), 2);
    expect(describeExtras(extrasOf("0-2-3,0-77-4", r2))).toBe("1 transaction(s) (GTID 0-77-4)");
  });

  test("a transaction missing below a later captured one is an extra (the old capture-start race)", () => {
    // The marker says capture started after 0-1-4, but accounts only up to 3: 0-1-4 was committed
    // between the two reads, then 5 was captured. The highest per domain (5) hides it; the set does not.
    const s = store([marker(1, 1, "0:3", "0-1-4"), txn(2, 1, 5)]);
    const r = ref(s, 1);
    const extras = extrasOf("0-1-5", r);
    expect(extras.toString()).toBe("0-1-4");
    expect(originMessage(extras)).toBe(
      "this node's MariaDB holds 1 transaction(s) (GTID 0-1-4) that the cluster never received",
    );
    // Leading again cannot capture it (it is before where capture resumes): diverged, named.
    const plan = planCaptureStart({ state: "0-1-5", pos: "0-1-5" }, { extras, ref: r, message: originMessage(extras) });
    expect(plan).toEqual({ diverged: expect.stringContaining("GTID 0-1-4") });
  });

  test("without own entries the baseline speaks; truncating own entries leaves extras", () => {
    const s = store([txn(1, 2, 1), txn(2, 2, 2)]);
    const r = ref(s, 1, { lsn: 0, own: "0:3", pos: "0-1-3" });
    expect({ ...r, captured: r.captured.toString() }).toEqual({
      own: parseOwn("0:3"),
      captured: "",
      pos: "0-1-3",
      lastOwnLsn: 0,
      foreignAfter: true,
    });
    const mine = store([marker(1, 1, "0:3", "0-1-3"), txn(2, 1, 4), txn(3, 1, 5)]);
    expect(extrasOf("0-1-5", ref(mine, 1)).isEmpty()).toBe(true);
    mine.truncateAfter(2); // a new leader overrode our uncommitted tail
    const extras = extrasOf("0-1-5", ref(mine, 1));
    expect(extras.toString()).toBe("0-1-5");
    // Nobody wrote since: leading again captures it, from right after the last captured one.
    const plan = planCaptureStart(
      { state: "0-1-5", pos: "0-1-5" },
      { extras, ref: ref(mine, 1), message: originMessage(extras) },
    );
    expect(plan).toEqual({ resume: "0-1-4", own: "0:4", warning: expect.stringContaining("capturing them now") });
  });

  test("capture starts exactly at the snapshot when nothing is missing", () => {
    const r = ref(store([marker(1, 1, "0:3", "0-1-3")]), 1);
    const snap = { state: "0-5-2,0-1-3,1-1-7", pos: "0-1-3,1-1-7" };
    const extras = extrasOf(snap.state, r);
    expect(extras.toString()).toBe("1-1-1..7");
    expect(planCaptureStart(snap, { extras: new GtidSet(), ref: r, message: null })).toEqual({
      resume: "0-1-3,1-1-7",
      own: "0:3,1:7",
    });
  });

  test("a baseline whose position is older than what it accounts for is not resumed from", () => {
    const r = ref(store([]), 1, { lsn: 0, own: "0:5", pos: "0-1-3" });
    const extras = extrasOf("0-1-6", r);
    const plan = planCaptureStart({ state: "0-1-6", pos: "0-1-6" }, { extras, ref: r, message: originMessage(extras) });
    expect(plan).toEqual({ diverged: expect.stringContaining("cannot resume at 0-1-3") });
  });
});
