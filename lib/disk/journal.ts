/**
 * The metadata journal: an append-only, ordered log of MetaOps in segment files
 * (journal-<first seq>.log). Each record is [u32 length][u32 CRC-32][JSON {"s": seq, "o": op}].
 * Appends are plain writes; `sync` is a group commit (one fdatasync for every append before it).
 * On open, records are replayed until the first torn or corrupt one, which is cut off: that is
 * where the process died, and everything before it that was synced is intact.
 *
 * Records are self-contained and numbered: replaying the same sequence gives the same state.
 */
import {
  closeSync,
  fdatasync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { fsyncDir } from "../common/files.ts";
import { logger } from "../common/log.ts";
import type { MetaOp } from "./meta-state.ts";
import { profile, record } from "./profile.ts";

const log = logger("disk:journal");
const SEGMENT_RE = /^journal-(\d{16})\.log$/;

export interface JournalRecord {
  seq: number;
  op: MetaOp;
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

function segmentName(firstSeq: number): string {
  return `journal-${String(firstSeq).padStart(16, "0")}.log`;
}

export function encodeRecord(rec: JournalRecord): Buffer {
  const payload = Buffer.from(JSON.stringify({ s: rec.seq, o: rec.op }));
  const buf = Buffer.allocUnsafe(8 + payload.length);
  buf.writeUInt32LE(payload.length, 0);
  buf.writeUInt32LE(Bun.hash.crc32(payload) >>> 0, 4);
  payload.copy(buf, 8);
  return buf;
}

/** Decodes records from a segment; returns them, where each starts, and the length of the valid prefix. */
export function decodeRecords(buf: Buffer): { records: JournalRecord[]; offsets: number[]; validLength: number } {
  const records: JournalRecord[] = [];
  const offsets: number[] = [];
  let pos = 0;
  while (pos + 8 <= buf.length) {
    const len = buf.readUInt32LE(pos);
    const crc = buf.readUInt32LE(pos + 4);
    if (pos + 8 + len > buf.length) break;
    const payload = buf.subarray(pos + 8, pos + 8 + len);
    if (Bun.hash.crc32(payload) >>> 0 !== crc) break;
    let doc: { s: number; o: MetaOp };
    try {
      doc = JSON.parse(payload.toString());
    } catch {
      break;
    }
    records.push({ seq: doc.s, op: doc.o });
    offsets.push(pos);
    pos += 8 + len;
  }
  return { records, offsets, validLength: pos };
}

const DURABLE_FILE = "durable";

/** The seq up to which a sync is known to have completed (0 if unknown). */
function readDurableMark(dir: string): number {
  try {
    const n = Number.parseInt(readFileSync(join(dir, DURABLE_FILE), "latin1"), 10);
    return Number.isFinite(n) && n > 0 ? n : 0;
  } catch {
    return 0;
  }
}

export class Journal {
  private fd = -1;
  /** Seq of the last appended record. */
  lastSeq = 0;
  /** Seq up to which records are on stable storage. */
  durableSeq = 0;
  /** Bytes appended since the last rotation. */
  segmentBytes = 0;
  private flushing?: Promise<void>;
  /** Segments replaced by `rotate` whose fds still need a sync before they are closed. */
  private readonly retired: number[] = [];
  /** Runs before each fdatasync (the chunk store makes the chunks written so far durable first). */
  beforeSync?: () => Promise<void>;
  /** `durable`: the last seq a completed sync covered, rewritten (not synced) after each sync. */
  private markFd = -1;

  private constructor(readonly dir: string) {}

  private segments(): { first: number; name: string }[] {
    return readdirSync(this.dir)
      .map((name) => ({ name, m: SEGMENT_RE.exec(name) }))
      .filter((s) => s.m)
      .map((s) => ({ first: Number(s.m![1]), name: s.name }))
      .sort((a, b) => a.first - b.first);
  }

  /**
   * Opens the journal, feeding every record after `afterSeq` to `apply` in order, and positions it
   * for appending. A torn tail is truncated; records after a gap are discarded (logged).
   *
   * Records past the last completed sync (the `durable` mark) may have reached the disk before
   * the chunks they name (chunks are synced in batches, just before the journal): `check` decides
   * whether such a record is whole, and the journal is cut at the first one that is not — it was
   * never synced, so nobody was promised it.
   */
  static open(
    dir: string,
    afterSeq: number,
    apply: (rec: JournalRecord) => void,
    check?: (rec: JournalRecord) => boolean,
  ): Journal {
    const j = new Journal(dir);
    const trusted = readDurableMark(dir);
    let expected = afterSeq + 1;
    let stopped = false;
    let lastSegment: { first: number; name: string; length: number } | undefined;
    for (const seg of j.segments()) {
      const path = join(dir, seg.name);
      if (stopped) {
        log.warn(`discarding journal segment ${seg.name}: it follows a damaged record`);
        unlinkSync(path);
        continue;
      }
      const buf = readFileSync(path);
      const { records, offsets, validLength } = decodeRecords(buf);
      let keep = validLength;
      for (const [i, rec] of records.entries()) {
        if (rec.seq < expected) continue;
        if (rec.seq !== expected) {
          log.warn(`journal ${seg.name}: record ${rec.seq} after ${expected - 1} (gap); discarding the rest`);
          keep = offsets[i]!;
          stopped = true;
          break;
        }
        if (rec.seq > trusted && check && !check(rec)) {
          log.warn(
            `journal ${seg.name}: record ${rec.seq} names data that never reached the disk (not synced before the crash); discarding it and the rest`,
          );
          keep = offsets[i]!;
          stopped = true;
          break;
        }
        apply(rec);
        expected++;
      }
      if (keep < buf.length) {
        if (!stopped)
          log.warn(`journal ${seg.name}: cut ${buf.length - keep} bytes of torn or corrupt tail at offset ${keep}`);
        const fd = openSync(path, "r+");
        ftruncateSync(fd, keep);
        fsyncSync(fd);
        closeSync(fd);
        stopped = true;
      }
      lastSegment = { ...seg, length: keep };
    }
    j.lastSeq = j.durableSeq = expected - 1;
    if (lastSegment && lastSegment.first <= expected) {
      j.fd = openSync(join(dir, lastSegment.name), "a");
      j.segmentBytes = lastSegment.length;
    } else {
      j.startSegment(expected);
    }
    return j;
  }

  private startSegment(firstSeq: number): void {
    this.fd = openSync(join(this.dir, segmentName(firstSeq)), "a");
    this.segmentBytes = 0;
    fsyncDir(this.dir);
  }

  append(op: MetaOp): number {
    const seq = this.lastSeq + 1;
    const buf = encodeRecord({ seq, op });
    let off = 0;
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off);
    this.lastSeq = seq;
    this.segmentBytes += buf.length;
    profile.journalAppends++;
    profile.journalAppendBytes += buf.length;
    return seq;
  }

  /** Resolves once every record appended before the call is durable. */
  async sync(): Promise<void> {
    const target = this.lastSeq;
    while (this.durableSeq < target) {
      this.flushing ??= this.flushOnce().finally(() => (this.flushing = undefined));
      await this.flushing;
    }
  }

  private async flushOnce(): Promise<void> {
    const upTo = this.lastSeq;
    const fd = this.fd;
    const retired = this.retired.splice(0);
    await this.beforeSync?.();
    for (const old of retired) {
      await datasync(old);
      closeSync(old);
    }
    const started = performance.now();
    await datasync(fd);
    record(profile.journalSyncs, performance.now() - started);
    if (upTo > this.durableSeq) {
      this.durableSeq = upTo;
      this.writeMark();
    }
  }

  private writeMark(): void {
    try {
      if (this.markFd < 0) this.markFd = openSync(join(this.dir, DURABLE_FILE), "w", 0o600);
      writeSync(this.markFd, `${String(this.durableSeq).padStart(16, "0")}\n`, 0);
    } catch (err) {
      // Only costs recovery time (more records are checked): keep going.
      log.warn(`writing the journal's durable mark failed: ${(err as Error).message}`);
    }
  }

  /**
   * Starts a new segment at lastSeq+1 (a checkpoint took its snapshot at lastSeq). The old segment
   * is synced by the next `sync`, before the new one, so a synced record never follows a lost one.
   * Segments before the new one may be deleted once that checkpoint is durable (`dropBefore`).
   */
  rotate(): number {
    this.retired.push(this.fd);
    const first = this.lastSeq + 1;
    this.startSegment(first);
    return first;
  }

  dropBefore(firstSeq: number): void {
    for (const seg of this.segments()) if (seg.first < firstSeq) unlinkSync(join(this.dir, seg.name));
  }

  close(): void {
    for (const old of this.retired.splice(0)) {
      fdatasyncSync(old);
      closeSync(old);
    }
    if (this.fd >= 0) {
      fdatasyncSync(this.fd);
      closeSync(this.fd);
      this.durableSeq = this.lastSeq;
      this.fd = -1;
      this.writeMark();
    }
    if (this.markFd >= 0) {
      closeSync(this.markFd);
      this.markFd = -1;
    }
  }
}
