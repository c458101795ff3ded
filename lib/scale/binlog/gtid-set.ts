/**
 * Exact sets of MariaDB GTIDs: per replication domain, the sequence numbers as sorted disjoint
 * ranges. Pure.
 *
 * What MariaDB guarantees (and this relies on): within one server's binlog, the sequence numbers
 * of a domain strictly increase in binlog order — a locally generated GTID takes the domain's
 * highest seq + 1 whatever server_id wrote before, and gtid_strict_mode refuses anything else. So
 * inside one binlog a transaction is identified by (domain, seq) alone, and "everything in the
 * binlog up to position P" is, per domain, the seqs 1..P's seq (`upTo`). Different server_ids in
 * a domain interleave (after failovers, or sessions replaying another server's binlog with
 * SET server_id), which is why sets are kept per domain and not per domain+server.
 *
 * Each range also remembers the server_id that wrote it, only to name GTIDs in messages: it is
 * exact for GTIDs added one by one and a best guess for `upTo` (a server is assumed to have written
 * the block of seqs up to its last one in @@gtid_binlog_state). Membership ignores it.
 */
import { WolfError } from "../../common/errors.ts";
import type { Gtid } from "./events.ts";

export interface SeqRange {
  lo: bigint;
  hi: bigint;
  server: number;
}

function badList(part: string, list: string): WolfError {
  return new WolfError("protocol", `invalid GTID "${part}" in "${list}" (want domain-server-seq, comma separated)`);
}

/** Parses a MariaDB GTID list ("0-1-10,1-2-5"; spaces and newlines allowed, as MariaDB prints them). */
export function parseGtidList(list: string): Gtid[] {
  const out: Gtid[] = [];
  for (const part of list
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^(\d+)-(\d+)-(\d+)$/.exec(part);
    if (!m) throw badList(part, list);
    out.push({ domainId: Number(m[1]), serverId: Number(m[2]), seqNo: BigInt(m[3]!) });
  }
  return out;
}

export class GtidSet {
  /** Domain → sorted, disjoint ranges; adjacent ranges are merged when the same server wrote them. */
  private readonly domains = new Map<number, SeqRange[]>();

