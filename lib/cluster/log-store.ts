/**
 * Two LogStores: in memory (tests, simulations) and a simple file-backed one (one append-only data
 * file with a CRC per record, one fsync per append call, a small meta file for the pruned base).
 * Scale plugs in its WAL through the same interface.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, ftruncateSync, writeSync } from "node:fs";
import { join } from "node:path";
import { WolfError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import type { EntryKind, LogEntry, LogStore, Lsn, Term } from "./types.ts";

export class MemoryLogStore implements LogStore {
  /** Tests set false to stand for a log that does not fsync (LogStore.durable). */
  durable = true;
  private entries: LogEntry[] = [];
  private baseLsn = 0;
  private baseTerm = 0;

  base() {
    return { lsn: this.baseLsn, term: this.baseTerm };
  }
  lastLsn(): Lsn {
    return this.baseLsn + this.entries.length;
  }
  get(lsn: Lsn): LogEntry | undefined {
    return this.entries[lsn - this.baseLsn - 1];
  }
  range(from: Lsn, to: Lsn, maxBytes = Infinity): LogEntry[] {
    const out: LogEntry[] = [];
    let bytes = 0;
    for (let lsn = Math.max(from, this.baseLsn + 1); lsn <= Math.min(to, this.lastLsn()); lsn++) {
      const e = this.entries[lsn - this.baseLsn - 1]!;
      if (out.length > 0 && bytes + e.data.length > maxBytes) break;
      bytes += e.data.length;
      out.push(e);
    }
    return out;
  }
  append(entries: LogEntry[]): void {
    for (const e of entries) {
      if (e.lsn !== this.lastLsn() + 1)
        throw new WolfError("internal", `log append out of order: lsn ${e.lsn} after ${this.lastLsn()}`);
      this.entries.push(e);
    }
  }
  truncateAfter(lsn: Lsn): void {
    if (lsn < this.baseLsn) throw new WolfError("internal", `cannot truncate below the pruned base ${this.baseLsn}`);
    this.entries.length = Math.min(this.entries.length, lsn - this.baseLsn);
  }
  pruneBefore(lsn: Lsn): void {
    const drop = Math.min(lsn - 1, this.lastLsn()) - this.baseLsn;
    if (drop <= 0) return;
    this.baseTerm = this.entries[drop - 1]!.term;
    this.baseLsn += drop;
    this.entries = this.entries.slice(drop);
  }
  resetTo(base: { lsn: Lsn; term: Term }): void {
    this.entries = [];
    this.baseLsn = base.lsn;
    this.baseTerm = base.term;
  }
}

const KINDS: EntryKind[] = ["data", "noop", "config"];
const HEADER = 4 + 4; // length, crc32 of the body
const BODY_FIXED = 8 + 8 + 1; // lsn, term, kind

function encodeRecord(e: LogEntry): Buffer {
  const body = Buffer.allocUnsafe(BODY_FIXED + e.data.length);
  body.writeBigUInt64BE(BigInt(e.lsn), 0);
  body.writeBigUInt64BE(BigInt(e.term), 8);
  body.writeUInt8(KINDS.indexOf(e.kind), 16);
  body.set(e.data, BODY_FIXED);
  const rec = Buffer.allocUnsafe(HEADER + body.length);
  rec.writeUInt32BE(body.length, 0);
  rec.writeUInt32BE(Bun.hash.crc32(body), 4);
  rec.set(body, HEADER);
  return rec;
}

/**
 * Keeps every entry in memory too (it is the simple store: fine for small logs and tests; large
 * logs belong in scale's segmented WAL). A torn or corrupt tail left by a crash during an
 * append is cut off on open: those entries were never acknowledged.
 */
