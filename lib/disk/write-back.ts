/**
 * The write-back data path of lib/disk/fs: per-inode buffers of dirty chunks, reads that merge
 * them with flushing and committed chunks, flushes that store chunks and commit them to the
 * journal, truncate and lseek over both.
 *
 * Writes go into a per-inode write-back buffer of dirty chunks; a chunk is hashed and stored only
 * when it is flushed (chunk completed by a sequential writer, flush/close, fsync, memory pressure,
 * age). A 4 KiB write into a 1 GiB file therefore rewrites one chunk, once, not the file, and not
 * one chunk per write. Reads merge dirty, flushing and committed chunks.
 */
import { logger } from "../common/log.ts";
import { type ChunkStore, sha256Hex } from "./chunk-store.ts";
import { FsError } from "./errors.ts";
import { MAX_FILE_SIZE, SEEK_DATA, SEEK_HOLE } from "./fs-types.ts";
import type { Inode, MetaOp, MetaState, Time } from "./meta-state.ts";
import { nowTime } from "./metadata.ts";
import { profile, record } from "./profile.ts";

const log = logger("disk:fs");

/** What the write-back buffers need from the filesystem around them (DiskFs). */
export interface WriteBackHost {
  /** The regular file `ino`; throws ENOENT, EISDIR or EINVAL otherwise. */
  regInode(ino: number): Inode;
  /** Appends `op` to the journal and applies it (durable after the next sync). */
  commit(op: MetaOp): void;
  /** What getattr(ino) returns may have changed (size, times, blocks). */
  changed(ino: number): void;
  /** `ino` got write-back buffers: a close of it must now go through flush(). */
  buffered(ino: number): void;
  /** A write to `ino` through handle `fh` (if any) is starting: mark both unsynced; throws EBADF. */
  wrote(ino: number, fh?: number): void;
}

/** Write-back state of one regular file. */
export interface FileBuffers {
  ino: number;
  dirty: Map<number, Buffer>;
  flushing: Map<number, Buffer>;
  loads: Map<number, Promise<void>>;
  /**
   * Dirty chunks written from offset 0 on without reading their old bytes first (a sequential
   * overwrite): only [0, fill) is valid; the old bytes past it are merged in when something needs
   * them (a read past fill, a write past fill, a flush) — or never, once fill reaches `need`
   * (the chunk's length when the overwrite began).
   */
  partial: Map<number, { fill: number; need: number }>;
  completing: Map<number, Promise<void>>;
  /** Bumped when a truncate or hole punch changes committed chunks under partial buffers. */
  epoch: number;
  /** Size including writes not yet committed. */
  size?: number;
  mtime?: Time;
  dirtyBytes: number;
  dirtySince: number;
  chain: Promise<void>;
  error?: unknown;
}

/**
 * A zeroed buffer over a SharedArrayBuffer: write-back buffers are hashed by a worker
 * (ChunkStore.hashChunk) straight from memory this thread keeps using for reads.
 */
function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

/**
 * Size of a write-back buffer that must hold `need` bytes: small files stay small, a buffer
 * past a quarter of the chunk goes straight to the whole chunk (a sequential writer fills it).
 */
function bufferSize(chunkSize: number, need: number, current: number): number {
  if (need > chunkSize / 4) return chunkSize;
  return Math.min(chunkSize, Math.max(need, current * 2, 64 * 1024));
}

export class WriteBack {
  readonly files = new Map<number, FileBuffers>();
  /** Bytes in dirty and flushing buffers of all files. */
  dirtyTotal = 0;
  /** A chunk of zeros: buffers equal to a prefix of it are stored as holes. */
  readonly zero: Buffer;
  private readonly inflight = new Set<Promise<void>>();
  private readonly lastReadEnd = new Map<number, number>();

  constructor(
    readonly chunkSize: number,
    private readonly state: MetaState,
    private readonly store: ChunkStore,
    private readonly host: WriteBackHost,
    /** Dirty write-back data above which writers wait for flushes. */
    private readonly writeBufferBytes: number,
  ) {
    this.zero = Buffer.alloc(chunkSize);
  }

  /** Drops the buffers of a purged inode. */
  drop(ino: number): void {
    const file = this.files.get(ino);
    if (!file) return;
    this.dirtyTotal -= file.dirtyBytes;
    this.files.delete(ino);
  }

  /** The buffers of `ino`, created (empty) if it has none. */
  buffersOf(ino: number): FileBuffers {
    let file = this.files.get(ino);
    if (!file) {
      file = {
        ino,
        dirty: new Map(),
        flushing: new Map(),
        loads: new Map(),
        partial: new Map(),
        completing: new Map(),
        epoch: 0,
        dirtyBytes: 0,
        dirtySince: 0,
        chain: Promise.resolve(),
      };
      this.files.set(ino, file);
      this.host.buffered(ino);
    }
    return file;
  }

