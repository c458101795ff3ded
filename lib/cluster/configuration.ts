/**
 * The voter set as the log defines it: config entries are ordinary log entries, effective as soon
 * as they are in the log (not when committed), so the latest one in the log is the voter set used
 * for elections, commit and acks. The latest committed one is kept in the StableStore (beside term
 * and vote), so a node whose log was pruned or reset past it still knows its voters.
 */
import type { ClusterMembers, LogEntry, LogStore, Lsn, NodeId } from "./types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeMembers(m: ClusterMembers): Uint8Array {
  return enc.encode(JSON.stringify(m));
}
export function decodeMembers(data: Uint8Array): ClusterMembers {
  return JSON.parse(dec.decode(data)) as ClusterMembers;
}

/** A config entry: its LSN and the voter set it holds. */
export interface ConfigEntry {
  lsn: Lsn;
  members: ClusterMembers;
}

const NO_MEMBERS: ClusterMembers = { voters: [] };

export class Configuration {
  /** The latest committed config (mirrored in the StableStore by the node). */
  committed: ConfigEntry | null;
  /** Config entries in the log after `committed` (latest = effective voter set). */
  private configs: ConfigEntry[] = [];
  private voterCache: { of: ClusterMembers; all: NodeId[]; others: NodeId[]; set: Set<NodeId> } | null = null;

  /**
   * `committed` as the StableStore holds it; the log's config entries after it are read from
   * `store`. `onVoters` hears the voter set of every config entry appended later.
   */
  constructor(
    private readonly selfId: NodeId,
    committed: ConfigEntry | null,
    store: LogStore,
    private readonly onVoters: (members: ClusterMembers) => void,
  ) {
    this.committed = committed;
    if (committed) this.configs.push(committed);
    const base = store.base().lsn;
    const from = Math.max(base + 1, committed ? committed.lsn + 1 : 1);
    for (let lsn = from; lsn <= store.lastLsn(); lsn++) {
      const e = store.get(lsn);
      if (e?.kind === "config") this.configs.push({ lsn, members: decodeMembers(e.data) });
    }
  }

  /** The effective voter set (empty before bootstrap). */
  members(): ClusterMembers {
    return this.configs[this.configs.length - 1]?.members ?? NO_MEMBERS;
  }

  /** The latest config entry, committed or not (undefined before bootstrap). */
  latest(): ConfigEntry | undefined {
    return this.configs[this.configs.length - 1];
  }

  /** Voter ids of the current config, cached per config (hot path). */
  voterIds() {
    const m = this.members();
    if (this.voterCache?.of !== m) {
      const all = m.voters.map((v) => v.id).sort((a, b) => a - b);
      this.voterCache = { of: m, all, others: all.filter((id) => id !== this.selfId), set: new Set(all) };
    }
    return this.voterCache;
  }

  isVoter(id: NodeId = this.selfId): boolean {
    return this.voterIds().set.has(id);
  }

  otherVoters(): NodeId[] {
    return this.voterIds().others;
  }

  /** The bootstrap config (entry 1 of a brand new cluster). */
  addBootstrap(entry: ConfigEntry): void {
    this.configs.push(entry);
  }

  /** Entries just appended to the log: their config entries take effect now. */
  onEntriesAppended(entries: LogEntry[]): void {
    for (const e of entries) {
      if (e.kind !== "config") continue;
      const members = decodeMembers(e.data);
      this.configs.push({ lsn: e.lsn, members });
      this.onVoters(members);
    }
  }

  /** The log was truncated after `after`: config entries past it no longer count. */
  onTruncated(after: Lsn): void {
    this.configs = this.configs.filter((c) => c.lsn <= after || c === this.committed);
  }

  /**
   * Commit reached `commitLsn`: the latest config at or below it becomes `committed` and older
   * ones are forgotten. Returns whether `committed` changed (the caller persists it).
   */
  noteCommitted(commitLsn: Lsn): boolean {
    let latest: ConfigEntry | null = null;
    for (const c of this.configs) if (c.lsn <= commitLsn) latest = c;
    if (!latest || latest.lsn === this.committed?.lsn) return false;
    this.committed = latest;
    this.configs = this.configs.filter((c) => c.lsn >= latest.lsn);
    return true;
  }

  /** After a migration: the log is empty above `committed`, which is the only config. */
  resetTo(committed: ConfigEntry): void {
    this.committed = committed;
    this.configs = [committed];
  }
}
