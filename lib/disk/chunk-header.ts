/**
 * The header at the start of every chunk file: magic, data length, block size, the chunk's
 * SHA-256 and a CRC-32 per 64 KiB block (so a small read verifies only what it touches), then a
 * CRC-32 of the header itself. Pure encoding; shared by the store and the hashing worker.
 */
const MAGIC = 0x314b4357; // "WCK1" little-endian
export const VERIFY_BLOCK = 64 * 1024;
export const FIXED_HEADER = 48;

export interface ChunkHeader {
  dataLen: number;
  blockSize: number;
  crcs: Uint32Array;
  headerLen: number;
}

export function encodeHeader(hash: string, data: Uint8Array): Buffer {
  const nblocks = Math.ceil(data.length / VERIFY_BLOCK);
  const len = FIXED_HEADER + 4 * nblocks + 4;
  const buf = Buffer.alloc(len);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(data.length, 4);
  buf.writeUInt32LE(VERIFY_BLOCK, 8);
  buf.writeUInt32LE(nblocks, 12);
  buf.write(hash, 16, "hex");
  for (let i = 0; i < nblocks; i++) {
    buf.writeUInt32LE(
      Bun.hash.crc32(data.subarray(i * VERIFY_BLOCK, (i + 1) * VERIFY_BLOCK)) >>> 0,
      FIXED_HEADER + 4 * i,
    );
  }
  buf.writeUInt32LE(Bun.hash.crc32(buf.subarray(0, len - 4)) >>> 0, len - 4);
  return buf;
}

/**
 * Parses and checks a header; returns undefined if `buf` is too short to hold it, and throws
 * `corrupt(why)` if it is damaged.
 */
export function decodeHeader(hash: string, buf: Buffer, corrupt: (why: string) => Error): ChunkHeader | undefined {
  if (buf.length < FIXED_HEADER) throw corrupt("file shorter than its header");
  if (buf.readUInt32LE(0) !== MAGIC) throw corrupt("bad magic");
  const dataLen = buf.readUInt32LE(4);
  const blockSize = buf.readUInt32LE(8);
  const nblocks = buf.readUInt32LE(12);
  if (blockSize === 0 || nblocks !== Math.ceil(dataLen / blockSize)) throw corrupt("inconsistent header");
  const headerLen = FIXED_HEADER + 4 * nblocks + 4;
  if (buf.length < headerLen) return undefined;
  if (Bun.hash.crc32(buf.subarray(0, headerLen - 4)) >>> 0 !== buf.readUInt32LE(headerLen - 4))
    throw corrupt("header checksum mismatch");
  if (buf.toString("hex", 16, 48) !== hash) throw corrupt("header names another chunk");
  const crcs = new Uint32Array(nblocks);
  for (let i = 0; i < nblocks; i++) crcs[i] = buf.readUInt32LE(FIXED_HEADER + 4 * i);
  return { dataLen, blockSize, crcs, headerLen };
}
