import { concatBytes } from "../common/bytes.ts";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { encodeRecord, FLAG_BATCH_END, FLAG_BATCH_START, markBatch, type WalEntry } from "./record.ts";
import { segmentsToRemove, type RetentionPolicy } from "./retention.ts";
import { recoverSegments, RESET_NAME } from "./recovery.ts";
import { fsyncDir } from "../common/files.ts";
import { Segment, segmentName, type RecoveryNote } from "./segment.ts";

export type { WalEntry } from "./record.ts";
export type { RetentionPolicy } from "./retention.ts";

export interface WalOptions {
  dir: string;
  /** fdatasync every batch before acknowledging it (default true). Off: fast, not crash-safe. */
  fsync?: boolean;
  /** Start a new segment once the active one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** Upper bound of one write batch (default 4 MiB; a single larger entry is written alone). */
  maxBatchBytes?: number;
  /** Most entries in one write batch (default 4096). */
  maxBatchEntries?: number;
  /**
   * Linger: when a batch starts with room left, wait up to this long for more entries before
   * writing (default 0: write at once; batches still form while the previous one syncs).
   */
  batchWaitMs?: number;
  /** "lz4" (default) or "none". */
  compression?: "lz4" | "none";
  /** Payloads shorter than this are stored uncompressed (default 128). */
  compressMinBytes?: number;
  retention?: RetentionPolicy & {
    /** How often retention runs besides after every rotation (default 60 s; 0 = only on rotation). */
    checkIntervalMs?: number;
  };
  /** LSN of the first entry when the directory is empty (default 1). */
  initialLsn?: number;
  /** Lowest LSN retention must keep (e.g. what live followers still need); read on every pass. */
  protectFromLsn?: () => number | undefined;
}

export interface ReadOptions {
  /** Last LSN to return (inclusive); default: everything durable. */
  toLsn?: number;
  /** Stop after this many payload bytes (at least one entry is returned). Default 4 MiB. */
  maxBytes?: number;
}

export interface WalStats {
  firstLsn: number;
  lastLsn: number;
  lastTerm: number;
  segments: number;
  bytes: number;
  appendedEntries: number;
  batches: number;
  fsyncs: number;
  removedSegments: number;
}

export interface RetentionResult {
  removedSegments: number;
  removedBytes: number;
  firstLsn: number;
}

interface Pending {
  rec: Uint8Array;
  lsn: number;
  term: number;
  timeMs: number;
  resolve: (lsn: number) => void;
  reject: (err: Error) => void;
}

const log = logger("wal");

export class Wal {
  readonly dir: string;
  private readonly fsync: boolean;
  private readonly segmentBytes: number;
  private readonly maxBatchBytes: number;
  private readonly compressMinBytes: number;
  private readonly maxBatchEntries: number;
  private readonly batchWaitMs: number;
  private lingerDone: (() => void) | undefined;
  private readonly retention: WalOptions["retention"];
  private readonly protectFromLsn?: () => number | undefined;
  private segments: Segment[];
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  /** LSN/term given to the newest queued entry (durable or not). */
  private assignedLsn: number;
  private assignedTerm: number;
  private failed: Error | undefined;
  private closed = false;
  private exclusive = false;
  private waiters: Array<{ lsn: number; resolve: () => void }> = [];
  private retentionTimer: ReturnType<typeof setInterval> | undefined;
  private counters = { appendedEntries: 0, batches: 0, fsyncs: 0, removedSegments: 0 };
  /** What recovery did on open (torn tails cut). */
  readonly recovery: RecoveryNote[];

