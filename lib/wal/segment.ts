/**
 * One segment file: a 32-byte header, then records with consecutive LSNs.
 *
 * Header: "WOLFWAL1", u64 first LSN, u64 term of the entry before it (so the log keeps answering
 * "term at firstLsn-1" after older segments are pruned), u32 version, u32 crc32 of bytes 0..27.
 * Files are named by their first LSN (20 digits), so a directory listing orders them.
 */
import fs from "node:fs";
import { basename, dirname, join } from "node:path";
import { fsyncDir } from "../common/files.ts";
import { crc32 } from "./crc.ts";
import { WalCorruptionError } from "./errors.ts";
import {
  checkRecord,
  decodePayload,
  FLAG_BATCH_END,
  FLAG_BATCH_START,
  getU64,
  RECORD_HEADER_BYTES,
  RECORD_MARKER,
  setU64,
  type WalEntry,
} from "./record.ts";

export const SEGMENT_HEADER_BYTES = 32;
const MAGIC = new TextEncoder().encode("WOLFWAL1");
const VERSION = 1;
const NAME_RE = /^(\d{20})\.wal$/;

export function segmentName(firstLsn: number): string {
  return `${String(firstLsn).padStart(20, "0")}.wal`;
}

/** First LSN encoded in a segment file name, or undefined for files that are not segments. */
export function parseSegmentName(name: string): number | undefined {
  const m = NAME_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

function encodeHeader(firstLsn: number, prevTerm: number): Uint8Array {
  const h = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(h.buffer);
  h.set(MAGIC, 0);
  setU64(view, 8, firstLsn);
  setU64(view, 16, prevTerm);
  view.setUint32(24, VERSION, true);
  view.setUint32(28, crc32(h.subarray(0, 28)), true);
  return h;
}

function decodeHeader(buf: Uint8Array): { firstLsn: number; prevTerm: number } | undefined {
  if (buf.length < SEGMENT_HEADER_BYTES) return undefined;
  for (let i = 0; i < MAGIC.length; i++) if (buf[i] !== MAGIC[i]) return undefined;
  const view = new DataView(buf.buffer, buf.byteOffset, SEGMENT_HEADER_BYTES);
  if (view.getUint32(28, true) !== crc32(buf.subarray(0, 28))) return undefined;
  if (view.getUint32(24, true) !== VERSION) return undefined;
  const firstLsn = getU64(view, 8);
  const prevTerm = getU64(view, 16);
  if (firstLsn === undefined || prevTerm === undefined) return undefined;
  return { firstLsn, prevTerm };
}

/** What recovery did to the last segment. */
export interface RecoveryNote {
  file: string;
  /** Bytes cut from a torn tail (0 if the segment was clean). */
  truncatedBytes: number;
  /** First LSN that was cut. */
  fromLsn?: number;
  /** The segment was only a torn header and was removed. */
  removed?: boolean;
}

export class Segment {
  private _path: string;
  readonly firstLsn: number;
  /** Term of the entry at firstLsn - 1 (0 if none). */
  readonly prevTerm: number;
  private fd: number;
  /** Byte offset of each record; index i holds LSN firstLsn + i. */
  private offsets: number[] = [];
  /** Term changes inside this segment: [lsn, term] pairs, ascending. */
  private termRuns: Array<[number, number]> = [];
  /** End of the last complete record: where the next write goes. */
  bytes = SEGMENT_HEADER_BYTES;
  /** Append time of the newest record (ms), or the file's mtime when empty. */
  lastTimeMs = 0;

  private constructor(path: string, fd: number, firstLsn: number, prevTerm: number) {
    this._path = path;
    this.fd = fd;
    this.firstLsn = firstLsn;
    this.prevTerm = prevTerm;
  }

  get path(): string {
    return this._path;
  }

  /** Renames the file in place (same directory); the caller syncs the directory. */
  renameTo(name: string): this {
    const path = join(dirname(this._path), name);
    fs.renameSync(this._path, path);
    this._path = path;
    return this;
  }

  get count(): number {
    return this.offsets.length;
  }

  /** LSN of the newest record, or firstLsn - 1 when the segment is empty. */
  get lastLsn(): number {
    return this.firstLsn + this.offsets.length - 1;
  }

  get lastTerm(): number {
    const run = this.termRuns[this.termRuns.length - 1];
    return run ? run[1] : this.prevTerm;
  }

  termAt(lsn: number): number | undefined {
    if (lsn === this.firstLsn - 1) return this.prevTerm;
    if (lsn < this.firstLsn || lsn > this.lastLsn) return undefined;
    let term = this.prevTerm;
    for (const [from, t] of this.termRuns) {
      if (from > lsn) break;
      term = t;
    }
    return term;
  }

  /** Creates an empty segment durably (header written and synced, directory entry synced). */
  static create(dir: string, firstLsn: number, prevTerm: number, name = segmentName(firstLsn)): Segment {
    const path = join(dir, name);
    const fd = fs.openSync(path, "wx+", 0o640);
    try {
      fs.writeSync(fd, encodeHeader(firstLsn, prevTerm), 0, SEGMENT_HEADER_BYTES, 0);
      fs.fdatasyncSync(fd);
      fsyncDir(dir);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    const seg = new Segment(path, fd, firstLsn, prevTerm);
    seg.lastTimeMs = Date.now();
    return seg;
  }

  /**
   * Opens and verifies a segment. In the last segment a damaged tail that was never followed by a
   * completed later batch is a torn write and is cut off; anywhere else damage is refused.
   * Returns undefined when the last segment is only a torn header (the file is removed).
   * `trustOrder`: the WAL was written with fsync, so a later batch proves an earlier one durable.
   */
  static open(
    path: string,
    expectFirstLsn: number | undefined,
    isLast: boolean,
    trustOrder: boolean,
    notes: RecoveryNote[],
  ): Segment | undefined {
    const file = basename(path);
    const buf = new Uint8Array(fs.readFileSync(path));
    const header = decodeHeader(buf);
    if (!header) {
      // A crash between creating the file and syncing its header leaves a short or zeroed file.
      if (
        isLast &&
        buf.length <= SEGMENT_HEADER_BYTES * 2 &&
        buf.subarray(SEGMENT_HEADER_BYTES).every((b) => b === 0)
      ) {
        fs.unlinkSync(path);
        notes.push({ file, truncatedBytes: buf.length, removed: true });
        return undefined;
      }
      throw new WalCorruptionError(file, 0, "the segment header is damaged");
    }
    if (expectFirstLsn !== undefined && header.firstLsn !== expectFirstLsn) {
      throw new WalCorruptionError(
        file,
        8,
        `header says first LSN ${header.firstLsn}, the file name says ${expectFirstLsn}`,
      );
    }
    const fd = fs.openSync(path, isLast ? "r+" : "r");
    const seg = new Segment(path, fd, header.firstLsn, header.prevTerm);
    try {
      seg.scan(buf, isLast, trustOrder, notes);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    if (seg.count === 0) seg.lastTimeMs = fs.statSync(path).mtimeMs;
    return seg;
  }

  private scan(buf: Uint8Array, isLast: boolean, trustOrder: boolean, notes: RecoveryNote[]): void {
    const file = basename(this.path);
    let off = SEGMENT_HEADER_BYTES;
    let expected = this.firstLsn;
    let term = this.prevTerm;
    while (off < buf.length) {
      const r = checkRecord(buf, off);
      if (r.ok && r.header.lsn === expected && r.header.term >= term) {
        this.index(off, r.header.lsn, r.header.term, r.header.timeMs);
        term = r.header.term;
        expected++;
        off += r.size;
        continue;
      }
      const what = r.ok
        ? r.header.lsn !== expected
          ? `record has LSN ${r.header.lsn}, expected ${expected}`
          : `record LSN ${expected} has term ${r.header.term} after term ${term}`
        : r.reason === "crc"
          ? `record LSN ${expected}: checksum mismatch`
          : r.reason === "short"
            ? `record LSN ${expected} is cut short`
            : `record LSN ${expected}: invalid header`;
      if (!isLast) throw new WalCorruptionError(file, off, `${what} (in a completed segment)`);
      // Without fsync nothing was promised durable, so any damaged tail is cut (and reported).
      const later = trustOrder ? laterBatchLsn(buf, off, expected) : undefined;
      if (later !== undefined) {
        throw new WalCorruptionError(
          file,
          off,
          `${what}, yet LSN ${later} of a later, completed write batch is intact`,
        );
      }
      fs.ftruncateSync(this.fd, off);
      fs.fsyncSync(this.fd);
      notes.push({ file, truncatedBytes: buf.length - off, fromLsn: expected });
      break;
    }
    this.bytes = off;
  }

  private index(off: number, lsn: number, term: number, timeMs: number): void {
    this.offsets.push(off);
    if (this.termRuns.length === 0 ? term !== this.prevTerm : this.termRuns[this.termRuns.length - 1]![1] !== term) {
      this.termRuns.push([lsn, term]);
    }
    this.lastTimeMs = timeMs;
  }

  /** Appends already-encoded records (one write batch); updates the index only after the write. */
  async append(
    buf: Uint8Array,
    records: Array<{ size: number; lsn: number; term: number; timeMs: number }>,
    fsync: boolean,
  ): Promise<void> {
    // The write only reaches the page cache (microseconds); the sync is what takes milliseconds,
    // so only the sync goes to the thread pool and the event loop keeps serving appenders.
    let written = 0;
    while (written < buf.length) {
      written += fs.writeSync(this.fd, buf, written, buf.length - written, this.bytes + written);
    }
    if (fsync) await fdatasync(this.fd);
    let off = this.bytes;
    for (const r of records) {
      this.index(off, r.lsn, r.term, r.timeMs);
      off += r.size;
    }
    this.bytes = off;
  }

  /** Synchronous twin of append() for callers that must be durable before returning. */
  appendSync(
    buf: Uint8Array,
    records: Array<{ size: number; lsn: number; term: number; timeMs: number }>,
    fsync: boolean,
  ): void {
    let written = 0;
    while (written < buf.length) {
      written += fs.writeSync(this.fd, buf, written, buf.length - written, this.bytes + written);
    }
    if (fsync) fs.fdatasyncSync(this.fd);
    let off = this.bytes;
    for (const r of records) {
      this.index(off, r.lsn, r.term, r.timeMs);
      off += r.size;
    }
    this.bytes = off;
  }

  /** Reads records [fromLsn, toLsn] (clamped to this segment), up to maxBytes of payload (≥ 1 entry). */
  read(fromLsn: number, toLsn: number, maxBytes: number, out: WalEntry[]): number {
    const from = Math.max(fromLsn, this.firstLsn);
    const to = Math.min(toLsn, this.lastLsn);
    if (from > to) return 0;
    const start = this.offsets[from - this.firstLsn]!;
    // Stored bytes never exceed raw bytes (we only keep compression that helps), so reading about
    // maxBytes of records is enough; the loop below stops at the exact limit.
    let last = from;
    while (last < to && this.offsets[last + 1 - this.firstLsn]! - start <= maxBytes) last++;
    toLsn = last;
    const end = last === this.lastLsn ? this.bytes : this.offsets[last - this.firstLsn + 1]!;
    const buf = new Uint8Array(end - start);
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(this.fd, buf, got, buf.length - got, start + got);
      if (n === 0) throw new WalCorruptionError(basename(this.path), start + got, "segment is shorter than its index");
      got += n;
    }
    let off = 0;
    let bytes = 0;
    for (let lsn = from; lsn <= toLsn; lsn++) {
      const r = checkRecord(buf, off);
      if (!r.ok || r.header.lsn !== lsn) {
        throw new WalCorruptionError(
          basename(this.path),
          start + off,
          `record LSN ${lsn} changed on disk since it was written`,
        );
      }
      const entry = decodePayload(buf, off, r.header);
      if (out.length > 0 && bytes + entry.data.length > maxBytes) break;
      out.push(entry);
      bytes += entry.data.length;
      off += r.size;
      if (bytes >= maxBytes) break;
    }
    return bytes;
  }

  /** Drops every record after `lsn` (lsn may be firstLsn - 1: drop all). */
  truncateAfter(lsn: number): void {
    if (lsn >= this.lastLsn) return;
    const keep = Math.max(0, lsn - this.firstLsn + 1);
    const end = this.offsets[keep]!;
    fs.ftruncateSync(this.fd, end);
    fs.fsyncSync(this.fd);
    this.offsets.length = keep;
    while (this.termRuns.length > 0 && this.termRuns[this.termRuns.length - 1]![0] > lsn) this.termRuns.pop();
    this.bytes = end;
  }

  /** Reopens read-write: the segment becomes the active one again (after a truncation). */
  makeWritable(): void {
    const fd = fs.openSync(this.path, "r+");
    fs.closeSync(this.fd);
    this.fd = fd;
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  remove(): void {
    this.close();
    fs.unlinkSync(this.path);
  }
}

/**
 * After damage at `off` (where LSN `expected` should be), looks for proof that a later write batch
 * exists: an intact record that starts a batch after `expected`, or any intact record after an
 * intact batch end. A batch is written only after the previous one was synced, so such a record
 * proves the damaged one had been acknowledged. Returns that record's LSN, if any.
 */
function laterBatchLsn(buf: Uint8Array, off: number, expected: number): number | undefined {
  let sawBatchEnd = false;
  for (let p = off + 1; p + RECORD_HEADER_BYTES <= buf.length; p++) {
    if (buf[p + 13] !== RECORD_MARKER) continue;
    const r = checkRecord(buf, p);
    if (!r.ok || r.header.lsn < expected) continue;
    if (sawBatchEnd || (r.header.lsn > expected && r.header.flags & FLAG_BATCH_START)) return r.header.lsn;
    if (r.header.flags & FLAG_BATCH_END) sawBatchEnd = true;
    p += r.size - 1;
  }
  return undefined;
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()));
  });
}
