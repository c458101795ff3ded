/**
 * Which transactions in the log came from this node's own MariaDB, and whether that MariaDB holds
 * transactions the cluster never received (the old leader that must not rejoin silently diverged).
 *
 * A node's binlog only ever contains its own writes: followers replay with sql_log_bin = 0. So
 * "own" GTIDs are those with this MariaDB's server_id, and `@@gtid_binlog_state` says how far they
 * go (per replication domain). The log says how far the cluster has them: the newest own entry —
 * a captured transaction, or the leader marker this node wrote when it started capturing (it
 * records the own state at that moment). Anything in the binlog beyond that was never captured or
 * was dropped when a new leader overrode our uncommitted tail: "extras". Extras are harmless only
 * while no other node's transaction follows in the log (this node may still lead and capture
 * them); once a foreign transaction must be applied on top of them, the node is diverged and
 * needs a migration.
 */
import { existsSync, readFileSync } from "node:fs";
import type { LogStore, Lsn } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import { decodeTxn } from "./binlog/txn.ts";
import { parseGtidState } from "./binlog/grouper.ts";
import { decodeMarker, isMarker } from "./marker.ts";

/** Replication domain → highest sequence number this server wrote in it. */
export type OwnState = Map<number, bigint>;

export function ownFromBinlogState(state: string, serverId: number): OwnState {
  const own: OwnState = new Map();
  for (const g of parseGtidState(state)) {
    if (g.serverId !== serverId) continue;
    const prev = own.get(g.domainId);
    if (prev === undefined || g.seqNo > prev) own.set(g.domainId, g.seqNo);
  }
  return own;
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

export interface Extra {
  domain: number;
  /** First and last sequence number (of this server, in this domain) the cluster does not have. */
  from: bigint;
  to: bigint;
}

/** Own transactions in `actual` (the binlog) that `ref` (the log) does not cover. */
export function extrasOf(actual: OwnState, ref: OwnState): Extra[] {
  const out: Extra[] = [];
  for (const [domain, seq] of actual) {
    const have = ref.get(domain) ?? 0n;
    if (seq > have) out.push({ domain, from: have + 1n, to: seq });
  }
  return out;
}

export function describeExtras(extras: Extra[], serverId: number): string {
  const n = extras.reduce((s, e) => s + (e.to - e.from + 1n), 0n);
  const list = extras
    .map((e) => (e.from === e.to ? `${e.domain}-${serverId}-${e.from}` : `${e.domain}-${serverId}-${e.from}..${e.to}`))
    .join(", ");
  return `${n} transaction(s) (GTID ${list})`;
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
  /** Own state the cluster's log (or the baseline) accounts for. */
  own: OwnState;
  /** GTID position right after the newest own transaction the log holds: where capture resumes. */
  pos: string;
  /** LSN of the newest own entry (0 if only the baseline speaks). */
  lastOwnLsn: Lsn;
  /** A transaction captured on another node comes after the newest own entry. */
  foreignAfter: boolean;
}

/**
 * Scans the log backwards from its end to this node's newest leader marker (or to the baseline /
 * the log's base), collecting own transactions. Cost: the entries since this node last led.
 */
export function scanOwnRef(store: LogStore, nodeId: number, serverId: number, baseline: Baseline | undefined): OwnRef {
  const own: OwnState = new Map();
  let pos: string | undefined;
  let lastOwnLsn = 0;
  let foreignAfter = false;
  const floor = Math.max(store.base().lsn, baseline?.lsn ?? 0);
  for (let lsn = store.lastLsn(); lsn > floor; lsn--) {
    const e = store.get(lsn);
    if (e?.kind !== "data") continue;
    if (isMarker(e.data)) {
      const m = decodeMarker(e.data);
      if (m.node !== nodeId) continue;
      for (const [d, s] of parseOwn(m.own)) raise(own, d, s);
      pos ??= m.pos;
      if (lastOwnLsn === 0) lastOwnLsn = lsn;
      return { own, pos, lastOwnLsn, foreignAfter };
    }
    const txn = decodeTxn(e.data);
    if (txn.gtid.serverId === serverId) {
      raise(own, txn.gtid.domainId, txn.gtid.seqNo);
      pos ??= txn.gtidState;
      if (lastOwnLsn === 0) lastOwnLsn = lsn;
    } else if (lastOwnLsn === 0) {
      foreignAfter = true;
    }
  }
  if (baseline) for (const [d, s] of parseOwn(baseline.own)) raise(own, d, s);
  return { own, pos: pos ?? baseline?.pos ?? "", lastOwnLsn, foreignAfter };
}
