/** Exact GTID sets: parsing, formatting, set algebra, and the state/position consistency check. */
import { describe, expect, test } from "bun:test";
import { GtidSet, parseGtidList, positionMatchesState } from "../../../lib/scale/binlog/gtid-set.ts";

describe("GtidSet", () => {
  test("parses and formats MariaDB GTID lists (points and ranges) and reads its own output back", () => {
    expect(parseGtidList(" 0-1-10,\n1-2-5 ")).toEqual([
      { domainId: 0, serverId: 1, seqNo: 10n },
      { domainId: 1, serverId: 2, seqNo: 5n },
    ]);
    const s = GtidSet.parse("0-1-7,0-1-5,0-1-6,0-2-9,3-1-1..4");
    expect(s.toString()).toBe("0-1-5..7,0-2-9,3-1-1..4");
    expect(GtidSet.parse(s.toString()).toString()).toBe(s.toString());
    expect(s.size).toBe(8n);
    expect(GtidSet.parse("").isEmpty()).toBe(true);
    expect(() => GtidSet.parse("0-1")).toThrow(/invalid GTID "0-1"/);
    expect(() => GtidSet.parse("0-1-9..3")).toThrow(/invalid GTID/);
    expect(() => parseGtidList("x-1-2")).toThrow(/domain-server-seq/);
  });

  test("upTo covers every seq of a domain up to its highest, attributing blocks to the servers in the state", () => {
    // Server 5 wrote 1..40 (history from before), then server 1 took over the domain.
    const s = GtidSet.upTo("0-5-40,0-1-57,2-1-3");
    expect(s.toString()).toBe("0-5-1..40,0-1-41..57,2-1-1..3");
    expect(s.has(0, 1n) && s.has(0, 57n) && !s.has(0, 58n) && !s.has(1, 1n)).toBe(true);
    expect(GtidSet.upTo("").isEmpty()).toBe(true);
    expect(GtidSet.upToSeqs(new Map([[0, 3n]]), 1).toString()).toBe("0-1-1..3");
  });

  test("subtract gives the transactions in A that are not in B, even below B's highest", () => {
    const binlog = GtidSet.upTo("0-1-10");
    // The cluster has 1..5 (start point) and captured 7..10: 6 is missing although 10 > 6.
    const cluster = GtidSet.upTo("0-1-5").union(GtidSet.parse("0-1-7..10"));
    const missing = binlog.subtract(cluster);
    expect(missing.toString()).toBe("0-1-6");
    expect(missing.contains({ domainId: 0, serverId: 1, seqNo: 6n })).toBe(true);
    expect(cluster.containsAll(binlog)).toBe(false);
    expect(cluster.union(missing).equals(binlog)).toBe(true);
    expect(binlog.intersect(GtidSet.parse("0-1-9..12,4-1-1")).toString()).toBe("0-1-9..10");
    expect(GtidSet.parse("0-1-1..3").subtract(GtidSet.parse("0-1-2")).toString()).toBe("0-1-1,0-1-3");
    expect(GtidSet.parse("0-1-1..3").subtract(GtidSet.parse("1-1-1..3")).toString()).toBe("0-1-1..3");
  });

  test("membership ignores the server id; attributions of present seqs are kept on union", () => {
    const a = GtidSet.parse("0-1-1..5");
    const b = GtidSet.parse("0-2-3..8");
    expect(a.union(b).toString()).toBe("0-1-1..5,0-2-6..8");
    expect(a.equals(GtidSet.parse("0-9-1..5"))).toBe(true);
    expect(a.union(b).highest()).toEqual(new Map([[0, 8n]]));
    expect(a.union(b).toString(1)).toBe("0-1-1..5 … (1 more ranges)");
  });

  test("a position and a state read apart agree only if nothing was committed between the reads", () => {
    expect(positionMatchesState("0-1-10,1-2-4", "0-5-3,0-1-10,1-2-4")).toBe(true);
    expect(positionMatchesState("", "")).toBe(true);
    // State read first, then a commit 0-1-11, then the position.
    expect(positionMatchesState("0-1-11", "0-1-10")).toBe(false);
    // Position read first, then a commit by another server id in the domain, then the state.
    expect(positionMatchesState("0-1-10", "0-1-10,0-77-11")).toBe(false);
    // A first transaction in a new domain between the reads.
    expect(positionMatchesState("0-1-10", "0-1-10,1-1-1")).toBe(false);
    expect(positionMatchesState("0-1-10,1-1-1", "0-1-10")).toBe(false);
  });
});