  /** Size of `inode` including writes not yet committed. */
  sizeOf(inode: Inode): number {
    const file = this.files.get(inode.ino);
    return file?.size !== undefined ? Math.max(file.size, inode.size) : inode.size;
  }

  async read(ino: number, offset: number, length: number): Promise<Buffer> {
    const pending = this.files.get(ino);
    if (pending && pending.partial.size > 0) {
      // A read past the written prefix of a partial chunk needs its old bytes merged first.
      const cs = this.chunkSize;
      const waits: Promise<void>[] = [];
      for (const [idx, p] of pending.partial)
        if (idx * cs + p.fill < offset + length && (idx + 1) * cs > offset)
          waits.push(this.completeChunk(ino, pending, idx));
      if (waits.length) await Promise.all(waits);
    }
    const inode = this.host.regInode(ino);
    const size = this.sizeOf(inode);
    if (offset >= size || length <= 0) return Buffer.alloc(0);
    const end = Math.min(offset + length, size);
    const file = this.files.get(ino);
    const cs = this.chunkSize;
    const first = Math.floor(offset / cs);
    if (Math.floor((end - 1) / cs) === first && !file?.dirty.has(first) && !file?.flushing.has(first)) {
      // Within one cached chunk (the usual sequential read): the reply is a view of the cached
      // chunk, no copy (cached chunks are never modified; eviction only drops them).
      const hash = inode.chunks!.get(first);
      const whole = hash === undefined ? undefined : this.store.cached(hash);
      if (whole && end - first * cs <= whole.length) {
        const sequential = this.lastReadEnd.get(ino) === offset || offset % cs === 0;
        this.lastReadEnd.set(ino, end);
        if (this.lastReadEnd.size > 4096) this.lastReadEnd.delete(this.lastReadEnd.keys().next().value as number);
        const next = sequential ? inode.chunks!.get(first + 1) : undefined;
        if (next && !file?.dirty.has(first + 1)) {
          this.store.pin(next);
          void this.store
            .loadWhole(next)
            .catch(() => {})
            .finally(() => this.store.unpin(next));
        }
        return whole.subarray(offset - first * cs, end - first * cs);
      }
    }
    const out = Buffer.alloc(end - offset);
    const jobs: Promise<unknown>[] = [];
    // Sequential readers get whole chunks through the cache, and the next chunk fetched ahead.
    const sequential = this.lastReadEnd.get(ino) === offset || offset % cs === 0;
    this.lastReadEnd.set(ino, end);
    if (this.lastReadEnd.size > 4096) this.lastReadEnd.delete(this.lastReadEnd.keys().next().value as number);
    for (let pos = offset; pos < end; ) {
      const idx = Math.floor(pos / cs);
      const cOff = pos - idx * cs;
      const n = Math.min(cs - cOff, end - pos);
      const at = pos - offset;
      const buffered = file?.dirty.get(idx) ?? file?.flushing.get(idx);
      if (buffered) {
        if (cOff < buffered.length) buffered.copy(out, at, cOff, Math.min(cOff + n, buffered.length));
      } else {
        const hash = inode.chunks!.get(idx);
        if (hash) {
          const whole = this.store.cached(hash);
          if (whole) {
            if (cOff < whole.length) whole.copy(out, at, cOff, Math.min(cOff + n, whole.length));
          } else {
            this.store.pin(hash);
            const job = sequential
              ? this.store.loadWhole(hash).then((buf) => {
                  if (cOff < buf.length) buf.copy(out, at, cOff, Math.min(cOff + n, buf.length));
                })
              : this.store.readInto(hash, cOff, n, out, at);
            jobs.push(job.finally(() => this.store.unpin(hash)));
          }
          if (sequential) {
            const next = inode.chunks!.get(idx + 1);
            if (next && !file?.dirty.has(idx + 1)) {
              this.store.pin(next);
              void this.store
                .loadWhole(next)
                .catch(() => {})
                .finally(() => this.store.unpin(next));
            }
          }
        }
      }
      pos += n;
    }
    if (jobs.length) await Promise.all(jobs);
    return out;
  }

  /** Makes chunk `idx` of `ino` a dirty buffer holding its current contents. */
  private loadChunk(ino: number, file: FileBuffers, idx: number): Promise<void> {
    let job = file.loads.get(idx);
    if (job) return job;
    job = (async () => {
      const base = await this.readBase(ino, file, idx);
      if (!file.dirty.has(idx)) this.installDirty(file, idx, base);
    })().finally(() => file.loads.delete(idx));
    file.loads.set(idx, job);
    return job;
  }