  /** The GTIDs themselves ("0-1-5,0-1-7"), or ranges as `toString` writes them ("0-1-5..9"). */
  static parse(text: string): GtidSet {
    const s = new GtidSet();
    for (const part of text
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean)) {
      const m = /^(\d+)-(\d+)-(\d+)(?:\.\.(\d+))?$/.exec(part);
      if (!m) throw badList(part, text);
      const lo = BigInt(m[3]!);
      const hi = m[4] === undefined ? lo : BigInt(m[4]);
      if (hi < lo) throw badList(part, text);
      s.addRange(Number(m[1]), lo, hi, Number(m[2]));
    }
    return s;
  }

  /**
   * Everything a binlog holds up to a GTID state or position (`@@gtid_binlog_state`,
   * `@@gtid_binlog_pos`, a captured transaction's resume state): per domain, seqs 1..the highest.
   */
  static upTo(state: string): GtidSet {
    const s = new GtidSet();
    const byDomain = new Map<number, Gtid[]>();
    for (const g of parseGtidList(state)) byDomain.set(g.domainId, [...(byDomain.get(g.domainId) ?? []), g]);
    for (const [domain, gtids] of byDomain) {
      gtids.sort((a, b) => (a.seqNo < b.seqNo ? -1 : a.seqNo > b.seqNo ? 1 : 0));
      let next = 1n;
      for (const g of gtids) {
        if (g.seqNo >= next) s.addRange(domain, next, g.seqNo, g.serverId);
        next = g.seqNo + 1n;
      }
    }
    return s;
  }

  /** Per domain the highest seq 1..n covers, as a set (`upTo` of "domain:n" pairs). */
  static upToSeqs(seqs: Map<number, bigint>, server = 0): GtidSet {
    const s = new GtidSet();
    for (const [domain, n] of seqs) if (n >= 1n) s.addRange(domain, 1n, n, server);
    return s;
  }

  clone(): GtidSet {
    const s = new GtidSet();
    for (const [d, rs] of this.domains)
      s.domains.set(
        d,
        rs.map((r) => ({ ...r })),
      );
    return s;
  }

  add(g: Gtid): this {
    return this.addRange(g.domainId, g.seqNo, g.seqNo, g.serverId);
  }

  /** Adds seqs lo..hi of a domain; seqs already present keep the server they had. */
  addRange(domain: number, lo: bigint, hi: bigint, server: number): this {
    if (hi < lo) return this;
    const rs = this.domains.get(domain) ?? [];
    // Only the parts not present yet are inserted, so existing attributions stay.
    const gaps: SeqRange[] = [];
    let cur = lo;
    for (const r of rs) {
      if (r.hi < cur) continue;
      if (r.lo > hi) break;
      if (r.lo > cur) gaps.push({ lo: cur, hi: r.lo - 1n, server });
      cur = r.hi + 1n;
      if (cur > hi) break;
    }
    if (cur <= hi) gaps.push({ lo: cur, hi, server });
    const all = [...rs, ...gaps].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
    const merged: SeqRange[] = [];
    for (const r of all) {
      const last = merged[merged.length - 1];
      if (last && last.server === r.server && last.hi + 1n === r.lo) last.hi = r.hi;
      else merged.push({ ...r });
    }
    this.domains.set(domain, merged);
    return this;
  }

  has(domain: number, seq: bigint): boolean {
    return (this.domains.get(domain) ?? []).some((r) => r.lo <= seq && seq <= r.hi);
  }

  contains(g: Gtid): boolean {
    return this.has(g.domainId, g.seqNo);
  }

  /** Every transaction of `other` is in this set. */
  containsAll(other: GtidSet): boolean {
    return other.subtract(this).isEmpty();
  }

  union(other: GtidSet): GtidSet {
    const s = this.clone();
    for (const [d, rs] of other.domains) for (const r of rs) s.addRange(d, r.lo, r.hi, r.server);
    return s;
  }

  /** The transactions in this set that are not in `other` ("in A, not in B"). */
  subtract(other: GtidSet): GtidSet {
    const s = new GtidSet();
    for (const [d, rs] of this.domains) {
      const cut = other.domains.get(d) ?? [];
      for (const r of rs) {
        let cur = r.lo;
        for (const c of cut) {
          if (c.hi < cur) continue;
          if (c.lo > r.hi) break;
          if (c.lo > cur) s.addRange(d, cur, c.lo - 1n, r.server);
          cur = c.hi + 1n;
          if (cur > r.hi) break;
        }
        if (cur <= r.hi) s.addRange(d, cur, r.hi, r.server);
      }
    }
    return s;
  }

  intersect(other: GtidSet): GtidSet {
    return this.subtract(this.subtract(other));
  }

  /** Same transactions (server attributions are not compared). */
  equals(other: GtidSet): boolean {
    return this.subtract(other).isEmpty() && other.subtract(this).isEmpty();
  }

  isEmpty(): boolean {
    for (const rs of this.domains.values()) if (rs.length > 0) return false;
    return true;
  }

  /** Number of transactions. */
  get size(): bigint {
    let n = 0n;
    for (const rs of this.domains.values()) for (const r of rs) n += r.hi - r.lo + 1n;
    return n;
  }

  /** Per domain the highest seq in the set. */
  highest(): Map<number, bigint> {
    const out = new Map<number, bigint>();
    for (const [d, rs] of this.domains) if (rs.length > 0) out.set(d, rs[rs.length - 1]!.hi);
    return out;
  }

  ranges(): Array<{ domain: number } & SeqRange> {
    return [...this.domains.entries()]
      .sort((a, b) => a[0] - b[0])
      .flatMap(([domain, rs]) => rs.map((r) => ({ domain, ...r })));
  }

  /** "0-1-5..9,0-77-10" (parse reads it back). `max` ranges at most, then "… (N more)". */
  toString(max = Infinity): string {
    const parts = this.ranges().map((r) =>
      r.lo === r.hi ? `${r.domain}-${r.server}-${r.lo}` : `${r.domain}-${r.server}-${r.lo}..${r.hi}`,
    );
    if (parts.length <= max) return parts.join(",");
    return `${parts.slice(0, max).join(",")} … (${parts.length - max} more ranges)`;
  }
}

/**
 * The replica position of a GTID state: per domain its highest GTID, which is the domain's last
 * in binlog order (seqs increase along a binlog).
 */
export function positionOf(state: string): string {
  const last = new Map<number, Gtid>();
  for (const g of parseGtidList(state)) {
    const prev = last.get(g.domainId);
    if (!prev || g.seqNo > prev.seqNo) last.set(g.domainId, g);
  }
  return [...last.values()]
    .sort((a, b) => a.domainId - b.domainId)
    .map((g) => `${g.domainId}-${g.serverId}-${g.seqNo}`)
    .join(",");
}

/**
 * Whether `pos` (`@@gtid_binlog_pos`) and `state` (`@@gtid_binlog_state`) describe the same
 * moment: each domain has one position GTID, it is in the state, and it is the domain's highest.
 * A transaction committed between reading the two breaks one of these, whichever was read first.
 */
export function positionMatchesState(pos: string, state: string): boolean {
  const p = parseGtidList(pos);
  const st = parseGtidList(state);
  const domains = new Set(st.map((g) => g.domainId));
  if (p.length !== domains.size || new Set(p.map((g) => g.domainId)).size !== p.length) return false;
  return p.every((g) => {
    const same = st.filter((x) => x.domainId === g.domainId);
    return same.some((x) => x.serverId === g.serverId && x.seqNo === g.seqNo) && same.every((x) => x.seqNo <= g.seqNo);
  });
}