export class FileLogStore implements LogStore {
  private readonly mem = new MemoryLogStore();
  private readonly dataPath: string;
  private readonly metaPath: string;
  private fd: number;
  /** File offset of each stored entry (index i = lsn base+1+i), and the end of the file. */
  private offsets: number[] = [];
  private end = 0;

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.dataPath = join(dir, "log.dat");
    this.metaPath = join(dir, "log.meta");
    let base = { lsn: 0, term: 0 };
    if (existsSync(this.metaPath))
      base = JSON.parse(readFileSync(this.metaPath, "utf8")) as { lsn: number; term: number };
    this.mem.resetTo(base);
    this.fd = openSync(this.dataPath, existsSync(this.dataPath) ? "r+" : "w+");
    this.load();
  }

  private load(): void {
    const buf = readFileSync(this.dataPath);
    let off = 0;
    while (off + HEADER <= buf.length) {
      const len = buf.readUInt32BE(off);
      if (len < BODY_FIXED || off + HEADER + len > buf.length) break;
      const body = buf.subarray(off + HEADER, off + HEADER + len);
      if (Bun.hash.crc32(body) !== buf.readUInt32BE(off + 4)) break;
      const lsn = Number(body.readBigUInt64BE(0));
      const entry: LogEntry = {
        lsn,
        term: Number(body.readBigUInt64BE(8)),
        kind: KINDS[body.readUInt8(16)] ?? "data",
        data: new Uint8Array(body.subarray(BODY_FIXED)),
      };
      if (lsn > this.mem.base().lsn) {
        if (lsn !== this.mem.lastLsn() + 1) break; // a gap: treat the rest as torn
        this.mem.append([entry]);
        this.offsets.push(off);
      }
      off += HEADER + len;
    }
    this.end = off;
    if (off < buf.length) {
      ftruncateSync(this.fd, off);
      fsyncSync(this.fd);
    }
  }

  base() {
    return this.mem.base();
  }
  lastLsn() {
    return this.mem.lastLsn();
  }
  get(lsn: Lsn) {
    return this.mem.get(lsn);
  }
  range(from: Lsn, to: Lsn, maxBytes?: number) {
    return this.mem.range(from, to, maxBytes);
  }

  append(entries: LogEntry[]): void {
    if (entries.length === 0) return;
    if (entries[0]!.lsn !== this.lastLsn() + 1)
      throw new WolfError("internal", `log append out of order: lsn ${entries[0]!.lsn} after ${this.lastLsn()}`);
    const recs = entries.map(encodeRecord);
    const buf = Buffer.concat(recs);
    let written = 0;
    while (written < buf.length) written += writeSync(this.fd, buf, written, buf.length - written, this.end + written);
    fsyncSync(this.fd);
    let off = this.end;
    for (const r of recs) {
      this.offsets.push(off);
      off += r.length;
    }
    this.end = off;
    this.mem.append(entries);
  }

  truncateAfter(lsn: Lsn): void {
    const keep = lsn - this.base().lsn;
    if (keep >= this.offsets.length) return;
    const cut = this.offsets[keep]!;
    ftruncateSync(this.fd, cut);
    fsyncSync(this.fd);
    this.offsets.length = keep;
    this.end = cut;
    this.mem.truncateAfter(lsn);
  }

  private writeMeta(base: { lsn: Lsn; term: Term }): void {
    writeFileAtomic(this.metaPath, JSON.stringify(base));
  }

  /** Meta first, then the rewritten data file: entries at or below the base are skipped on load. */
  pruneBefore(lsn: Lsn): void {
    const before = this.base().lsn;
    this.mem.pruneBefore(lsn);
    const base = this.mem.base();
    if (base.lsn === before) return;
    this.writeMeta(base);
    this.rewrite(this.mem.range(base.lsn + 1, this.mem.lastLsn()));
  }

  resetTo(base: { lsn: Lsn; term: Term }): void {
    this.mem.resetTo(base);
    this.writeMeta(base);
    this.rewrite([]);
  }

  private rewrite(entries: LogEntry[]): void {
    const recs = entries.map(encodeRecord);
    writeFileAtomic(this.dataPath, Buffer.concat(recs));
    closeSync(this.fd);
    this.fd = openSync(this.dataPath, "r+");
    this.offsets = [];
    let off = 0;
    for (const r of recs) {
      this.offsets.push(off);
      off += r.length;
    }
    this.end = off;
  }

  close(): void {
    closeSync(this.fd);
  }
}