  /** The current bytes of chunk `idx` under its dirty buffer (a copy the caller may change). */
  private async readBase(ino: number, file: FileBuffers, idx: number): Promise<Buffer> {
    const flushing = file.flushing.get(idx);
    if (flushing) {
      const base = sharedBuffer(flushing.length);
      flushing.copy(base);
      return base;
    }
    const hash = this.state.get(ino)?.chunks?.get(idx);
    if (!hash) return Buffer.alloc(0);
    this.store.pin(hash);
    const started = performance.now();
    try {
      // Block checksums verify it, as for any read; the SHA-256 is checked when it was written.
      const len = await this.store.length(hash);
      const base = sharedBuffer(len);
      await this.store.readInto(hash, 0, len, base, 0);
      record(profile.chunkLoads, performance.now() - started, len);
      return base;
    } finally {
      this.store.unpin(hash);
    }
  }

  /** Merges the old bytes past the written prefix of a partial chunk (see FileBuffers.partial). */
  private completeChunk(ino: number, file: FileBuffers, idx: number): Promise<void> {
    let job = file.completing.get(idx);
    if (job) return job;
    job = (async () => {
      for (;;) {
        if (!file.partial.has(idx)) return;
        const epoch = file.epoch;
        const base = await this.readBase(ino, file, idx);
        if (file.epoch !== epoch) continue; // truncated meanwhile: read the new base
        const p = file.partial.get(idx);
        let buf = file.dirty.get(idx);
        if (!p || !buf) return;
        // Old bytes past `need` were past the end of the file (or cut by a truncate): zeros.
        const end = Math.min(base.length, p.need);
        if (end > p.fill) {
          if (buf.length < end) {
            const grown = sharedBuffer(bufferSize(this.chunkSize, end, buf.length));
            buf.copy(grown);
            this.installDirty(file, idx, grown);
            buf = grown;
          }
          base.copy(buf, p.fill, p.fill, end);
        }
        file.partial.delete(idx);
        return;
      }
    })().finally(() => file.completing.delete(idx));
    file.completing.set(idx, job);
    return job;
  }

  private installDirty(file: FileBuffers, idx: number, buf: Buffer): void {
    this.host.changed(file.ino);
    const old = file.dirty.get(idx);
    if (old) file.dirtyBytes -= old.length;
    if (file.dirty.size === 0 && file.dirtyBytes === 0) file.dirtySince = Date.now();
    file.dirty.set(idx, buf);
    file.dirtyBytes += buf.length;
    this.dirtyTotal += buf.length - (old?.length ?? 0);
  }

  async write(ino: number, offset: number, data: Uint8Array, fh?: number): Promise<number> {
    const inode = this.host.regInode(ino);
    this.host.wrote(ino, fh);
    const end = offset + data.length;
    if (end > MAX_FILE_SIZE) throw new FsError("EFBIG");
    if (data.length === 0) return 0;
    const file = this.buffersOf(ino);
    if (file.error) {
      const err = file.error;
      file.error = undefined;
      throw err;
    }
    const cs = this.chunkSize;
    const completed: number[] = [];
    for (let pos = offset; pos < end; ) {
      const idx = Math.floor(pos / cs);
      const cOff = pos - idx * cs;
      const n = Math.min(cs - cOff, end - pos);
      let buf = file.dirty.get(idx);
      const partial = file.partial.get(idx);
      if (buf && partial && cOff > partial.fill) {
        await this.completeChunk(ino, file, idx); // a gap after the written prefix needs the old bytes
        continue;
      }
      if (!buf) {
        const existing = Math.min(Math.max(this.sizeOf(inode) - idx * cs, 0), cs);
        const hasOld = file.flushing.has(idx) || inode.chunks!.has(idx);
        if (hasOld && !(cOff === 0 && n >= existing)) {
          if (cOff !== 0 || file.loads.has(idx) || file.completing.has(idx)) {
            await this.loadChunk(ino, file, idx);
            continue; // re-check: the buffer may have moved while we waited
          }
          // The start of a sequential overwrite: the old bytes are read only if they are needed.
          file.partial.set(idx, { fill: 0, need: existing });
        }
        this.installDirty(file, idx, sharedBuffer(bufferSize(cs, cOff + n, 0)));
        buf = file.dirty.get(idx)!;
      }
      if (buf.length < cOff + n) {
        const grown = sharedBuffer(bufferSize(cs, cOff + n, buf.length));
        buf.copy(grown);
        this.installDirty(file, idx, grown);
        buf = grown;
      }
      buf.set(data.subarray(pos - offset, pos - offset + n), cOff);
      const p = file.partial.get(idx);
      if (p) {
        p.fill = Math.max(p.fill, cOff + n);
        if (p.fill >= p.need) file.partial.delete(idx); // every old byte is overwritten
      }
      if (cOff + n === cs) completed.push(idx);
      pos += n;
    }
    file.size = Math.max(this.sizeOf(inode), end);
    file.mtime = nowTime();
    this.host.changed(ino);
    if (completed.length) {
      // A sequential writer finished these chunks: store them now, in the background.
      this.flushFile(ino, completed).catch((err) => (file.error ??= err));
    }
    if (this.dirtyTotal > this.writeBufferBytes) await this.relieve();
    return data.length;
  }

