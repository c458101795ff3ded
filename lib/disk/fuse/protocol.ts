/**
 * The FUSE kernel protocol (include/uapi/linux/fuse.h, 7.38): opcodes, flags and the byte layout
 * of requests and replies. Pure encoding and decoding; no I/O.
 */
import type { Attr, StatFs } from "../fs-types.ts";

export const FUSE_KERNEL_VERSION = 7;
export const FUSE_KERNEL_MINOR_VERSION = 38;
export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SYNCFS: 50,
  TMPFILE: 51,
} as const;

export const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

export const InitFlag = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  FLOCK_LOCKS: 1 << 10,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  HANDLE_KILLPRIV_V2: 1 << 28,
  INIT_EXT: 1 << 30,
} as const;

export const FATTR = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

export const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
export const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;

/**
 * A request the codec cannot decode (shorter than its header or than the fields its opcode
 * needs, a name without its NUL). The session answers it with EINVAL (`errno`) and goes on.
 */
export class ProtocolError extends Error {
  readonly code = "EINVAL";
  readonly errno = 22;
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** A request: header fields plus a cursor over the body. Reading past its end is a ProtocolError. */
export class Request {
  readonly len: number;
  readonly opcode: number;
  readonly unique: bigint;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  private pos = IN_HEADER_SIZE;
  private readonly view: DataView;

  constructor(readonly buf: Buffer) {
    if (buf.length < IN_HEADER_SIZE)
      throw new ProtocolError(`FUSE request of ${buf.length} bytes is shorter than its ${IN_HEADER_SIZE}-byte header`);
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.len = this.view.getUint32(0, true);
    this.opcode = this.view.getUint32(4, true);
    this.unique = this.view.getBigUint64(8, true);
    this.nodeid = Number(this.view.getBigUint64(16, true));
    this.uid = this.view.getUint32(24, true);
    this.gid = this.view.getUint32(28, true);
    this.pid = this.view.getUint32(32, true);
    if (this.len !== buf.length)
      throw new ProtocolError(
        `FUSE ${this.opName} request says it is ${this.len} bytes long but ${buf.length} were read`,
      );
  }

  get opName(): string {
    return OP_NAMES[this.opcode] ?? `opcode ${this.opcode}`;
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.buf.length) {
      throw new ProtocolError(
        `FUSE ${this.opName} request too short: ${what} needs ${n} bytes at offset ${this.pos}, the request has ${this.buf.length}`,
      );
    }
  }

  u32(): number {
    this.need(4, "a 32-bit field");
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64(): number {
    this.need(8, "a 64-bit field");
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    // Offsets beyond 2^53 are refused later (EFBIG/EINVAL); keep them large instead of wrapping.
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }

  skip(n: number): void {
    this.need(n, "padding");
    this.pos += n;
  }

  /** A NUL-terminated name, as a latin1 (byte-preserving) string. */
  name(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0)
      throw new ProtocolError(`FUSE ${this.opName} request: name at offset ${this.pos} has no terminating NUL`);
    const s = this.buf.toString("latin1", this.pos, end);
    this.pos = end + 1;
    return s;
  }

  /** The rest of the body (write data, xattr values), without copying; `length` bytes of it must be there. */
  rest(length?: number): Buffer {
    if (length !== undefined) this.need(length, "its data");
    const end = length === undefined ? this.buf.length : this.pos + length;
    const out = this.buf.subarray(this.pos, end);
    this.pos = end;
    return out;
  }
}

export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;

function splitSec(ms: number): [bigint, number] {
  return [BigInt(Math.floor(ms / 1000)), (ms % 1000) * 1_000_000];
}

export function writeAttr(b: Buffer, at: number, a: Attr): void {
  b.writeBigUInt64LE(BigInt(a.ino), at);
  b.writeBigUInt64LE(BigInt(a.size), at + 8);
  b.writeBigUInt64LE(BigInt(a.blocks), at + 16);
  b.writeBigUInt64LE(BigInt(Math.max(0, a.atime[0])), at + 24);
  b.writeBigUInt64LE(BigInt(Math.max(0, a.mtime[0])), at + 32);
  b.writeBigUInt64LE(BigInt(Math.max(0, a.ctime[0])), at + 40);
  b.writeUInt32LE(a.atime[1], at + 48);
  b.writeUInt32LE(a.mtime[1], at + 52);
  b.writeUInt32LE(a.ctime[1], at + 56);
  b.writeUInt32LE(a.mode >>> 0, at + 60);
  b.writeUInt32LE(a.nlink, at + 64);
  b.writeUInt32LE(a.uid >>> 0, at + 68);
  b.writeUInt32LE(a.gid >>> 0, at + 72);
  b.writeUInt32LE(a.rdev >>> 0, at + 76);
  b.writeUInt32LE(4096, at + 80); // blksize: what stat(2) suggests for I/O
  b.writeUInt32LE(0, at + 84);
}