  private constructor(opts: WalOptions, segments: Segment[], notes: RecoveryNote[]) {
    this.dir = opts.dir;
    this.fsync = opts.fsync ?? true;
    this.segmentBytes = opts.segmentBytes ?? 64 * 1024 * 1024;
    this.maxBatchBytes = opts.maxBatchBytes ?? 4 * 1024 * 1024;
    this.compressMinBytes = opts.compression === "none" ? Number.POSITIVE_INFINITY : (opts.compressMinBytes ?? 128);
    this.maxBatchEntries = Math.max(1, opts.maxBatchEntries ?? 4096);
    this.batchWaitMs = Math.max(0, opts.batchWaitMs ?? 0);
    this.retention = opts.retention;
    this.protectFromLsn = opts.protectFromLsn;
    this.segments = segments;
    this.recovery = notes;
    const last = segments[segments.length - 1]!;
    this.assignedLsn = last.lastLsn;
    this.assignedTerm = last.lastTerm;
    const interval = opts.retention?.checkIntervalMs ?? 60_000;
    if (opts.retention && (opts.retention.maxAgeHours || opts.retention.maxBytes) && interval > 0) {
      this.retentionTimer = setInterval(() => {
        try {
          this.applyRetention();
        } catch (err) {
          log.warn(`WAL retention failed: ${(err as Error).message}`);
        }
      }, interval);
      this.retentionTimer.unref?.();
    }
  }

  /** Opens (creating if needed) the WAL in `opts.dir`, verifying every segment. */
  static async open(opts: WalOptions): Promise<Wal> {
    const { segments, notes } = recoverSegments(opts.dir, opts.fsync ?? true, opts.initialLsn ?? 1);
    return new Wal(opts, segments, notes);
  }

  /** Appends are fsynced before they count as written (WalOptions.fsync). */
  get durable(): boolean {
    return this.fsync;
  }

  /** First LSN still stored; lastLsn + 1 when the WAL holds nothing. */
  get firstLsn(): number {
    return this.segments[0]!.firstLsn;
  }

  /** Newest durable LSN (0 or initialLsn - 1 when empty). */
  get lastLsn(): number {
    return this.active.lastLsn;
  }

