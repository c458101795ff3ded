/**
 * Content-addressed chunk store: one file per chunk, named by the SHA-256 of its data, under
 * <dir>/<first two hex digits>/<hash>. Files are written to a temp name, fsync'd and renamed, so a
 * chunk file is either complete or absent. Each file starts with a header holding the hash and a
 * CRC-32 per 64 KiB block: a read of a few KiB verifies only the blocks it touches, and a chunk that
 * fails verification is an EIO (and a logged error), never wrong bytes.
 *
 * The store does not decide what is garbage: the metadata holds the references (lib/disk/meta-state)
 * and the filesystem asks for `remove` once the last reference is durably gone. `pin` protects a
 * chunk that is being written for an operation not yet committed.
 */
import { createHash } from "node:crypto";
import { close as closeCb, fdatasync as fdatasyncCb, mkdirSync, open as openCb, read as readCb, readdirSync, rmSync, write as writeCb } from "node:fs";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../common/log.ts";
import { FsError } from "./errors.ts";

const MAGIC = 0x314b4357; // "WCK1" little-endian
export const VERIFY_BLOCK = 64 * 1024;
const FIXED_HEADER = 48;
const HASH_RE = /^[0-9a-f]{64}$/;
const log = logger("disk:chunks");

export function sha256Hex(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

interface ChunkHeader {
  dataLen: number;
  blockSize: number;
  crcs: Uint32Array;
  headerLen: number;
}

function encodeHeader(hash: string, data: Uint8Array): Buffer {
  const nblocks = Math.ceil(data.length / VERIFY_BLOCK);
  const len = FIXED_HEADER + 4 * nblocks + 4;
  const buf = Buffer.alloc(len);
  buf.writeUInt32LE(MAGIC, 0);
  buf.writeUInt32LE(data.length, 4);
  buf.writeUInt32LE(VERIFY_BLOCK, 8);
  buf.writeUInt32LE(nblocks, 12);
  buf.write(hash, 16, "hex");
  for (let i = 0; i < nblocks; i++) {
    buf.writeUInt32LE(Bun.hash.crc32(data.subarray(i * VERIFY_BLOCK, (i + 1) * VERIFY_BLOCK)) >>> 0, FIXED_HEADER + 4 * i);
  }
  buf.writeUInt32LE(Bun.hash.crc32(buf.subarray(0, len - 4)) >>> 0, len - 4);
  return buf;
}

/** Parses and checks a header; returns undefined if `buf` is too short to hold it. */
function decodeHeader(hash: string, buf: Buffer, path: string): ChunkHeader | undefined {
  if (buf.length < FIXED_HEADER) throw corrupt(path, "file shorter than its header");
  if (buf.readUInt32LE(0) !== MAGIC) throw corrupt(path, "bad magic");
  const dataLen = buf.readUInt32LE(4);
  const blockSize = buf.readUInt32LE(8);
  const nblocks = buf.readUInt32LE(12);
  if (blockSize === 0 || nblocks !== Math.ceil(dataLen / blockSize)) throw corrupt(path, "inconsistent header");
  const headerLen = FIXED_HEADER + 4 * nblocks + 4;
  if (buf.length < headerLen) return undefined;
  if (Bun.hash.crc32(buf.subarray(0, headerLen - 4)) >>> 0 !== buf.readUInt32LE(headerLen - 4)) throw corrupt(path, "header checksum mismatch");
  if (buf.toString("hex", 16, 48) !== hash) throw corrupt(path, "header names another chunk");
  const crcs = new Uint32Array(nblocks);
  for (let i = 0; i < nblocks; i++) crcs[i] = buf.readUInt32LE(FIXED_HEADER + 4 * i);
  return { dataLen, blockSize, crcs, headerLen };
}

function corrupt(path: string, why: string): FsError {
  log.error(`chunk ${path} is corrupt: ${why}`);
  return new FsError("EIO", `chunk ${path} is corrupt: ${why}`);
}

// Plain fds (not FileHandle objects): a handle collected by GC is an error in Bun, and the store
// decides itself when a chunk file is closed.
function openFd(path: string): Promise<number> {
  return new Promise((resolve, reject) => openCb(path, "r", (err, fd) => (err ? reject(err) : resolve(fd))));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve) => closeCb(fd, () => resolve()));
}

