/**
 * The FUSE wire codec (lib/disk/fuse/protocol.ts) against the byte layout of
 * include/uapi/linux/fuse.h: requests decoded field by field, replies encoded at the right
 * offsets, and short or malformed requests refused with a ProtocolError naming the problem.
 */
import { describe, expect, test } from "bun:test";
import { errnoOf } from "../../../lib/disk/errors.ts";
import type { Attr } from "../../../lib/disk/fs-types.ts";
import {
  ATTR_OUT_SIZE,
  attrOut,
  direntSize,
  ENTRY_OUT_SIZE,
  entryOut,
  IN_HEADER_SIZE,
  initOut,
  negativeEntryOut,
  Op,
  openOut,
  outHeader,
  ProtocolError,
  Request,
  statfsOut,
  writeDirent,
} from "../../../lib/disk/fuse/protocol.ts";

/** A request as the kernel writes it: fuse_in_header + body. */
function request(opcode: number, body: Buffer, opts: { unique?: bigint; nodeid?: number; len?: number } = {}): Buffer {
  const b = Buffer.alloc(IN_HEADER_SIZE + body.length);
  b.writeUInt32LE(opts.len ?? b.length, 0);
  b.writeUInt32LE(opcode, 4);
  b.writeBigUInt64LE(opts.unique ?? 77n, 8);
  b.writeBigUInt64LE(BigInt(opts.nodeid ?? 1), 16);
  b.writeUInt32LE(1000, 24); // uid
  b.writeUInt32LE(100, 28); // gid
  b.writeUInt32LE(4242, 32); // pid
  body.copy(b, IN_HEADER_SIZE);
  return b;
}

function writeBody(fh: number, offset: number, data: Buffer, sizeField = data.length): Buffer {
  const b = Buffer.alloc(40 + data.length);
  b.writeBigUInt64LE(BigInt(fh), 0);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(sizeField, 16);
  b.writeUInt32LE(4, 20); // write_flags: FUSE_WRITE_KILL_SUIDGID
  data.copy(b, 40);
  return b;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected an error");
}

const attr: Attr = {
  ino: 2 ** 40 + 3,
  mode: 0o100644,
  nlink: 2,
  uid: 1000,
  gid: 100,
  rdev: 0,
  size: 5 * 1024 ** 3 + 1,
  blocks: 16,
  atime: [1_700_000_000, 1],
  mtime: [1_700_000_001, 999_999_999],
  ctime: [1_700_000_002, 5],
};

