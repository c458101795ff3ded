/**
 * Log shipping: the leader's per-follower progress, commit and ack counting, and the follower's
 * side of an append (consistency check, conflict truncation, durable append).
 *
 * The leader pipelines: while a follower is in "replicate" mode up to `maxInflight` appends are
 * outstanding and `next` advances optimistically; any rejection or timeout switches it to "probe"
 * mode (one append at a time from the follower's hint) until an append succeeds again. Replies may
 * arrive in any order: `match` only grows, and a stale rejection at worst causes a resend.
 */
import { majority } from "./election.ts";
import type { AppendRequest, LogEntry, LogStore, Lsn, NodeId, Term } from "./types.ts";

export interface ReplicationLimits {
  maxBatchEntries: number;
  maxBatchBytes: number;
  maxInflight: number;
}
export const DEFAULT_LIMITS: ReplicationLimits = { maxBatchEntries: 512, maxBatchBytes: 1 << 20, maxInflight: 8 };

export class Progress {
  /** Next LSN to send. */
  next: Lsn;
  /** Highest LSN known to be stored on the follower and equal to ours (in this term). */
  match: Lsn = 0;
  inflight = 0;
  probing = true;
  /** Last reply in the current term (any, including rejections): the follower is reachable. */
  lastReplyAt: number;
  /** Last actual reply (-Infinity until the first). */
  repliedAt = -Infinity;
  /** Since when the follower has been within lag_entries of our last LSN (null = not caught up). */
  caughtUpSince: number | null = null;
  needsMigration = false;
  /** The follower's log does not fsync (AppendReply.volatile): its match counts for nothing durable. */
  volatile = false;
  migrateNoticeAt = -Infinity;
  /** The follower's log epoch from its last reply (undefined until the first). */
  epoch: number | undefined;
  /** Highest commit LSN this follower can learn from what was sent to it (min(commit, last LSN sent)). */
  commitSent: Lsn = 0;

  constructor(
    readonly id: NodeId,
    lastLsn: Lsn,
    now: number,
  ) {
    this.next = lastLsn + 1;
    // Counts as "heard" at the start of a leadership so check-quorum has a full window.
    this.lastReplyAt = now;
  }
}

/**
 * The term of the entry at `lsn` (the base term at the pruned boundary, 0 for lsn 0 in a log that
 * was never pruned), or undefined when the log does not know it: beyond its end, or below its base
 * (pruned, or before the dump a migrated node was restored from) — lsn 0 included.
 */
export function termAt(store: LogStore, lsn: Lsn): Term | undefined {
  const base = store.base();
  if (lsn === base.lsn) return base.term;
  if (lsn < base.lsn) return undefined;
  return store.get(lsn)?.term;
}

export function lastTerm(store: LogStore): Term {
  return termAt(store, store.lastLsn()) ?? 0;
}

/**
 * The highest LSN that is committed given each voter's match (the leader's own = its last LSN).
 * Quorum on: the majority-th highest. Quorum off: the lowest among live voters.
 * Only an entry from the current term commits by counting (Raft §5.4.2).
 */
export function commitCandidate(matches: Lsn[], quorum: boolean, voterCount: number): Lsn {
  const sorted = [...matches].sort((a, b) => b - a);
  if (!quorum) return sorted.length === 0 ? 0 : sorted[sorted.length - 1]!;
  const need = majority(voterCount);
  return sorted.length >= need ? sorted[need - 1]! : 0;
}

export function buildAppend(
  store: LogStore,
  term: Term,
  commitLsn: Lsn,
  from: Lsn,
  limits: ReplicationLimits,
): AppendRequest | undefined {
  const prevLsn = from - 1;
  const prevTerm = termAt(store, prevLsn);
  if (prevTerm === undefined) return undefined; // pruned: the follower needs a migration
  const last = store.lastLsn();
  const entries =
    from <= last ? store.range(from, Math.min(last, from + limits.maxBatchEntries - 1), limits.maxBatchBytes) : [];
  // A store clips ranges to what it holds: entries that do not start at `from` must never be sent
  // as if they did (the receiver would drop the message as malformed, again and again).
  if (entries.length > 0 && entries[0]!.lsn !== from) return undefined;
  return { type: "append", term, prevLsn, prevTerm, entries, commitLsn, leaderLastLsn: last };
}

export type FollowerAppendResult =
  | { ok: true; matchLsn: Lsn; appended: LogEntry[]; truncatedAfter: Lsn | null }
  | { ok: false; hintLsn: Lsn; needsMigration?: boolean };

/**
 * Applies an append request to a follower's log. `commitLsn`: entries at or below it are never
 * overwritten (if the leader tries, this node's applied state diverged: needsMigration).
 *
 * A request that starts below the log's base (a node restored from a dump at base.lsn, which the
 * leader still treats as far behind) cannot be checked at prevLsn. If its entries reach the base,
 * the entry at the base must have the base's term; if they stop short, the answer is a refusal
 * with hintLsn = base.lsn, above prevLsn: "continue after my base", where prevTerm is checked.
 */
export function followerAppend(store: LogStore, req: AppendRequest, commitLsn: Lsn): FollowerAppendResult {
  const base = store.base();
  const last = store.lastLsn();
  if (req.prevLsn > last) return { ok: false, hintLsn: last };
  if (req.prevLsn >= base.lsn) {
    const have = termAt(store, req.prevLsn);
    if (have !== req.prevTerm) {
      if (req.prevLsn <= commitLsn) return { ok: false, hintLsn: req.prevLsn - 1, needsMigration: true };
      // Skip back over the whole conflicting term in one round trip.
      let hint = req.prevLsn - 1;
      const floor = Math.max(commitLsn, base.lsn);
      while (hint > floor && termAt(store, hint) === have) hint--;
      return { ok: false, hintLsn: hint };
    }
  } else {
    const atBase = req.entries[base.lsn - req.prevLsn - 1];
    if (!atBase) return { ok: false, hintLsn: base.lsn };
    if (atBase.term !== base.term) return { ok: false, hintLsn: base.lsn, needsMigration: true };
  }
  let truncatedAfter: Lsn | null = null;
  let i = 0;
  for (; i < req.entries.length; i++) {
    const e = req.entries[i]!;
    if (e.lsn <= base.lsn) continue;
    if (e.lsn > store.lastLsn()) break;
    if (termAt(store, e.lsn) === e.term) continue;
    if (e.lsn <= commitLsn) return { ok: false, hintLsn: e.lsn - 1, needsMigration: true };
    store.truncateAfter(e.lsn - 1);
    truncatedAfter = e.lsn - 1;
    break;
  }
  const appended = req.entries.slice(i).filter((e) => e.lsn > base.lsn);
  if (appended.length > 0) store.append(appended);
  return { ok: true, matchLsn: req.prevLsn + req.entries.length, appended, truncatedAfter };
}
