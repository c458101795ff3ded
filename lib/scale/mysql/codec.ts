/**
 * MySQL/MariaDB wire-format primitives: little-endian integers, length-encoded integers and strings,
 * a cursor for reading payloads and a builder for writing them. Pure; no I/O.
 */
import { WolfError } from "../../common/errors.ts";

const utf8 = new TextDecoder();
const enc = new TextEncoder();

export class ProtocolError extends WolfError {
  constructor(message: string) {
    super("protocol", message);
    this.name = "ProtocolError";
  }
}

/** Reads a payload front to back; every read is bounds-checked. */
export class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    pos = 0,
    readonly end = buf.length,
  ) {
    this.pos = pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.end)
      throw new ProtocolError(`truncated ${what}: need ${n} bytes at ${this.pos}, have ${this.end - this.pos}`);
  }

  u8(): number {
    this.need(1, "u8");
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2, "u16");
    const v = this.buf[this.pos]! | (this.buf[this.pos + 1]! << 8);
    this.pos += 2;
    return v;
  }
  u24(): number {
    this.need(3, "u24");
    const v = this.buf[this.pos]! | (this.buf[this.pos + 1]! << 8) | (this.buf[this.pos + 2]! << 16);
    this.pos += 3;
    return v;
  }
  u32(): number {
    this.need(4, "u32");
    const v =
      (this.buf[this.pos]! | (this.buf[this.pos + 1]! << 8) | (this.buf[this.pos + 2]! << 16)) +
      this.buf[this.pos + 3]! * 0x1000000;
    this.pos += 4;
    return v;
  }
  u48(): number {
    const lo = this.u32();
    return lo + this.u16() * 0x100000000;
  }
  /** u64 as a number; throws above 2^53 (LSNs, GTID sequence numbers and positions stay far below). */
  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    if (hi > 0x1fffff) throw new ProtocolError("u64 value beyond 2^53");
    return hi * 0x100000000 + lo;
  }
  /** u64 as a bigint (exact). */
  u64n(): bigint {
    const lo = BigInt(this.u32());
    return (BigInt(this.u32()) << 32n) | lo;
  }
  bytes(n: number): Uint8Array {
    this.need(n, "bytes");
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  skip(n: number): void {
    this.need(n, "skip");
    this.pos += n;
  }
  /** Length-encoded integer; null for the 0xfb NULL marker. */
  lenencOrNull(): number | null {
    const first = this.u8();
    if (first < 0xfb) return first;
    if (first === 0xfb) return null;
    if (first === 0xfc) return this.u16();
    if (first === 0xfd) return this.u24();
    if (first === 0xfe) return this.u64();
    throw new ProtocolError("invalid length-encoded integer prefix 0xff");
  }
  lenenc(): number {
    const v = this.lenencOrNull();
    if (v === null) throw new ProtocolError("unexpected NULL length");
    return v;
  }
  lenencBytes(): Uint8Array | null {
    const n = this.lenencOrNull();
    return n === null ? null : this.bytes(n);
  }
  lenencString(): string | null {
    const b = this.lenencBytes();
    return b === null ? null : utf8.decode(b);
  }
  /** NUL-terminated string (or to the end when there is no NUL). */
  cstring(): string {
    let i = this.pos;
    while (i < this.end && this.buf[i] !== 0) i++;
    const s = utf8.decode(this.buf.subarray(this.pos, i));
    this.pos = Math.min(i + 1, this.end);
    return s;
  }
  fixedString(n: number): string {
    return utf8.decode(this.bytes(n));
  }
  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }
}

/** Builds a payload. */
export class Writer {
  private buf = new Uint8Array(64);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  u8(v: number): this {
    this.ensure(1);
    this.buf[this.length++] = v & 0xff;
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >>> 8);
  }
  u24(v: number): this {
    return this.u16(v).u8(v >>> 16);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(Math.floor(v / 0x10000) & 0xffff);
  }
  u64(v: number): this {
    return this.u32(v >>> 0).u32(Math.floor(v / 0x100000000));
  }
  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }
  string(s: string): this {
    return this.bytes(enc.encode(s));
  }
  cstring(s: string): this {
    return this.string(s).u8(0);
  }
  lenenc(v: number): this {
    if (v < 0xfb) return this.u8(v);
    if (v < 0x10000) return this.u8(0xfc).u16(v);
    if (v < 0x1000000) return this.u8(0xfd).u24(v);
    return this.u8(0xfe).u64(v);
  }
  lenencBytes(b: Uint8Array): this {
    return this.lenenc(b.length).bytes(b);
  }
  zeros(n: number): this {
    this.ensure(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
    return this;
  }
  finish(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}
