/**
 * One open drive and the bookkeeping every filesystem operation shares: the metadata and chunk
 * store, the write-back buffers, the kernel's references and open counts, the commit path that
 * tells the FUSE layer whose attributes changed, the purge of unlinked inodes, and the background
 * tick, garbage collection and close. The operations themselves are DiskFs (fs.ts).
 *
 * Chunks are garbage only when the op that dropped their last reference is durable: candidates
 * are deleted after a sync, never before.
 */
import { statfsSync } from "node:fs";
import { logger } from "../common/log.ts";
import type { ChunkStore } from "./chunk-store.ts";
import { FsError } from "./errors.ts";
import { type Attr, type DiskFsOptions, NAME_MAX, type StatFs } from "./fs-types.ts";
import { type Inode, isDir, isReg, type MetaOp, type Time } from "./meta-state.ts";
import { type Metadata, nowTime } from "./metadata.ts";
import { WriteBack, type WriteBackHost } from "./write-back.ts";

const log = logger("disk:fs");

interface Handle {
  ino: number;
  flags: number;
  /** Wrote since the last sync: close must make it durable. */
  wrote: boolean;
}

function cmpTime(a: Time, b: Time): number {
  return a[0] - b[0] || a[1] - b[1];
}

export class Drive implements WriteBackHost {
  readonly chunkSize: number;
  /** Write-back buffers and the data path (read, write, flush, truncate). */
  readonly data: WriteBack;
  protected readonly handles = new Map<number, Handle>();
  protected readonly openCount = new Map<number, number>();
  protected readonly lookups = new Map<number, number>();
  protected readonly gcCandidates = new Set<string>();
  /**
   * Inodes written since their last sync. With the kernel's writeback cache, the WRITE that
   * carries a file's data names whichever handle the kernel picked, not necessarily the one
   * being closed: close() of any handle of such an inode makes it durable (sync_on_close).
   */
  protected readonly unsynced = new Set<number>();
  protected timer?: Timer;
  private ticking = false;
  private closed = false;
  protected readonly syncOnClose: boolean;
  private readonly dirtyExpireMs: number;

  protected constructor(
    readonly dir: string,
    readonly meta: Metadata,
    readonly store: ChunkStore,
    opts: DiskFsOptions,
  ) {
    this.chunkSize = meta.state.chunkSize;
    this.data = new WriteBack(this.chunkSize, meta.state, store, this, opts.writeBufferBytes ?? 256 * 1024 * 1024);
    this.syncOnClose = opts.syncOnClose ?? true;
    this.dirtyExpireMs = opts.dirtyExpireMs ?? 5000;
    meta.state.onUnreferenced = (hash) => this.gcCandidates.add(hash);
    meta.journal.beforeSync = () => store.syncChunks();
  }

  protected now(): Time {
    return nowTime();
  }

  protected inode(ino: number): Inode {
    const inode = this.meta.state.get(ino);
    if (!inode) throw new FsError("ENOENT", `no inode ${ino}`);
    return inode;
  }

  protected dirInode(ino: number): Inode {
    const inode = this.inode(ino);
    if (!isDir(inode.mode)) throw new FsError("ENOTDIR");
    return inode;
  }

  regInode(ino: number): Inode {
    const inode = this.inode(ino);
    if (isDir(inode.mode)) throw new FsError("EISDIR");
    if (!isReg(inode.mode)) throw new FsError("EINVAL", "not a regular file");
    return inode;
  }

  /**
   * Called synchronously whenever what getattr(ino) returns may have changed (metadata op,
   * buffered write, flush): the FUSE session drops attributes it cached for its reader.
   */
  onAttrChange?: (ino: number, attr?: Attr) => void;

  /**
   * Called synchronously when `ino` gets buffered or unsynced data, and when handle `fh` writes:
   * from then on a close must go through flush() (see isClean/handleClean).
   */
  onDirty?: (ino: number, fh?: number) => void;

  /** Nothing buffered or unsynced for `ino`: flush() of a handle that did not write has nothing to do. */
  isClean(ino: number): boolean {
    return !this.unsynced.has(ino) && !this.data.files.has(ino);
  }

  /** Handle `fh` is open and has not written since its last sync. */
  handleClean(fh: number): boolean {
    const h = this.handles.get(fh);
    return h !== undefined && !h.wrote;
  }

  changed(ino: number): void {
    this.onAttrChange?.(ino);
  }

  /** Commits `op` and hands the FUSE layer the new attributes of every inode it touched. */
  commit(op: MetaOp): void {
    const notify = this.onAttrChange;
    if (!notify) {
      this.meta.commit(op);
      return;
    }
    // Inodes whose attributes the op changes (link counts, times, sizes), named before it runs.
    const touched: (number | undefined)[] = [];
    const state = this.meta.state;
    switch (op.op) {
      case "mknod":
      case "link":
        touched.push(op.ino, op.parent);
        break;
      case "unlink":
        touched.push(op.parent, state.get(op.parent)?.entries?.get(op.name));
        break;
      case "rename":
        touched.push(
          op.parent,
          op.newParent,
          state.get(op.parent)?.entries?.get(op.name),
          state.get(op.newParent)?.entries?.get(op.newName),
        );
        break;
      default:
        touched.push(op.ino);
    }
    this.meta.commit(op);
    // With the new attributes: the kernel asks for them right after a directory change.
    for (const ino of touched) {
      if (ino === undefined) continue;
      const inode = state.get(ino);
      notify(ino, inode ? this.attr(inode) : undefined);
    }
  }

