/**
 * Which transactions in the log came from this node's own MariaDB, and whether that MariaDB holds
 * transactions the cluster never received (the old leader that must not rejoin silently diverged).
 *
 * A node's binlog only ever gets transactions the cluster never applied there from its own side:
 * followers replay with sql_log_bin = 0. Both sides are exact GTID sets (binlog/gtid-set.ts), per
 * replication domain, whatever server_id wrote them (a session may SET server_id, e.g. when a
 * binlog is replayed with mysqlbinlog):
 *
 *  - the binlog holds, per domain, the seqs up to the highest in `@@gtid_binlog_state` (in one
 *    binlog the seqs of a domain strictly increase);
 *  - the cluster accounts for everything up to the position this node's newest leader marker
 *    started capturing at (or the baseline, when it has not led since), plus each transaction
 *    captured from this binlog after that marker.
 *
 * What the binlog holds beyond that — never captured, or dropped when a new leader overrode our
 * uncommitted tail — are "extras", named by GTID; a gap below a later captured transaction counts
 * too. Extras after the resume point are harmless while no other node's transaction follows in the
 * log (this node may still lead and capture them); otherwise the node is diverged and needs a
 * migration.
 */
import { existsSync, readFileSync } from "node:fs";
import type { LogStore, Lsn } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import { GtidSet, parseGtidList } from "./binlog/gtid-set.ts";
import { type CapturedTxn, decodeTxn } from "./binlog/txn.ts";
import type { BinlogSnapshot } from "./db.ts";
import { decodeMarker, isMarker } from "./marker.ts";

/** Replication domain → highest sequence number (all of 1..it are accounted for). */
export type OwnState = Map<number, bigint>;

/** This server's highest sequence number per domain (its own GTIDs only). */
export function ownFromBinlogState(state: string, serverId: number): OwnState {
  const own: OwnState = new Map();
  for (const g of parseGtidList(state)) if (g.serverId === serverId) raise(own, g.domainId, g.seqNo);
  return own;
}

/** Per domain the highest seq of a GTID state or position, whatever server wrote it. */
export function coverOf(state: string): OwnState {
  const cover: OwnState = new Map();
  for (const g of parseGtidList(state)) raise(cover, g.domainId, g.seqNo);
  return cover;
}

export function formatOwn(own: OwnState): string {
  return [...own.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([d, s]) => `${d}:${s}`)
    .join(",");
}

export function parseOwn(text: string): OwnState {
  const own: OwnState = new Map();
  for (const part of text.split(",").filter(Boolean)) {
    const m = /^(\d+):(\d+)$/.exec(part);
    if (!m) throw new WolfError("protocol", `invalid own-state "${part}"`);
    own.set(Number(m[1]), BigInt(m[2]!));
  }
  return own;
}

function raise(own: OwnState, domain: number, seq: bigint): void {
  const prev = own.get(domain);
  if (prev === undefined || seq > prev) own.set(domain, seq);
}

/** What the cluster accounts for of this node's binlog. */
export function accountedFor(ref: OwnRef): GtidSet {
  return GtidSet.upToSeqs(ref.own).union(ref.captured);
}

/** Transactions in this binlog (`@@gtid_binlog_state`) that the cluster does not have. */
export function extrasOf(binlogState: string, ref: OwnRef): GtidSet {
  return GtidSet.upTo(binlogState).subtract(accountedFor(ref));
}

export function describeExtras(extras: GtidSet): string {
  return `${extras.size} transaction(s) (GTID ${extras.toString(20)})`;
}

/** An origin check: the extras, the reference they were computed against, and a message if any. */
export interface OriginCheck {
  extras: GtidSet;
  ref: OwnRef;
  message: string | null;
}

export function originMessage(extras: GtidSet): string | null {
  return extras.isEmpty()
    ? null
    : `this node's MariaDB holds ${describeExtras(extras)} that the cluster never received`;
}

/** Where a new leader captures from, and what its marker says the cluster has up to there. */
export type CaptureStartPlan = { diverged: string } | { resume: string; own: string; warning?: string };

/**
 * `snap` is the binlog as of one moment and `origin` was checked against exactly that state, so a
 * transaction committed since is after `snap.pos` and captured, and one committed before is either
 * accounted for or an extra: none falls between.
 */