describe("FUSE requests", () => {
  test("LOOKUP: header fields and a NUL-terminated name (bytes kept as latin1)", () => {
    const name = Buffer.concat([Buffer.from("caf\xe9 \xff", "latin1"), Buffer.from([0])]);
    const req = new Request(request(Op.LOOKUP, name, { unique: 2n ** 63n + 5n, nodeid: 9 }));
    expect([req.opcode, req.unique, req.nodeid, req.uid, req.gid, req.pid]).toEqual([
      Op.LOOKUP,
      2n ** 63n + 5n,
      9,
      1000,
      100,
      4242,
    ]);
    expect(req.opName).toBe("LOOKUP");
    expect(Buffer.from(req.name(), "latin1")).toEqual(name.subarray(0, -1));
  });

  test("WRITE: fixed fields, then exactly `size` bytes of data without a copy", () => {
    const data = Buffer.from("hello, chunk");
    const buf = request(Op.WRITE, writeBody(7, 2 ** 33, data));
    const req = new Request(buf);
    expect([req.u64(), req.u64(), req.u32(), req.u32()]).toEqual([7, 2 ** 33, data.length, 4]);
    req.skip(16);
    const got = req.rest(data.length);
    expect(got.toString()).toBe("hello, chunk");
    expect(got.buffer).toBe(buf.buffer); // a view, not a copy
  });

  test("RENAME2: two names back to back", () => {
    const body = Buffer.alloc(16);
    body.writeBigUInt64LE(12n, 0);
    body.writeUInt32LE(1, 8); // RENAME_NOREPLACE
    const req = new Request(request(Op.RENAME2, Buffer.concat([body, Buffer.from("old\0new\0")])));
    expect([req.u64(), req.u32()]).toEqual([12, 1]);
    req.skip(4);
    expect([req.name(), req.name()]).toEqual(["old", "new"]);
  });

  test("offsets past 2^53 are clamped, not wrapped", () => {
    const body = Buffer.alloc(8);
    body.writeBigUInt64LE(2n ** 64n - 1n, 0);
    expect(new Request(request(Op.FORGET, body)).u64()).toBe(Number.MAX_SAFE_INTEGER);
  });

  test("a request shorter than its header is a clear ProtocolError (EINVAL), not a RangeError", () => {
    const err = thrown(() => new Request(Buffer.alloc(12)));
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toBe("FUSE request of 12 bytes is shorter than its 40-byte header");
    expect(errnoOf(err)).toBe(22);
  });

  test("a length field that disagrees with the bytes read is refused", () => {
    const err = thrown(() => new Request(request(Op.GETATTR, Buffer.alloc(16), { len: 4096 })));
    expect((err as Error).message).toBe("FUSE GETATTR request says it is 4096 bytes long but 56 were read");
  });

  test("fields past the end of the body are refused with what was wanted and where", () => {
    const req = new Request(request(Op.SETATTR, Buffer.alloc(6)));
    expect(req.u32()).toBe(0);
    const err = thrown(() => req.u64());
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as Error).message).toBe(
      "FUSE SETATTR request too short: a 64-bit field needs 8 bytes at offset 44, the request has 46",
    );
    expect((thrown(() => new Request(request(Op.FORGET, Buffer.alloc(2))).skip(8)) as Error).message).toMatch(
      /FORGET request too short: padding needs 8 bytes/,
    );
  });

  test("a WRITE whose data is shorter than its size field is refused", () => {
    const req = new Request(request(Op.WRITE, writeBody(1, 0, Buffer.from("abc"), 4096)));
    req.skip(40);
    expect((thrown(() => req.rest(4096)) as Error).message).toBe(
      "FUSE WRITE request too short: its data needs 4096 bytes at offset 80, the request has 83",
    );
  });

  test("a name without its NUL is refused", () => {
    const req = new Request(request(Op.MKDIR, Buffer.concat([Buffer.alloc(8), Buffer.from("unterminated")])));
    req.skip(8);
    expect((thrown(() => req.name()) as Error).message).toBe(
      "FUSE MKDIR request: name at offset 48 has no terminating NUL",
    );
  });

  test("an unknown opcode still decodes its header (the session answers ENOSYS)", () => {
    const req = new Request(request(4000, Buffer.alloc(0)));
    expect(req.opName).toBe("opcode 4000");
  });
});