  attr(inode: Inode): Attr {
    const file = this.data.files.get(inode.ino);
    const size = isDir(inode.mode) ? 4096 : this.data.sizeOf(inode);
    let stored = 0;
    if (inode.chunks) stored = inode.chunks.size * this.chunkSize;
    if (file) stored += file.dirtyBytes;
    const mtime = file?.mtime && cmpTime(file.mtime, inode.mtime) > 0 ? file.mtime : inode.mtime;
    const ctime = file?.mtime && cmpTime(file.mtime, inode.ctime) > 0 ? file.mtime : inode.ctime;
    return {
      ino: inode.ino,
      mode: inode.mode,
      nlink: inode.nlink,
      uid: inode.uid,
      gid: inode.gid,
      rdev: inode.rdev,
      size,
      blocks: Math.ceil(Math.min(size, stored) / 512) || (isDir(inode.mode) ? 8 : 0),
      atime: inode.atime,
      mtime,
      ctime,
    };
  }

  protected maybePurge(ino: number): void {
    const inode = this.meta.state.get(ino);
    if (!inode || inode.nlink > 0) return;
    if ((this.openCount.get(ino) ?? 0) > 0 || (this.lookups.get(ino) ?? 0) > 0) return;
    const file = this.data.files.get(ino);
    if (file && (file.flushing.size > 0 || file.loads.size > 0 || file.completing.size > 0)) {
      void file.chain.then(() => this.maybePurge(ino));
      return;
    }
    if (file) {
      this.data.drop(ino);
      this.changed(ino);
    }
    this.commit({ op: "purge", ino });
  }

  // -------------------------------------------------------------------------------------------
  // lookup counts (the kernel's references; the FUSE adapter keeps them)

  /** The kernel now holds one more reference to `ino` (an entry reply). */
  ref(ino: number): void {
    this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + 1);
  }

  forget(ino: number, n: number): void {
    const left = (this.lookups.get(ino) ?? 0) - n;
    if (left > 0) this.lookups.set(ino, left);
    else {
      this.lookups.delete(ino);
      this.maybePurge(ino);
    }
  }

  // -------------------------------------------------------------------------------------------
  // handles and the write-back's host

  protected handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError("EBADF");
    return h;
  }

  buffered(ino: number): void {
    this.onDirty?.(ino);
  }

  wrote(ino: number, fh?: number): void {
    if (fh !== undefined) this.handle(fh).wrote = true;
    this.unsynced.add(ino);
    this.onDirty?.(ino, fh);
  }

  // -------------------------------------------------------------------------------------------
  // whole filesystem

  statfs(): StatFs {
    const s = statfsSync(this.dir);
    const inodes = this.meta.state.inodes.size;
    return {
      blocks: s.blocks,
      bfree: s.bfree,
      bavail: s.bavail,
      files: inodes + s.ffree,
      ffree: s.ffree,
      bsize: s.bsize,
      frsize: s.frsize || s.bsize,
      namelen: NAME_MAX,
    };
  }

  /** Syncs the journal, deletes chunks whose last reference is durably gone, flushes old dirty data. */
  async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      const expired = Date.now() - this.dirtyExpireMs;
      for (const [ino, file] of this.data.files)
        if (file.dirty.size > 0 && file.dirtySince < expired) await this.data.flushFile(ino).catch(() => {});
      if (this.meta.journal.durableSeq < this.meta.journal.lastSeq) await this.meta.sync();
      await this.collectGarbage();
    } catch (err) {
      log.error(`background sync failed: ${(err as Error).message}`);
    } finally {
      this.ticking = false;
    }
  }

  /** Deletes unreferenced chunks; only after a sync, so the ops that dropped them cannot be lost. */
  async collectGarbage(): Promise<number> {
    if (this.gcCandidates.size === 0) return 0;
    await this.meta.sync();
    let removed = 0;
    for (const hash of [...this.gcCandidates]) {
      if (this.meta.state.refs.has(hash)) {
        this.gcCandidates.delete(hash);
        continue;
      }
      if (this.store.isPinned(hash)) continue;
      this.gcCandidates.delete(hash);
      if (await this.store.remove(hash)) removed++;
    }
    return removed;
  }

  /** Flushes everything and makes it durable (syncfs). */
  async syncAll(): Promise<void> {
    for (const ino of [...this.data.files.keys()]) await this.data.flushFile(ino);
    await this.meta.sync();
  }

  stats(): { inodes: number; chunks: number; dirtyBytes: number; journalSeq: number; openFiles: number } {
    return {
      inodes: this.meta.state.inodes.size,
      chunks: this.store.stats().chunks,
      dirtyBytes: this.data.dirtyTotal,
      journalSeq: this.meta.seq,
      openFiles: this.handles.size,
    };
  }

  /** Flushes, syncs, checkpoints and closes the drive. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    let flushError: unknown;
    for (const ino of [...this.data.files.keys()]) await this.data.flushFile(ino).catch((err) => (flushError ??= err));
    this.closed = true;
    // Files still open are closed now; inodes unlinked while open go away.
    this.handles.clear();
    this.openCount.clear();
    this.lookups.clear();
    for (const ino of [...this.meta.state.orphans]) this.maybePurge(ino);
    await this.meta.sync();
    await this.collectGarbage();
    await this.meta.close();
    await this.store.close();
    if (flushError) throw flushError;
  }
}
