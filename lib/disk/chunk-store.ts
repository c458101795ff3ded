import {
  close as closeCb,
  closeSync,
  fdatasync as fdatasyncCb,
  mkdirSync,
  open as openCb,
  openSync,
  read as readCb,
  readdirSync,
  readSync,
  rmSync,
  write as writeCb,
} from "node:fs";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { logger } from "../common/log.ts";
import { syncFileRange } from "../../native/libc.ts";
import { startWorker } from "../common/workers.ts";
import { type ChunkHeader, decodeHeader as parseHeader, encodeHeader, FIXED_HEADER } from "./chunk-header.ts";
import { FsError } from "./errors.ts";
import { profile, record } from "./profile.ts";

const HASH_RE = /^[0-9a-f]{64}$/;
const log = logger("disk:chunks");
/** Below this, hashing inline is cheaper than a round trip to a hashing worker. */
const INLINE_HASH_BYTES = 256 * 1024;
const HASH_WORKERS = 2;

export function sha256Hex(data: Uint8Array): string {
  const started = performance.now();
  const hex = new Bun.CryptoHasher("sha256").update(data).digest("hex");
  record(profile.chunkHashes, performance.now() - started, data.length);
  return hex;
}

function decodeHeader(hash: string, buf: Buffer, path: string): ChunkHeader | undefined {
  return parseHeader(hash, buf, (why) => corrupt(path, why));
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
  return new Promise((resolve, reject) =>
    readCb(fd, buf, 0, buf.length, position, (err, n) => (err ? reject(err) : resolve(n))),
  );
}