export function writeEntry(b: Buffer, at: number, a: Attr, validMs: number): void {
  const [sec, nsec] = splitSec(validMs);
  b.writeBigUInt64LE(BigInt(a.ino), at);
  b.writeBigUInt64LE(0n, at + 8); // generation: inode numbers are never reused
  b.writeBigUInt64LE(sec, at + 16);
  b.writeBigUInt64LE(sec, at + 24);
  b.writeUInt32LE(nsec, at + 32);
  b.writeUInt32LE(nsec, at + 36);
  writeAttr(b, at + 40, a);
}

export function entryOut(a: Attr, validMs: number): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  writeEntry(b, 0, a, validMs);
  return b;
}

/** A negative entry: "no such name", cacheable by the kernel for `validMs` (node id 0). */
export function negativeEntryOut(validMs: number): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  const [sec, nsec] = splitSec(validMs);
  b.writeBigUInt64LE(sec, 16);
  b.writeUInt32LE(nsec, 32);
  return b;
}

export function attrOut(a: Attr, validMs: number): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  const [sec, nsec] = splitSec(validMs);
  b.writeBigUInt64LE(sec, 0);
  b.writeUInt32LE(nsec, 8);
  writeAttr(b, 16, a);
  return b;
}

export function openOut(fh: number, openFlags: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt(fh), 0);
  b.writeUInt32LE(openFlags, 8);
  return b;
}

export function u32Out(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v, 0);
  return b;
}

export function u64Out(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v), 0);
  return b;
}

export function statfsOut(s: StatFs): Buffer {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(BigInt(s.blocks), 0);
  b.writeBigUInt64LE(BigInt(s.bfree), 8);
  b.writeBigUInt64LE(BigInt(s.bavail), 16);
  b.writeBigUInt64LE(BigInt(s.files), 24);
  b.writeBigUInt64LE(BigInt(s.ffree), 32);
  b.writeUInt32LE(s.bsize, 40);
  b.writeUInt32LE(s.namelen, 44);
  b.writeUInt32LE(s.frsize, 48);
  return b;
}

export function initOut(opts: {
  minor: number;
  maxReadahead: number;
  flags: number;
  maxWrite: number;
  maxPages: number;
  maxBackground: number;
}): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
  b.writeUInt32LE(opts.minor, 4);
  b.writeUInt32LE(opts.maxReadahead, 8);
  b.writeUInt32LE(opts.flags >>> 0, 12);
  b.writeUInt16LE(opts.maxBackground, 16);
  b.writeUInt16LE(Math.floor((opts.maxBackground * 3) / 4), 18);
  b.writeUInt32LE(opts.maxWrite, 20);
  b.writeUInt32LE(1, 24); // time_gran: nanoseconds
  b.writeUInt16LE(opts.maxPages, 28);
  return b;
}

const align8 = (n: number) => (n + 7) & ~7;

/** DT_* from the S_IFMT bits. */
export const direntType = (type: number) => type >>> 12;

/** Size of a fuse_dirent record (READDIR) for a name of `nameLen` bytes. */
export const direntSize = (nameLen: number) => align8(24 + nameLen);
/** Size of a fuse_direntplus record (READDIRPLUS). */
export const direntPlusSize = (nameLen: number) => align8(ENTRY_OUT_SIZE + 24 + nameLen);

export function writeDirent(b: Buffer, at: number, ino: number, next: number, type: number, name: Buffer): number {
  b.writeBigUInt64LE(BigInt(ino), at);
  b.writeBigUInt64LE(BigInt(next), at + 8);
  b.writeUInt32LE(name.length, at + 16);
  b.writeUInt32LE(direntType(type), at + 20);
  name.copy(b, at + 24);
  const size = direntSize(name.length);
  b.fill(0, at + 24 + name.length, at + size);
  return size;
}

export function outHeader(len: number, error: number, unique: bigint): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER_SIZE);
  writeOutHeader(b, len, error, unique);
  return b;
}

/** fuse_out_header at the start of `out`: reply length (header included), -errno or 0, request id. */
export function writeOutHeader(out: Buffer, len: number, error: number, unique: bigint): void {
  out.writeUInt32LE(len, 0);
  out.writeInt32LE(error, 4);
  out.writeBigUInt64LE(unique, 8);
}