  /** Flushes the files with the most dirty data until the write-back buffer is under its limit. */
  private async relieve(): Promise<void> {
    while (this.dirtyTotal > this.writeBufferBytes) {
      // Chunks being stored still count: waiting for them beats flushing half-written chunks.
      if (this.inflight.size > 0) {
        await Promise.race(this.inflight);
        continue;
      }
      let worst: number | undefined;
      let most = 0;
      for (const [ino, file] of this.files) {
        if (file.dirtyBytes > most) {
          most = file.dirtyBytes;
          worst = ino;
        }
      }
      if (worst === undefined) return;
      // Only the oldest of its chunks, down to 7/8 of the limit: flushing all of a file that is
      // written at random would make every next write read its chunk back.
      const excess = this.dirtyTotal - (this.writeBufferBytes * 7) / 8;
      const oldest: number[] = [];
      let bytes = 0;
      for (const [idx, buf] of this.files.get(worst)!.dirty) {
        if (bytes >= excess) break;
        oldest.push(idx);
        bytes += buf.length;
      }
      if (oldest.length === 0) return;
      await this.flushFile(worst, oldest);
    }
  }

  /**
   * Commits dirty chunks of `ino` (all, or `only`) to the chunk store and the journal. The buffers
   * are taken at once and stored concurrently with other flushes of the same file (the disk likes
   * several writes in flight); the journal records are committed in the order the flushes began.
   */
  flushFile(ino: number, only?: number[]): Promise<void> {
    const file = this.files.get(ino);
    if (!file) return Promise.resolve();
    const prev = file.chain;
    const job = this.flushNow(ino, file, prev, only);
    const settled = job.catch(() => {});
    file.chain = settled;
    this.inflight.add(settled);
    void settled.then(() => this.inflight.delete(settled));
    return job;
  }

  private async flushNow(ino: number, file: FileBuffers, prev: Promise<void>, only?: number[]): Promise<void> {
    if (file.error && !only) {
      const err = file.error;
      file.error = undefined;
      await prev;
      throw err;
    }
    // Partial chunks get their old bytes first: a chunk is stored whole.
    for (;;) {
      const partial = (only ?? [...file.dirty.keys()]).filter((i) => file.partial.has(i));
      if (partial.length === 0) break;
      await Promise.all(partial.map((i) => this.completeChunk(ino, file, i)));
    }
    const inode = this.state.get(ino);
    if (!inode) return prev;
    const indices = (only ?? [...file.dirty.keys()]).filter((i) => file.dirty.has(i));
    const size = this.sizeOf(inode);
    const mtime = file.mtime;
    if (indices.length === 0 && size === inode.size && !mtime) return prev;
    const cs = this.chunkSize;
    const snapshot = new Map<number, Buffer>();
    for (const idx of indices) {
      const buf = file.dirty.get(idx)!;
      file.dirty.delete(idx);
      file.flushing.set(idx, buf);
      snapshot.set(idx, buf);
    }
    const updates: [number, string | null][] = [];
    const pinned: string[] = [];
    try {
      const stored = Promise.all(
        [...snapshot].map(async ([idx, buf]) => {
          const len = Math.min(buf.length, Math.max(size - idx * cs, 0));
          const data = buf.subarray(0, len);
          if (len === 0 || data.equals(this.zero.subarray(0, len))) {
            updates.push([idx, null]);
            return;
          }
          const { hash, header } = await this.store.hashChunk(data);
          this.store.pin(hash);
          pinned.push(hash);
          await this.store.put(hash, data, header);
          updates.push([idx, hash]);
        }),
      );
      // Wait for our own stores even if an earlier flush failed, then keep the journal order.
      await Promise.allSettled([stored, prev]);
      await stored;
      if (this.state.get(ino)) {
        const op: Extract<MetaOp, { op: "setattr" }> = {
          op: "setattr",
          ino,
          chunks: updates.sort((a, b) => a[0] - b[0]),
        };
        if (size > inode.size) op.size = size;
        if (mtime) op.mtime = op.ctime = mtime;
        this.host.commit(op);
      }
    } catch (err) {
      // Keep the data: put it back unless newer writes (or a newer flush) replaced it.
      for (const [idx, buf] of snapshot)
        if (!file.dirty.has(idx) && file.flushing.get(idx) === buf) this.installDirty(file, idx, buf);
      log.error(`flush of inode ${ino} failed: ${(err as Error).message}`);
      throw err instanceof FsError
        ? err
        : new FsError((err as NodeJS.ErrnoException).code === "ENOSPC" ? "ENOSPC" : "EIO", (err as Error).message);
    } finally {
      for (const hash of pinned) this.store.unpin(hash);
      for (const [idx, buf] of snapshot) {
        if (file.flushing.get(idx) === buf) file.flushing.delete(idx);
        file.dirtyBytes -= buf.length;
        this.dirtyTotal -= buf.length;
      }
      this.host.changed(ino);
    }
    if (file.size !== undefined && file.size <= inode.size) file.size = undefined;
    if (file.mtime === mtime) file.mtime = undefined;
    this.host.changed(ino);
  }