describe("FUSE replies", () => {
  test("fuse_out_header: length, negative errno, unique", () => {
    const h = outHeader(16, -2, 2n ** 64n - 1n);
    expect([h.length, h.readUInt32LE(0), h.readInt32LE(4), h.readBigUInt64LE(8)]).toEqual([16, 16, -2, 2n ** 64n - 1n]);
  });

  test("fuse_attr_out: validity split into seconds and nanoseconds, then fuse_attr", () => {
    const b = attrOut(attr, 1500);
    expect(b.length).toBe(ATTR_OUT_SIZE);
    expect([b.readBigUInt64LE(0), b.readUInt32LE(8)]).toEqual([1n, 500_000_000]);
    const a = 16;
    expect(b.readBigUInt64LE(a)).toBe(BigInt(attr.ino));
    expect(b.readBigUInt64LE(a + 8)).toBe(BigInt(attr.size));
    expect(b.readBigUInt64LE(a + 16)).toBe(16n);
    expect([b.readBigUInt64LE(a + 24), b.readBigUInt64LE(a + 32), b.readBigUInt64LE(a + 40)]).toEqual([
      1_700_000_000n,
      1_700_000_001n,
      1_700_000_002n,
    ]);
    expect([b.readUInt32LE(a + 48), b.readUInt32LE(a + 52), b.readUInt32LE(a + 56)]).toEqual([1, 999_999_999, 5]);
    expect([b.readUInt32LE(a + 60), b.readUInt32LE(a + 64), b.readUInt32LE(a + 68), b.readUInt32LE(a + 72)]).toEqual([
      0o100644, 2, 1000, 100,
    ]);
    expect(b.readUInt32LE(a + 80)).toBe(4096); // blksize
  });

  test("fuse_entry_out: nodeid, generation 0, entry and attr validity, then the attributes", () => {
    const b = entryOut(attr, 10_000);
    expect(b.length).toBe(ENTRY_OUT_SIZE);
    expect([b.readBigUInt64LE(0), b.readBigUInt64LE(8), b.readBigUInt64LE(16), b.readBigUInt64LE(24)]).toEqual([
      BigInt(attr.ino),
      0n,
      10n,
      10n,
    ]);
    expect(b.readBigUInt64LE(40)).toBe(BigInt(attr.ino));
  });

  test("fuse_open_out, fuse_init_out and fuse_kstatfs", () => {
    const o = openOut(99, 2);
    expect([o.length, o.readBigUInt64LE(0), o.readUInt32LE(8)]).toEqual([16, 99n, 2]);
    const init = initOut({
      minor: 38,
      maxReadahead: 131072,
      flags: 0x10001,
      maxWrite: 1 << 20,
      maxPages: 256,
      maxBackground: 64,
    });
    expect([
      init.length,
      init.readUInt32LE(0),
      init.readUInt32LE(4),
      init.readUInt32LE(8),
      init.readUInt32LE(12),
    ]).toEqual([64, 7, 38, 131072, 0x10001]);
    expect([
      init.readUInt16LE(16),
      init.readUInt16LE(18),
      init.readUInt32LE(20),
      init.readUInt32LE(24),
      init.readUInt16LE(28),
    ]).toEqual([64, 48, 1 << 20, 1, 256]);
    const st = statfsOut({
      blocks: 10,
      bfree: 4,
      bavail: 3,
      files: 100,
      ffree: 90,
      bsize: 4096,
      frsize: 4096,
      namelen: 255,
    });
    expect([
      st.length,
      st.readBigUInt64LE(0),
      st.readBigUInt64LE(32),
      st.readUInt32LE(40),
      st.readUInt32LE(44),
    ]).toEqual([80, 10n, 90n, 4096, 255]);
  });

  test("fuse_dirent records are 8-byte aligned, zero-padded, with the type from the mode", () => {
    const name = Buffer.from("abcde");
    expect(direntSize(name.length)).toBe(32);
    const b = Buffer.alloc(40, 0xee);
    expect(writeDirent(b, 0, 5, 3, 0o040000, name)).toBe(32);
    expect([b.readBigUInt64LE(0), b.readBigUInt64LE(8), b.readUInt32LE(16), b.readUInt32LE(20)]).toEqual([
      5n,
      3n,
      5,
      4,
    ]); // DT_DIR
    expect(b.toString("latin1", 24, 29)).toBe("abcde");
    expect([...b.subarray(29, 32)]).toEqual([0, 0, 0]);
    expect(b[32]).toBe(0xee); // nothing written past the record
  });
});

describe("negative entries", () => {
  test("a missing name is node id 0 with the entry timeout, so the kernel caches it", () => {
    const b = negativeEntryOut(2500);
    expect(b.length).toBe(ENTRY_OUT_SIZE);
    expect(b.readBigUInt64LE(0)).toBe(0n); // nodeid 0 = ENOENT, but cacheable
    expect(b.readBigUInt64LE(16)).toBe(2n); // entry_valid (s)
    expect(b.readUInt32LE(32)).toBe(500_000_000); // entry_valid_nsec
  });
});