function pread(fd: number, buf: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => readCb(fd, buf, 0, buf.length, position, (err, n) => (err ? reject(err) : resolve(n))));
}

async function pwriteAll(fd: number, buf: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const n = await new Promise<number>((resolve, reject) =>
      writeCb(fd, buf, done, buf.length - done, position + done, (err, written) => (err ? reject(err) : resolve(written))),
    );
    done += n;
  }
}

interface OpenChunk {
  fd: number;
  header: ChunkHeader;
  users: number;
  evicted: boolean;
}

export interface ChunkStoreStats {
  chunks: number;
}

export class ChunkStore {
  private readonly known = new Set<string>();
  private readonly pins = new Map<string, number>();
  private readonly writing = new Map<string, Promise<void>>();
  private readonly deleting = new Map<string, Promise<void>>();
  private readonly dirtyDirs = new Set<string>();
  private readonly openChunks = new Map<string, Promise<OpenChunk>>();
  private readonly tmpDir: string;
  private tmpCounter = 0;
  /** Whole chunks read by sequential readers (verified), most recently used last. */
  private readonly cache = new Map<string, Buffer>();
  private readonly caching = new Map<string, Promise<Buffer>>();
  private cacheBytes = 0;

  private constructor(
    readonly dir: string,
    private readonly maxOpen: number,
    private readonly cacheLimit: number,
  ) {
    this.tmpDir = join(dir, "tmp");
  }

  /** Opens (creating if needed) a store and indexes the chunks it holds. */
  static open(dir: string, opts: { maxOpenFiles?: number; cacheBytes?: number } = {}): ChunkStore {
    const store = new ChunkStore(dir, opts.maxOpenFiles ?? 64, opts.cacheBytes ?? 64 * 1024 * 1024);
    mkdirSync(dir, { recursive: true });
    rmSync(store.tmpDir, { recursive: true, force: true });
    mkdirSync(store.tmpDir, { recursive: true });
    for (const sub of readdirSync(dir)) {
      if (!/^[0-9a-f]{2}$/.test(sub)) continue;
      for (const name of readdirSync(join(dir, sub))) {
        if (HASH_RE.test(name) && name.startsWith(sub)) store.known.add(name);
      }
    }
    return store;
  }

  pathOf(hash: string): string {
    return join(this.dir, hash.slice(0, 2), hash);
  }

  has(hash: string): boolean {
    return this.known.has(hash);
  }

  /** Every chunk on disk (for the orphan sweep at startup and for status). */
  list(): string[] {
    return [...this.known];
  }

  stats(): ChunkStoreStats {
    return { chunks: this.known.size };
  }

  /** Keeps `hash` from being removed until `unpin` (a write that will reference it is in flight). */
  pin(hash: string): void {
    this.pins.set(hash, (this.pins.get(hash) ?? 0) + 1);
  }

  unpin(hash: string): void {
    const n = (this.pins.get(hash) ?? 0) - 1;
    if (n <= 0) this.pins.delete(hash);
    else this.pins.set(hash, n);
  }

  isPinned(hash: string): boolean {
    return this.pins.has(hash);
  }

  /** Stores `data` under `hash` (its SHA-256, computed by the caller). A chunk already present is not rewritten. */
  async put(hash: string, data: Uint8Array): Promise<void> {
    const del = this.deleting.get(hash);
    if (del) await del;
    if (this.known.has(hash)) return;
    const inflight = this.writing.get(hash);
    if (inflight) return inflight;
    const job = this.writeFile(hash, data).finally(() => this.writing.delete(hash));
    this.writing.set(hash, job);
    return job;
  }