async function pwriteAll(fd: number, buf: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const n = await new Promise<number>((resolve, reject) =>
      writeCb(fd, buf, done, buf.length - done, position + done, (err, written) =>
        err ? reject(err) : resolve(written),
      ),
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
  /** Chunks written (renamed into place) but not yet fdatasync'd: `syncChunks` does that in a batch. */
  private readonly unsynced = new Set<string>();
  private readonly openChunks = new Map<string, Promise<OpenChunk>>();
  private readonly tmpDir: string;
  private tmpCounter = 0;
  /** Whole chunks read by sequential readers (verified), most recently used last. */
  private readonly cache = new Map<string, Buffer>();
  private readonly caching = new Map<string, Promise<Buffer>>();
  private cacheBytes = 0;
  private hashWorkers?: Promise<{ worker: Worker; busy: number }[]>;
  private readonly hashJobs = new Map<
    number,
    { resolve: (r: { hash: string; header: Buffer }) => void; reject: (err: Error) => void }
  >();
  private nextHashId = 1;
  private closed = false;

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

  /**
   * SHA-256 and file header of a chunk. Large chunks are hashed by a worker (from the
   * SharedArrayBuffer they live in, or a shared copy), so the thread serving the mount keeps going.
   */
  async hashChunk(data: Uint8Array): Promise<{ hash: string; header: Buffer }> {
    if (data.length < INLINE_HASH_BYTES || this.closed) {
      const hash = sha256Hex(data);
      return { hash, header: encodeHeader(hash, data) };
    }
    const started = performance.now();
    let shared = data;
    if (!(data.buffer instanceof SharedArrayBuffer)) {
      shared = new Uint8Array(new SharedArrayBuffer(data.length));
      shared.set(data);
    }
    const pool = await this.hashPool();
    const worker = pool.reduce((a, b) => (a.busy <= b.busy ? a : b));
    const id = this.nextHashId++;
    worker.busy++;
    try {
      const out = await new Promise<{ hash: string; header: Buffer }>((resolve, reject) => {
        this.hashJobs.set(id, { resolve, reject });
        worker.worker.postMessage({ id, sab: shared.buffer, offset: shared.byteOffset, length: shared.length });
      });
      record(profile.chunkHashes, performance.now() - started, data.length);
      return out;
    } finally {
      worker.busy--;
    }
  }

  private hashPool(): Promise<{ worker: Worker; busy: number }[]> {
    this.hashWorkers ??= Promise.all(
      Array.from({ length: HASH_WORKERS }, async () => {
        const worker = await startWorker("lib/disk/chunk-hash.worker.ts");
        worker.unref();
        worker.onmessage = (
          event: MessageEvent<{ id: number; hash?: string; header?: Uint8Array; error?: string }>,
        ) => {
          const { id, hash, header, error } = event.data;
          const job = this.hashJobs.get(id);
          if (!job) return;
          this.hashJobs.delete(id);
          if (error || !hash || !header)
            job.reject(new FsError("EIO", `hashing a chunk failed: ${error ?? "no result"}`));
          else job.resolve({ hash, header: Buffer.from(header.buffer, header.byteOffset, header.byteLength) });
        };
        worker.onerror = (event) => {
          log.error(`chunk hashing worker failed: ${event.message}`);
          for (const job of this.hashJobs.values()) job.reject(new FsError("EIO", "chunk hashing worker failed"));
          this.hashJobs.clear();
        };
        return { worker, busy: 0 };
      }),
    );
    return this.hashWorkers;
  }

  /**
   * Stores `data` under `hash` (its SHA-256, computed by the caller, with the file header if the
   * caller has it). A chunk already present is not rewritten.
   */
  async put(hash: string, data: Uint8Array, header?: Buffer): Promise<void> {
    const del = this.deleting.get(hash);
    if (del) await del;
    if (this.known.has(hash)) {
      profile.chunkDedup++;
      return;
    }
    const inflight = this.writing.get(hash);
    if (inflight) return inflight;
    const started = performance.now();
    const job = this.writeFile(hash, data, header).finally(() => {
      this.writing.delete(hash);
      record(profile.chunkPuts, performance.now() - started, data.length);
    });
    this.writing.set(hash, job);
    return job;
  }

  private async writeFile(hash: string, data: Uint8Array, header = encodeHeader(hash, data)): Promise<void> {
    const tmp = join(this.tmpDir, `${hash}.${process.pid}.${this.tmpCounter++}`);
    const finalDir = join(this.dir, hash.slice(0, 2));
    const fd = await new Promise<number>((resolve, reject) =>
      openCb(tmp, "w", 0o600, (err, n) => (err ? reject(err) : resolve(n))),
    );
    try {
      await pwriteAll(fd, header, 0);
      await pwriteAll(fd, data, header.length);
      // Not synced here: the journal's next sync does it for every chunk written since, in one
      // batch, before the records naming them can be durable. Start the writeback now, though.
      syncFileRange(fd, 0, 0);
    } catch (err) {
      await closeFd(fd);
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await closeFd(fd);
    await mkdir(finalDir, { recursive: true });
    await rename(tmp, this.pathOf(hash));
    this.dirtyDirs.add(finalDir);
    this.unsynced.add(hash);
    this.known.add(hash);
  }

  /**
   * Makes every chunk written so far durable — data, then the directory entries of the renames —
   * before the metadata journal is synced (Journal.beforeSync): one batch of fdatasyncs per
   * journal sync instead of one per chunk as it is written.
   */
  async syncChunks(): Promise<void> {
    const hashes = [...this.unsynced];
    this.unsynced.clear();
    const started = performance.now();
    let next = 0;
    try {
      const lane = async () => {
        while (next < hashes.length) {
          const hash = hashes[next++]!;
          if (!this.known.has(hash)) continue; // removed since: nothing to keep
          const fd = await new Promise<number>((resolve, reject) =>
            openCb(this.pathOf(hash), "r", (err, n) => (err ? reject(err) : resolve(n))),
          ).catch((err) => {
            if ((err as NodeJS.ErrnoException).code === "ENOENT") return -1;
            throw err;
          });
          if (fd < 0) continue;
          try {
            await new Promise<void>((resolve, reject) => fdatasyncCb(fd, (err) => (err ? reject(err) : resolve())));
          } finally {
            await closeFd(fd);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(8, hashes.length) }, lane));
    } catch (err) {
      for (const hash of hashes) if (this.known.has(hash)) this.unsynced.add(hash);
      throw err;
    }
    if (hashes.length) record(profile.chunkSyncs, performance.now() - started, hashes.length);
    const dirs = [...this.dirtyDirs];
    this.dirtyDirs.clear();
    try {
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
    } catch (err) {
      for (const dir of dirs) this.dirtyDirs.add(dir);
      throw err;
    }
  }

  /**
   * Recovery: true if the chunk file is whole — header and every block checksum match. Used for
   * journal records past the last completed sync, whose chunks may not have reached the disk.
   */
  verifySync(hash: string): boolean {
    if (!this.known.has(hash)) return false;
    const path = this.pathOf(hash);
    let fd: number;
    try {
      fd = openSync(path, "r");
    } catch {
      return false;
    }
    try {
      const head = Buffer.alloc(8192);
      let n = readSync(fd, head, 0, head.length, 0);
      let header = decodeHeader(hash, head.subarray(0, n), path);
      if (!header) {
        const big = Buffer.alloc(FIXED_HEADER + 4 * head.readUInt32LE(12) + 4);
        n = readSync(fd, big, 0, big.length, 0);
        header = decodeHeader(hash, big.subarray(0, n), path);
        if (!header) return false;
      }
      const block = Buffer.allocUnsafe(header.blockSize);
      for (let b = 0; b < header.crcs.length; b++) {
        const len = Math.min(header.blockSize, header.dataLen - b * header.blockSize);
        if (readSync(fd, block, 0, len, header.headerLen + b * header.blockSize) !== len) return false;
        if (Bun.hash.crc32(block.subarray(0, len)) >>> 0 !== header.crcs[b]) return false;
      }
      return true;
    } catch {
      return false;
    } finally {
      closeSync(fd);
    }
  }

  /** Deletes a chunk nobody references any more. Returns false if it is pinned (in use again). */
  async remove(hash: string): Promise<boolean> {
    if (this.pins.has(hash) || this.writing.has(hash) || this.deleting.has(hash)) return false;
    if (!this.known.has(hash)) return true;
    this.known.delete(hash);
    this.unsynced.delete(hash);
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
    const started = performance.now();
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
      if (bytesRead !== buf.length)
        throw corrupt(path, `short file (read ${bytesRead} of ${buf.length} bytes at ${from})`);
      for (let b = firstBlock; b <= lastBlock; b++) {
        const s = b * header.blockSize - from;
        const block = buf.subarray(s, Math.min(s + header.blockSize, buf.length));
        if (Bun.hash.crc32(block) >>> 0 !== header.crcs[b]) throw corrupt(path, `block ${b} checksum mismatch`);
      }
      into.set(buf.subarray(offset - from, end - from), intoOffset);
      record(profile.chunkReads, performance.now() - started, end - offset);
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

  /** Closes cached file handles and stops the hashing workers. */
  async close(): Promise<void> {
    await Promise.all([...this.writing.values(), ...this.deleting.values()].map((p) => p.catch(() => {})));
    for (const hash of [...this.openChunks.keys()]) await this.closeChunk(hash);
    this.closed = true;
    const pool = await this.hashWorkers?.catch(() => []);
    for (const w of pool ?? []) w.worker.terminate();
    this.hashWorkers = undefined;
  }
}