  get lastTerm(): number {
    return this.active.lastTerm;
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1]!;
  }

  /** Term of the entry at `lsn`; also answers for firstLsn - 1. Undefined if not stored. */
  termAt(lsn: number): number | undefined {
    const seg = this.segmentFor(lsn) ?? (lsn === this.firstLsn - 1 ? this.segments[0] : undefined);
    return seg?.termAt(lsn);
  }

  /** Leader path: appends `data` under the next LSN; resolves with that LSN once durable. */
  append(data: Uint8Array, term: number): Promise<number> {
    const err = this.refuse();
    if (err) return Promise.reject(err);
    if (term < this.assignedTerm) {
      return Promise.reject(new WolfError("state", `WAL append with term ${term} after term ${this.assignedTerm}`));
    }
    return this.enqueue({ lsn: this.assignedLsn + 1, term, timeMs: Date.now(), data });
  }

  /**
   * Follower path: appends entries that already carry their LSN (must continue the log exactly) and
   * term. Resolves once all of them are durable.
   */
  async appendEntries(entries: readonly WalEntry[]): Promise<void> {
    const err = this.refuse();
    if (err) throw err;
    let lsn = this.assignedLsn;
    let term = this.assignedTerm;
    for (const e of entries) {
      if (e.lsn !== lsn + 1) {
        throw new WolfError("state", `WAL append of LSN ${e.lsn} does not continue the log at ${lsn}`);
      }
      if (e.term < term) {
        throw new WolfError("state", `WAL append of LSN ${e.lsn} with term ${e.term} after term ${term}`);
      }
      lsn = e.lsn;
      term = e.term;
    }
    let last: Promise<number> | undefined;
    for (const e of entries) last = this.enqueue(e);
    if (last) await last;
  }

  private refuse(): Error | undefined {
    if (this.failed) return this.failed;
    if (this.closed) return new WolfError("state", "WAL is closed");
    if (this.exclusive) return new WolfError("state", "WAL is being truncated or reset; retry");
    return undefined;
  }

  private enqueue(e: WalEntry): Promise<number> {
    const rec = encodeRecord(e, { compressMinBytes: this.compressMinBytes });
    this.assignedLsn = e.lsn;
    this.assignedTerm = e.term;
    this.counters.appendedEntries++;
    return new Promise<number>((resolve, reject) => {
      this.pending.push({ rec, lsn: e.lsn, term: e.term, timeMs: e.timeMs, resolve, reject });
      if (!this.flushing) this.flushing = this.flushLoop();
      else if (this.lingerDone && this.pending.length >= this.maxBatchEntries) this.lingerDone();
    });
  }

  /**
   * Appends entries that carry their LSN and term, synchronously: written (and fdatasync'ed when
   * fsync is on) before it returns, as one batch. For callers with a synchronous contract (the
   * cluster's LogStore); must not be mixed with in-flight async appends.
   */
  appendSync(entries: readonly WalEntry[]): void {
    const err = this.refuse();
    if (err) throw err;
    this.requireQuiet("appendSync");
    if (entries.length === 0) return;
    let lsn = this.assignedLsn;
    let term = this.assignedTerm;
    for (const e of entries) {
      if (e.lsn !== lsn + 1)
        throw new WolfError("state", `WAL append of LSN ${e.lsn} does not continue the log at ${lsn}`);
      if (e.term < term)
        throw new WolfError("state", `WAL append of LSN ${e.lsn} with term ${e.term} after term ${term}`);
      lsn = e.lsn;
      term = e.term;
    }
    const recs = entries.map((e) => encodeRecord(e, { compressMinBytes: this.compressMinBytes }));
    // Split by maxBatchBytes so one huge call does not build one huge buffer.
    let i = 0;
    while (i < recs.length) {
      let size = 0;
      let j = i;
      while (j < recs.length && (j === i || size + recs[j]!.length <= this.maxBatchBytes)) size += recs[j++]!.length;
      const batch = recs.slice(i, j);
      try {
        if (this.active.bytes >= this.segmentBytes && this.active.count > 0) this.rotate();
        markBatch(batch[0]!, FLAG_BATCH_START);
        markBatch(batch[batch.length - 1]!, FLAG_BATCH_END);
        const records = entries
          .slice(i, j)
          .map((e, k) => ({ size: batch[k]!.length, lsn: e.lsn, term: e.term, timeMs: e.timeMs }));
        this.active.appendSync(joined(batch, size), records, this.fsync);
      } catch (e) {
        this.failed = new WolfError("io", `WAL write failed in ${this.dir}: ${(e as Error).message}`, { cause: e });
        log.error(this.failed.message);
        throw this.failed;
      }
      this.counters.appendedEntries += batch.length;
      this.counters.batches++;
      if (this.fsync) this.counters.fsyncs++;
      this.assignedLsn = entries[j - 1]!.lsn;
      this.assignedTerm = entries[j - 1]!.term;
      i = j;
    }
    this.wake();
  }

  private async flushLoop(): Promise<void> {
    // Let the appenders of this turn join the first batch.
    await Promise.resolve();
    try {
      while (this.pending.length > 0) {
        if (this.batchWaitMs > 0 && this.pending.length < this.maxBatchEntries) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(() => this.lingerDone?.(), this.batchWaitMs);
            this.lingerDone = () => {
              clearTimeout(timer);
              this.lingerDone = undefined;
              resolve();
            };
          });
        }
        let size = 0;
        let n = 0;
        while (
          n < this.pending.length &&
          n < this.maxBatchEntries &&
          (n === 0 || size + this.pending[n]!.rec.length <= this.maxBatchBytes)
        ) {
          size += this.pending[n]!.rec.length;
          n++;
        }
        const batch = this.pending.splice(0, n);
        try {
          await this.writeBatch(batch, size);
        } catch (err) {
          const error = new WolfError("io", `WAL write failed in ${this.dir}: ${(err as Error).message}`, {
            cause: err,
          });
          this.failed = error;
          for (const p of batch) p.reject(error);
          for (const p of this.pending.splice(0)) p.reject(error);
          log.error(error.message);
          return;
        }
        for (const p of batch) p.resolve(p.lsn);
        this.wake();
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async writeBatch(batch: Pending[], size: number): Promise<void> {
    if (this.active.bytes >= this.segmentBytes && this.active.count > 0) this.rotate();
    markBatch(batch[0]!.rec, FLAG_BATCH_START);
    markBatch(batch[batch.length - 1]!.rec, FLAG_BATCH_END);
    const buf = joined(
      batch.map((p) => p.rec),
      size,
    );
    const records = batch.map((p) => ({ size: p.rec.length, lsn: p.lsn, term: p.term, timeMs: p.timeMs }));
    await this.active.append(buf, records, this.fsync);
    this.counters.batches++;
    if (this.fsync) this.counters.fsyncs++;
  }

  private rotate(): void {
    const old = this.active;
    const seg = Segment.create(this.dir, old.lastLsn + 1, old.lastTerm);
    this.segments.push(seg);
    // Older segments are only read from now on; keep their fds (reads use them).
    if (this.retention && (this.retention.maxAgeHours || this.retention.maxBytes)) this.applyRetention();
  }

  /** Resolves when `lsn` is durable (for tailing readers: catch-up, appliers). */
  waitFor(lsn: number, timeoutMs?: number): Promise<boolean> {
    if (this.lastLsn >= lsn) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const w = { lsn, resolve: () => resolve(true) };
      this.waiters.push(w);
      if (timeoutMs !== undefined) {
        setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) {
            this.waiters.splice(i, 1);
            resolve(this.lastLsn >= lsn);
          }
        }, timeoutMs);
      }
    });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const last = this.lastLsn;
    const ready = this.waiters.filter((w) => w.lsn <= last);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => w.lsn > last);
    for (const w of ready) w.resolve();
  }

  /** Durable entries from `fromLsn` on (see ReadOptions). Throws if `fromLsn` was pruned. */
  read(fromLsn: number, opts: ReadOptions = {}): WalEntry[] {
    if (this.failed) throw this.failed;
    if (fromLsn < this.firstLsn) {
      throw new WolfError(
        "state",
        `WAL entries before LSN ${this.firstLsn} were removed by retention (asked for ${fromLsn})`,
        {
          hint: "the node needs a fresh copy: wolf ctl scale migrate --from <node>",
        },
      );
    }
    const toLsn = Math.min(opts.toLsn ?? this.lastLsn, this.lastLsn);
    const maxBytes = opts.maxBytes ?? 4 * 1024 * 1024;
    const out: WalEntry[] = [];
    let bytes = 0;
    for (let i = Math.max(0, this.segmentIndex(fromLsn)); i < this.segments.length; i++) {
      const seg = this.segments[i]!;
      const from = fromLsn + out.length;
      if (from > toLsn || from < seg.firstLsn || bytes >= maxBytes) break;
      bytes += seg.read(from, toLsn, maxBytes - bytes, out);
      if (out.length === 0 || out[out.length - 1]!.lsn < Math.min(toLsn, seg.lastLsn)) break; // maxBytes reached
    }
    return out;
  }

  private segmentIndex(lsn: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    if (lsn < this.firstLsn || lsn > this.lastLsn) return -1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid]!.firstLsn <= lsn) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private segmentFor(lsn: number): Segment | undefined {
    const i = this.segmentIndex(lsn);
    return i < 0 ? undefined : this.segments[i];
  }

  /** Waits until every queued append is written (or failed). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /**
   * Drops every entry after `lsn` (a follower discarding a deposed leader's uncommitted suffix),
   * after the queued appends are written. Appends are refused while it runs.
   */
  async truncateAfter(lsn: number): Promise<void> {
    await this.afterQueuedAppends(() => this.truncateAfterSync(lsn));
  }

  /** Refuses new appends while the queued ones are written, then runs `rewrite` (truncate, reset). */
  private async afterQueuedAppends(rewrite: () => void): Promise<void> {
    const err = this.refuse();
    if (err) throw err;
    this.exclusive = true;
    try {
      await this.drain();
    } finally {
      this.exclusive = false;
    }
    rewrite();
  }

  /** Synchronous truncateAfter for callers with nothing in flight (the LogStore adapter). */
  truncateAfterSync(lsn: number): void {
    this.requireQuiet("truncate");
    if (lsn < this.firstLsn - 1) {
      throw new WolfError(
        "state",
        `cannot truncate the WAL after LSN ${lsn}: entries before ${this.firstLsn} are already removed`,
      );
    }
    if (lsn >= this.lastLsn) return;
    try {
      while (this.segments.length > 1 && this.active.firstLsn > lsn) this.segments.pop()!.remove();
      this.active.makeWritable();
      this.active.truncateAfter(lsn);
      fsyncDir(this.dir);
    } catch (e) {
      this.failed = new WolfError("io", `WAL truncation after LSN ${lsn} failed: ${(e as Error).message}`, {
        cause: e,
      });
      throw this.failed;
    }
    this.assignedLsn = this.active.lastLsn;
    this.assignedTerm = this.active.lastTerm;
  }

  /**
   * Discards the whole log and continues at `nextLsn` (after a node was rebuilt from a dump taken
   * at nextLsn - 1 in term `prevTerm`).
   */
  async reset(nextLsn: number, prevTerm: number): Promise<void> {
    await this.afterQueuedAppends(() => this.resetSync(nextLsn, prevTerm));
  }

  resetSync(nextLsn: number, prevTerm: number): void {
    this.requireQuiet("reset");
    try {
      // New segment under a temporary name first; open() finishes a reset interrupted by a crash.
      const staged = Segment.create(this.dir, nextLsn, prevTerm, RESET_NAME);
      for (const s of this.segments) s.remove();
      this.segments = [staged.renameTo(segmentName(nextLsn))];
      fsyncDir(this.dir);
    } catch (e) {
      this.failed = new WolfError("io", `WAL reset to LSN ${nextLsn} failed: ${(e as Error).message}`, { cause: e });
      throw this.failed;
    }
    this.assignedLsn = nextLsn - 1;
    this.assignedTerm = prevTerm;
  }

  private requireQuiet(what: string): void {
    const err = this.failed ?? (this.closed ? new WolfError("state", "WAL is closed") : undefined);
    if (err) throw err;
    if (this.flushing || this.pending.length > 0) {
      throw new WolfError("state", `WAL ${what} while appends are in flight`);
    }
  }

  /** Applies the retention policy now (also runs after rotations and on a timer). */
  applyRetention(nowMs = Date.now()): RetentionResult {
    const policy = this.retention ?? {};
    return this.removeOldest(segmentsToRemove(this.segments, policy, nowMs, this.protectFromLsn?.()));
  }

  private removeOldest(n: number): RetentionResult {
    let removedBytes = 0;
    for (const seg of this.segments.slice(0, n)) {
      removedBytes += seg.bytes;
      seg.remove();
    }
    if (n > 0) {
      this.segments = this.segments.slice(n);
      this.counters.removedSegments += n;
      fsyncDir(this.dir);
      log.info(`WAL retention removed ${n} segment(s), ${removedBytes} bytes; first LSN now ${this.firstLsn}`);
    }
    return { removedSegments: n, removedBytes, firstLsn: this.firstLsn };
  }

  /** Drops every segment whose entries all lie before `lsn` (never the active one). */
  pruneBefore(lsn: number): RetentionResult {
    let n = 0;
    while (n < this.segments.length - 1 && this.segments[n]!.lastLsn < lsn) n++;
    return this.removeOldest(n);
  }

  stats(): WalStats {
    return {
      firstLsn: this.firstLsn,
      lastLsn: this.lastLsn,
      lastTerm: this.lastTerm,
      segments: this.segments.length,
      bytes: this.segments.reduce((sum, s) => sum + s.bytes, 0),
      ...this.counters,
    };
  }

  /** Writes what is queued, then closes the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    await this.drain();
    for (const s of this.segments) s.close();
    for (const w of this.waiters.splice(0)) w.resolve();
  }
}

/** One buffer for a batch of encoded records (a batch of one is written as is, without a copy). */
function joined(parts: Uint8Array[], size: number): Uint8Array {
  return parts.length === 1 ? parts[0]! : concatBytes(parts, size);
}