export function planCaptureStart(snap: BinlogSnapshot, origin: OriginCheck): CaptureStartPlan {
  if (!origin.message) return { resume: snap.pos, own: formatOwn(coverOf(snap.pos)) };
  if (origin.ref.foreignAfter) return { diverged: `${origin.message}: it diverged` };
  // Resuming where the cluster's copy of this binlog ends captures the extras after it; one before
  // it (a gap under captured transactions) can never be captured.
  const stranded = origin.extras.intersect(GtidSet.upTo(origin.ref.pos));
  if (!stranded.isEmpty())
    return {
      diverged: `this node's MariaDB holds ${describeExtras(stranded)} that the cluster never received, older than transactions it did capture from it (up to ${origin.ref.pos}): it diverged`,
    };
  // And nothing after it may be in the log already (it would be captured twice).
  const again = accountedFor(origin.ref).subtract(GtidSet.upTo(origin.ref.pos)).intersect(GtidSet.upTo(snap.state));
  if (!again.isEmpty())
    return {
      diverged: `${origin.message}, but capture cannot resume at ${origin.ref.pos || "(binlog start)"}: the cluster already has ${describeExtras(again)} after it`,
    };
  return {
    resume: origin.ref.pos,
    own: formatOwn(coverOf(origin.ref.pos)),
    warning: `${origin.message}; capturing them now (this node leads again and nobody else wrote)`,
  };
}

/** "As of log position lsn, this node's binlog held own state `own` at binlog position `pos`." */
export interface Baseline {
  lsn: Lsn;
  own: string;
  pos: string;
}

export function readBaseline(file: string): Baseline | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const b = JSON.parse(readFileSync(file, "utf8")) as Baseline;
    if (typeof b.lsn !== "number" || typeof b.own !== "string" || typeof b.pos !== "string")
      throw new Error("missing fields");
    parseOwn(b.own);
    return b;
  } catch (err) {
    throw new WolfError("io", `${file}: unreadable (${(err as Error).message})`, {
      hint: "it records which of this MariaDB's transactions the cluster has; remove it only if this node's database is known to match the cluster",
    });
  }
}

/** Durable before it returns (mode 0666 less the umask, as the file always had). */
export function writeBaseline(file: string, b: Baseline): void {
  writeFileAtomic(file, JSON.stringify(b), { mode: 0o666 });
}

export interface OwnRef {
  /** Per domain, the seqs up to which the newest own marker (or the baseline) accounts for all. */
  own: OwnState;
  /** Transactions captured from this binlog after that marker. */
  captured: GtidSet;
  /** GTID position right after the newest own transaction the log holds: where capture resumes. */
  pos: string;
  /** LSN of the newest own entry (0 if only the baseline speaks). */
  lastOwnLsn: Lsn;
  /** A transaction captured on another node comes after the newest own entry. */
  foreignAfter: boolean;
}

/**
 * Scans the log backwards from its end to this node's newest leader marker (or to the baseline /
 * the log's base), collecting own transactions. A transaction belongs to the node whose marker
 * precedes it (a leader captures its whole binlog, whatever server_id a GTID carries); entries
 * whose marker is below the scan's floor fall back to "this server_id". Cost: the entries since
 * this node last led.
 */
export function scanOwnRef(store: LogStore, nodeId: number, serverId: number, baseline: Baseline | undefined): OwnRef {
  const captured = new GtidSet();
  /** Transactions since the last marker seen (newest first): whose they are is not known yet. */
  let pending: Array<{ lsn: Lsn; txn: CapturedTxn }> = [];
  let foreignAfter = false;
  const floor = Math.max(store.base().lsn, baseline?.lsn ?? 0);
  for (let lsn = store.lastLsn(); lsn > floor; lsn--) {
    const e = store.get(lsn);
    if (e?.kind !== "data") continue;
    if (!isMarker(e.data)) {
      pending.push({ lsn, txn: decodeTxn(e.data) });
      continue;
    }
    const m = decodeMarker(e.data);
    if (m.node !== nodeId) {
      if (pending.length > 0) foreignAfter = true;
      pending = [];
      continue;
    }
    for (const p of pending) captured.add(p.txn.gtid);
    return {
      own: parseOwn(m.own),
      captured,
      pos: pending[0]?.txn.gtidState ?? m.pos,
      lastOwnLsn: pending[0]?.lsn ?? lsn,
      foreignAfter,
    };
  }
  let pos: string | undefined;
  let lastOwnLsn = 0;
  for (const p of pending) {
    if (p.txn.gtid.serverId !== serverId) {
      if (lastOwnLsn === 0) foreignAfter = true;
      continue;
    }
    captured.add(p.txn.gtid);
    pos ??= p.txn.gtidState;
    if (lastOwnLsn === 0) lastOwnLsn = p.lsn;
  }
  return {
    own: baseline ? parseOwn(baseline.own) : new Map(),
    captured,
    pos: pos ?? baseline?.pos ?? "",
    lastOwnLsn,
    foreignAfter,
  };
}