  /** Cuts or extends `ino` to `size`: buffered writes are committed first, those past the end dropped. */
  truncate(ino: number, size: number): Promise<void> {
    if (size > MAX_FILE_SIZE || size < 0) return Promise.reject(new FsError(size < 0 ? "EINVAL" : "EFBIG"));
    const file = this.buffersOf(ino);
    const flushed = this.flushFile(ino);
    const job = flushed.then(async () => {
      const inode = this.host.regInode(ino);
      const cs = this.chunkSize;
      const updates: [number, string | null][] = [];
      let pinnedHash: string | undefined;
      try {
        if (size < inode.size && size % cs !== 0) {
          const b = Math.floor(size / cs);
          const hash = inode.chunks!.get(b);
          if (hash) {
            this.store.pin(hash);
            let data: Buffer;
            try {
              data = await this.store.readAll(hash);
            } finally {
              this.store.unpin(hash);
            }
            const keep = size - b * cs;
            if (data.length > keep) {
              const cut = data.subarray(0, keep);
              if (cut.equals(this.zero.subarray(0, keep))) updates.push([b, null]);
              else {
                pinnedHash = sha256Hex(cut);
                this.store.pin(pinnedHash);
                await this.store.put(pinnedHash, cut);
                updates.push([b, pinnedHash]);
              }
            }
          }
        }
        const now = nowTime();
        // Writes buffered past the new end are gone with it.
        for (const idx of [...file.dirty.keys()]) {
          if (idx * cs >= size) {
            const buf = file.dirty.get(idx)!;
            file.dirty.delete(idx);
            file.partial.delete(idx);
            file.dirtyBytes -= buf.length;
            this.dirtyTotal -= buf.length;
            this.host.changed(ino);
          } else if (idx === Math.floor(size / cs)) {
            file.dirty.get(idx)!.fill(0, size - idx * cs);
            const p = file.partial.get(idx);
            if (p) p.need = Math.min(p.need, size - idx * cs);
            if (p && p.fill >= p.need) file.partial.delete(idx);
          }
        }
        file.size = undefined;
        file.epoch++;
        this.host.commit({ op: "setattr", ino, size, chunks: updates, mtime: now, ctime: now });
      } finally {
        if (pinnedHash) this.store.unpin(pinnedHash);
      }
    });
    file.chain = job.catch(() => {});
    return job;
  }

  lseek(ino: number, offset: number, whence: number): number {
    const inode = this.host.regInode(ino);
    const size = this.sizeOf(inode);
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError("EINVAL");
    if (offset >= size) throw new FsError("ENXIO");
    const cs = this.chunkSize;
    const file = this.files.get(ino);
    const dataChunks = new Set<number>([
      ...inode.chunks!.keys(),
      ...(file?.dirty.keys() ?? []),
      ...(file?.flushing.keys() ?? []),
    ]);
    const first = Math.floor(offset / cs);
    if (whence === SEEK_DATA) {
      const next = [...dataChunks].filter((i) => i >= first).sort((a, b) => a - b)[0];
      if (next === undefined || next * cs >= size) throw new FsError("ENXIO");
      return Math.max(offset, next * cs);
    }
    let idx = first;
    while (dataChunks.has(idx)) idx++;
    return Math.min(size, Math.max(offset, idx * cs));
  }
}
