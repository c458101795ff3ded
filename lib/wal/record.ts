/**
 * One WAL record on disk: a 40-byte little-endian header, then the payload (raw or LZ4).
 *
 *   0  u32 crc32 of bytes 4..end (header rest + payload)
 *   4  u32 stored payload length
 *   8  u32 raw payload length
 *  12  u8  codec (0 raw, 1 lz4)
 *  13  u8  marker 0xA7 (lets recovery scan for intact records after damage)
 *  14  u8  flags (bit 0: first, bit 1: last record of a group-commit batch)
 *  15  u8  kind (the application's entry type, opaque to the WAL)
 *  16  u64 lsn
 *  24  u64 term
 *  32  u64 append time, ms since the epoch (retention by age, lag)
 *  40  payload
 */
import { crc32 } from "./crc.ts";
import { compressBlock, compressBound, decompressBlock } from "./lz4.ts";

export const RECORD_HEADER_BYTES = 40;
export const RECORD_MARKER = 0xa7;
/** Largest payload we accept: a transaction bigger than this is refused at append. */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;

export const enum Codec {
  Raw = 0,
  Lz4 = 1,
}

export interface WalEntry {
  lsn: number;
  term: number;
  /** Application entry type 0-255 (the cluster uses data/noop/config); default 0. */
  kind?: number;
  /** When the leader appended it (ms since the epoch). */
  timeMs: number;
  data: Uint8Array;
}

/** Flags on the first/last record of each write batch: recovery tells a torn tail from damage with them. */
export const FLAG_BATCH_START = 1;
export const FLAG_BATCH_END = 2;

export interface EncodeOptions {
  /** Payloads shorter than this are stored raw (compression would not pay for itself). */
  compressMinBytes: number;
}

/** Writes a non-negative safe integer as u64 (two u32 halves: no BigInt on the hot path). */
export function setU64(view: DataView, off: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a u64-safe integer: ${value}`);
  view.setUint32(off, value >>> 0, true);
  view.setUint32(off + 4, Math.floor(value / 0x100000000), true);
}

/** Reads a u64; undefined when it exceeds Number.MAX_SAFE_INTEGER. */
export function getU64(view: DataView, off: number): number | undefined {
  const hi = view.getUint32(off + 4, true);
  if (hi > 0x1fffff) return undefined;
  return hi * 0x100000000 + view.getUint32(off, true);
}

let scratch = new Uint8Array(64 * 1024);

/** Encodes one record; compresses when that makes it smaller. */
export function encodeRecord(entry: WalEntry, opts: EncodeOptions): Uint8Array {
  const raw = entry.data;
  if (raw.length > MAX_RECORD_BYTES) {
    throw new RangeError(`WAL entry of ${raw.length} bytes exceeds the ${MAX_RECORD_BYTES}-byte limit`);
  }
  let codec = Codec.Raw;
  let payload = raw;
  if (raw.length >= opts.compressMinBytes) {
    const bound = compressBound(raw.length);
    if (scratch.length < bound) scratch = new Uint8Array(bound);
    const n = compressBlock(raw, scratch);
    if (n > 0 && n < raw.length) {
      codec = Codec.Lz4;
      payload = scratch.subarray(0, n);
    }
  }
  const rec = new Uint8Array(RECORD_HEADER_BYTES + payload.length);
  const view = new DataView(rec.buffer);
  view.setUint32(4, payload.length, true);
  view.setUint32(8, raw.length, true);
  rec[12] = codec;
  rec[13] = RECORD_MARKER;
  const kind = entry.kind ?? 0;
  if (!Number.isInteger(kind) || kind < 0 || kind > 255)
    throw new RangeError(`WAL entry kind must be 0-255, got ${kind}`);
  rec[15] = kind;
  setU64(view, 16, entry.lsn);
  setU64(view, 24, entry.term);
  setU64(view, 32, entry.timeMs);
  rec.set(payload, RECORD_HEADER_BYTES);
  view.setUint32(0, crc32(rec.subarray(4)), true);
  return rec;
}

/** Marks an encoded record as the start and/or end of its batch (re-seals the CRC). */
export function markBatch(rec: Uint8Array, flags: number): void {
  rec[14] = rec[14]! | flags;
  new DataView(rec.buffer, rec.byteOffset, rec.byteLength).setUint32(0, crc32(rec.subarray(4)), true);
}

export interface RecordHeader {
  crc: number;
  storedLength: number;
  rawLength: number;
  codec: number;
  flags: number;
  kind: number;
  lsn: number;
  term: number;
  timeMs: number;
}

/** Reads a header without checking the CRC; undefined if the fields cannot be a record. */
export function parseHeader(buf: Uint8Array, off: number): RecordHeader | undefined {
  if (off + RECORD_HEADER_BYTES > buf.length) return undefined;
  const view = new DataView(buf.buffer, buf.byteOffset + off, RECORD_HEADER_BYTES);
  const codec = buf[off + 12]!;
  const flags = buf[off + 14]!;
  if (buf[off + 13] !== RECORD_MARKER || codec > Codec.Lz4 || flags > (FLAG_BATCH_START | FLAG_BATCH_END))
    return undefined;
  const storedLength = view.getUint32(4, true);
  const rawLength = view.getUint32(8, true);
  if (storedLength > MAX_RECORD_BYTES || rawLength > MAX_RECORD_BYTES) return undefined;
  if (codec === Codec.Raw && storedLength !== rawLength) return undefined;
  const lsn = getU64(view, 16);
  const term = getU64(view, 24);
  const timeMs = getU64(view, 32);
  if (lsn === undefined || term === undefined || timeMs === undefined) return undefined;
  return {
    crc: view.getUint32(0, true),
    storedLength,
    rawLength,
    codec,
    flags,
    kind: buf[off + 15]!,
    lsn,
    term,
    timeMs,
  };
}

export type DecodeResult =
  | { ok: true; header: RecordHeader; size: number }
  | { ok: false; reason: "short" | "header" | "crc" };

/** Checks the record at `off` (header sanity, length, CRC) without decompressing it. */
export function checkRecord(buf: Uint8Array, off: number): DecodeResult {
  if (off + RECORD_HEADER_BYTES > buf.length) return { ok: false, reason: "short" };
  const header = parseHeader(buf, off);
  if (!header) return { ok: false, reason: "header" };
  const size = RECORD_HEADER_BYTES + header.storedLength;
  if (off + size > buf.length) return { ok: false, reason: "short" };
  if (crc32(buf.subarray(off + 4, off + size)) !== header.crc) return { ok: false, reason: "crc" };
  return { ok: true, header, size };
}

/** Turns a checked record into an entry (decompressing its payload). */
export function decodePayload(buf: Uint8Array, off: number, header: RecordHeader): WalEntry {
  const start = off + RECORD_HEADER_BYTES;
  const stored = buf.subarray(start, start + header.storedLength);
  const data = header.codec === Codec.Lz4 ? decompressBlock(stored, header.rawLength) : stored.slice();
  return { lsn: header.lsn, term: header.term, kind: header.kind, timeMs: header.timeMs, data };
}
