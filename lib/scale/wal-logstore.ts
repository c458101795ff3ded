/**
 * The cluster's LogStore over scale's segmented WAL, so log shipping, catch-up and elections use
 * the same durable log that holds captured transactions.
 *
 * LogStore is synchronous (durable before return), so this uses the WAL's synchronous path: each
 * append() call is one write + one fdatasync. Pruning is per segment: base() may stay below the
 * LSN asked for in pruneBefore() until the segment holding it is entirely older.
 */
import { WolfError } from "../common/errors.ts";
import type { EntryKind, LogEntry, LogStore, Lsn, Term } from "../cluster/types.ts";
import type { Wal, WalEntry } from "../wal/wal.ts";

const KIND_CODES: Record<EntryKind, number> = { data: 0, noop: 1, config: 2 };
const KINDS: EntryKind[] = ["data", "noop", "config"];

function toLogEntry(e: WalEntry): LogEntry {
  const kind = KINDS[e.kind ?? 0];
  if (!kind) throw new WolfError("protocol", `WAL entry ${e.lsn} has unknown kind ${e.kind}`);
  return { lsn: e.lsn, term: e.term, kind, data: e.data };
}

export class WalLogStore implements LogStore {
  /** Called after entries were removed from the end (a new leader overrode an uncommitted tail) or the log was reset. */
  onTruncate?: (afterLsn: Lsn) => void;

  constructor(readonly wal: Wal) {}

  /** wal.fsync off: this node's copies do not count for commits or acknowledgements (LogStore.durable). */
  get durable(): boolean {
    return this.wal.durable;
  }

  base(): { lsn: Lsn; term: Term } {
    const lsn = this.wal.firstLsn - 1;
    return { lsn, term: this.wal.termAt(lsn) ?? 0 };
  }

  lastLsn(): Lsn {
    return this.wal.lastLsn;
  }

  get(lsn: Lsn): LogEntry | undefined {
    if (lsn < this.wal.firstLsn || lsn > this.wal.lastLsn) return undefined;
    const e = this.wal.read(lsn, { toLsn: lsn })[0];
    return e ? toLogEntry(e) : undefined;
  }

  range(from: Lsn, to: Lsn, maxBytes?: number): LogEntry[] {
    const start = Math.max(from, this.wal.firstLsn);
    if (start > Math.min(to, this.wal.lastLsn)) return [];
    return this.wal.read(start, { toLsn: to, maxBytes: maxBytes ?? Number.MAX_SAFE_INTEGER }).map(toLogEntry);
  }

  append(entries: LogEntry[]): void {
    const now = Date.now();
    this.wal.appendSync(
      entries.map((e) => ({ lsn: e.lsn, term: e.term, kind: KIND_CODES[e.kind], timeMs: now, data: e.data })),
    );
  }

  truncateAfter(lsn: Lsn): void {
    const had = this.wal.lastLsn;
    this.wal.truncateAfterSync(lsn);
    if (had > lsn) this.onTruncate?.(lsn);
  }

  pruneBefore(lsn: Lsn): void {
    this.wal.pruneBefore(lsn);
  }

  resetTo(base: { lsn: Lsn; term: Term }): void {
    this.wal.resetSync(base.lsn + 1, base.term);
    this.onTruncate?.(base.lsn);
  }

  close(): void {
    void this.wal.close();
  }
}