  private async writeFile(hash: string, data: Uint8Array): Promise<void> {
    const header = encodeHeader(hash, data);
    const tmp = join(this.tmpDir, `${hash}.${process.pid}.${this.tmpCounter++}`);
    const finalDir = join(this.dir, hash.slice(0, 2));
    const fd = await new Promise<number>((resolve, reject) => openCb(tmp, "w", 0o600, (err, n) => (err ? reject(err) : resolve(n))));
    try {
      await pwriteAll(fd, header, 0);
      await pwriteAll(fd, data, header.length);
      await new Promise<void>((resolve, reject) => fdatasyncCb(fd, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      await closeFd(fd);
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await closeFd(fd);
    await mkdir(finalDir, { recursive: true });
    await rename(tmp, this.pathOf(hash));
    this.dirtyDirs.add(finalDir);
    this.known.add(hash);
  }

  /** Makes the renames of chunks written so far durable (called before the metadata journal is synced). */
  async syncDirs(): Promise<void> {
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs.clear();
    await Promise.all(
      dirs.map(async (dir) => {
        const h = await open(dir, "r");
        try {
          await h.sync();
        } finally {
          await h.close();
        }
      }),
    );
  }

  /** Deletes a chunk nobody references any more. Returns false if it is pinned (in use again). */
  async remove(hash: string): Promise<boolean> {
    if (this.pins.has(hash) || this.writing.has(hash) || this.deleting.has(hash)) return false;
    if (!this.known.has(hash)) return true;
    this.known.delete(hash);
    const cachedBuf = this.cache.get(hash);
    if (cachedBuf) {
      this.cache.delete(hash);
      this.cacheBytes -= cachedBuf.length;
    }
    const job = (async () => {
      await this.closeChunk(hash);
      await unlink(this.pathOf(hash)).catch((err) => {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      });
    })().finally(() => this.deleting.delete(hash));
    this.deleting.set(hash, job);
    await job;
    return true;
  }

  private async closeChunk(hash: string): Promise<void> {
    const entry = this.openChunks.get(hash);
    if (!entry) return;
    this.openChunks.delete(hash);
    const chunk = await entry.catch(() => undefined);
    if (!chunk) return;
    chunk.evicted = true;
    if (chunk.users === 0) await closeFd(chunk.fd);
  }

  private async acquire(hash: string): Promise<OpenChunk> {
    let entry = this.openChunks.get(hash);
    if (entry) {
      // LRU: move to the end.
      this.openChunks.delete(hash);
      this.openChunks.set(hash, entry);
    } else {
      entry = this.openFile(hash);
      this.openChunks.set(hash, entry);
      entry.catch(() => this.openChunks.get(hash) === entry && this.openChunks.delete(hash));
      while (this.openChunks.size > this.maxOpen) {
        const oldest = this.openChunks.keys().next().value as string;
        void this.closeChunk(oldest);
      }
    }
    const chunk = await entry;
    chunk.users++;
    return chunk;
  }

  private release(chunk: OpenChunk): void {
    chunk.users--;
    if (chunk.users === 0 && chunk.evicted) void closeFd(chunk.fd);
  }

  private async openFile(hash: string): Promise<OpenChunk> {
    const path = this.pathOf(hash);
    let fd: number;
    try {
      fd = await openFd(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        log.error(`chunk ${hash} is missing from ${this.dir}`);
        throw new FsError("EIO", `chunk ${hash} is missing`);
      }
      throw err;
    }
    try {
      let buf = Buffer.alloc(8192);
      let bytesRead = await pread(fd, buf, 0);
      let header = decodeHeader(hash, buf.subarray(0, bytesRead), path);
      if (!header) {
        const nblocks = buf.readUInt32LE(12);
        buf = Buffer.alloc(FIXED_HEADER + 4 * nblocks + 4);
        bytesRead = await pread(fd, buf, 0);
        header = decodeHeader(hash, buf.subarray(0, bytesRead), path);
        if (!header) throw corrupt(path, "truncated header");
      }
      return { fd, header, users: 0, evicted: false };
    } catch (err) {
      await closeFd(fd);
      throw err;
    }
  }

  /** A whole chunk from the cache, if it is there. */
  cached(hash: string): Buffer | undefined {
    const buf = this.cache.get(hash);
    if (buf) {
      this.cache.delete(hash);
      this.cache.set(hash, buf);
    }
    return buf;
  }

  /**
   * Reads a whole chunk (block checksums verified) into the cache: sequential readers then copy
   * from memory instead of issuing one read per request, and the next chunk can be fetched ahead.
   */
  loadWhole(hash: string): Promise<Buffer> {
    const hit = this.cached(hash);
    if (hit) return Promise.resolve(hit);
    let job = this.caching.get(hash);
    if (job) return job;
    job = (async () => {
      const len = await this.length(hash);
      const buf = Buffer.alloc(len);
      await this.readInto(hash, 0, len, buf, 0);
      if (this.cacheLimit > 0 && this.known.has(hash)) {
        this.cache.set(hash, buf);
        this.cacheBytes += buf.length;
        while (this.cacheBytes > this.cacheLimit) {
          const [oldest, old] = this.cache.entries().next().value as [string, Buffer];
          this.cache.delete(oldest);
          this.cacheBytes -= old.length;
        }
      }
      return buf;
    })().finally(() => this.caching.delete(hash));
    this.caching.set(hash, job);
    return job;
  }

  /** Length of the chunk's data. */
  async length(hash: string): Promise<number> {
    const chunk = await this.acquire(hash);
    this.release(chunk);
    return chunk.header.dataLen;
  }

  /**
   * Reads `length` bytes at `offset` of the chunk's data into `into` at `intoOffset`, verifying
   * every block it touches. Bytes past the end of the chunk's data are left untouched (callers
   * pass zeroed buffers: a chunk shorter than the file range means zeros). Returns bytes copied.
   */
  async readInto(hash: string, offset: number, length: number, into: Uint8Array, intoOffset: number): Promise<number> {
    const chunk = await this.acquire(hash);
    try {
      const { header } = chunk;
      const end = Math.min(offset + length, header.dataLen);
      if (end <= offset) return 0;
      const firstBlock = Math.floor(offset / header.blockSize);
      const lastBlock = Math.floor((end - 1) / header.blockSize);
      const from = firstBlock * header.blockSize;
      const to = Math.min((lastBlock + 1) * header.blockSize, header.dataLen);
      const buf = Buffer.allocUnsafe(to - from);
      const bytesRead = await pread(chunk.fd, buf, header.headerLen + from);
      const path = this.pathOf(hash);
      if (bytesRead !== buf.length) throw corrupt(path, `short file (read ${bytesRead} of ${buf.length} bytes at ${from})`);
      for (let b = firstBlock; b <= lastBlock; b++) {
        const s = b * header.blockSize - from;
        const block = buf.subarray(s, Math.min(s + header.blockSize, buf.length));
        if (Bun.hash.crc32(block) >>> 0 !== header.crcs[b]) throw corrupt(path, `block ${b} checksum mismatch`);
      }
      into.set(buf.subarray(offset - from, end - from), intoOffset);
      return end - offset;
    } finally {
      this.release(chunk);
    }
  }

  /** The whole chunk, verified against its SHA-256 name. */
  async readAll(hash: string): Promise<Buffer> {
    const chunk = await this.acquire(hash);
    try {
      const { header } = chunk;
      const buf = Buffer.allocUnsafe(header.dataLen);
      const bytesRead = await pread(chunk.fd, buf, header.headerLen);
      const path = this.pathOf(hash);
      if (bytesRead !== buf.length) throw corrupt(path, `short file (read ${bytesRead} of ${buf.length} data bytes)`);
      if (sha256Hex(buf) !== hash) throw corrupt(path, "SHA-256 of the data does not match its name");
      return buf;
    } finally {
      this.release(chunk);
    }
  }

  /** Closes cached file handles. */
  async close(): Promise<void> {
    await Promise.all([...this.writing.values(), ...this.deleting.values()].map((p) => p.catch(() => {})));
    for (const hash of [...this.openChunks.keys()]) await this.closeChunk(hash);
  }
}
