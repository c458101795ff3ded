/**
 * The filesystem of one drive as plain async functions over chunks + metadata: what the FUSE
 * adapter (lib/disk/fuse) calls, and what tests call without a mount.
 *
 * Data path: a file is a list of fixed-size content-addressed chunks (absent = hole = zeros).
 * Writes go into a per-inode write-back buffer of dirty chunks; a chunk is hashed and stored only
 * when it is flushed (chunk completed by a sequential writer, flush/close, fsync, memory pressure,
 * age). A 4 KiB write into a 1 GiB file therefore rewrites one chunk, once, not the file, and not
 * one chunk per write. Reads merge dirty, flushing and committed chunks.
 *
 * Durability: metadata changes are journal records; fsync (and close of a handle that wrote,
 * with sync_on_close) waits for them — and the chunks they name — to be on stable storage.
 * Chunks are garbage only when the op that dropped their last reference is durable.
 */
import { statfsSync } from "node:fs";
import { join } from "node:path";
import { logger } from "../common/log.ts";
import { ChunkStore, sha256Hex } from "./chunk-store.ts";
import { FsError } from "./errors.ts";
import {
  type Inode,
  isDir,
  isLnk,
  isReg,
  type MetaOp,
  ROOT_INO,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  type Time,
} from "./meta-state.ts";
import { Metadata, nowTime } from "./metadata.ts";
import { profile, record } from "./profile.ts";

const log = logger("disk:fs");

export const MAX_FILE_SIZE = 2 ** 52;
export const NAME_MAX = 255;
export const SYMLINK_MAX = 4095;
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65536;
const S_ISGID = 0o2000;
const S_ISUID = 0o4000;

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

export interface Ctx {
  uid: number;
  gid: number;
}

export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Time | "now";
  mtime?: Time | "now";
  ctime?: Time;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** Type bits (S_IFMT part of the mode). */
  type: number;
  /** Offset to pass to readdir to continue after this entry. */
  next: number;
}

export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  frsize: number;
  namelen: number;
}

export interface DiskFsOptions {
  /** The drive's directory: chunks/ and meta/ live under it. */
  dir: string;
  /** Chunk size for a new drive (an existing drive keeps its own). Default 4 MiB. */
  chunkSize?: number;
  /** Dirty write-back data above which writers wait for flushes. Default 256 MiB. */
  writeBufferBytes?: number;
  /** Make data and metadata durable when a handle that wrote is flushed (close). Default true. */
  syncOnClose?: boolean;
  /** Journal bytes between checkpoints. */
  checkpointBytes?: number;
  /** Background tick: syncs the journal, collects garbage, flushes old dirty data. 0 = no timer. */
  tickMs?: number;
  /** Dirty data older than this is flushed by the tick. */
  dirtyExpireMs?: number;
  /** Memory for whole chunks read by sequential readers. Default 64 MiB. */
  cacheBytes?: number;
  /** Owner of the root directory of a new drive. */
  root?: { mode?: number; uid?: number; gid?: number };
}

/** Write-back state of one regular file. */
interface FileData {
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

interface Handle {
  ino: number;
  flags: number;
  /** Wrote since the last sync: close must make it durable. */
  wrote: boolean;
}

interface DirHandle {
  ino: number;
  snapshot: [string, number][];
}

function validName(name: string): void {
  if (name.length === 0 || name === "." || name === ".." || name.includes("/") || name.includes("\0"))
    throw new FsError("EINVAL", `invalid name ${JSON.stringify(name)}`);
  if (name.length > NAME_MAX) throw new FsError("ENAMETOOLONG");
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

function cmpTime(a: Time, b: Time): number {
  return a[0] - b[0] || a[1] - b[1];
}

export class DiskFs {
  readonly chunkSize: number;
  private readonly files = new Map<number, FileData>();
  private readonly handles = new Map<number, Handle>();
  private readonly dirHandles = new Map<number, DirHandle>();
  private readonly openCount = new Map<number, number>();
  private readonly lookups = new Map<number, number>();
  private readonly gcCandidates = new Set<string>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly lastReadEnd = new Map<number, number>();
  /**
   * Inodes written since their last sync. With the kernel's writeback cache, the WRITE that
   * carries a file's data names whichever handle the kernel picked, not necessarily the one
   * being closed: close() of any handle of such an inode makes it durable (sync_on_close).
   */
  private readonly unsynced = new Set<number>();
  private nextFh = 1;
  private dirtyTotal = 0;
  private timer?: Timer;
  private ticking = false;
  private closed = false;
  private readonly zero: Buffer;
  private readonly writeBufferBytes: number;
  private readonly syncOnClose: boolean;
  private readonly dirtyExpireMs: number;

  private constructor(
    readonly dir: string,
    readonly meta: Metadata,
    readonly store: ChunkStore,
    opts: DiskFsOptions,
  ) {
    this.chunkSize = meta.state.chunkSize;
    this.zero = Buffer.alloc(this.chunkSize);
    this.writeBufferBytes = opts.writeBufferBytes ?? 256 * 1024 * 1024;
    this.syncOnClose = opts.syncOnClose ?? true;
    this.dirtyExpireMs = opts.dirtyExpireMs ?? 5000;
    meta.state.onUnreferenced = (hash) => this.gcCandidates.add(hash);
    meta.journal.beforeSync = () => store.syncChunks();
  }

  /** Opens a drive (creating it if empty), recovers from a crash and removes garbage. */
  static async open(opts: DiskFsOptions): Promise<DiskFs> {
    const chunkSize = opts.chunkSize;
    if (chunkSize !== undefined && (chunkSize < 4096 || chunkSize % 4096 !== 0))
      throw new Error(`chunk size must be a multiple of 4 KiB, got ${chunkSize}`);
    const store = ChunkStore.open(join(opts.dir, "chunks"), { cacheBytes: opts.cacheBytes });
    // Chunks are synced in batches just before the journal: a record written after the last
    // completed sync may name a chunk the crash cut short. Such records were never promised.
    const verified = new Set<string>();
    const check = (op: MetaOp) => {
      if (op.op !== "setattr" || !op.chunks) return true;
      for (const [, hash] of op.chunks) {
        if (hash === null || verified.has(hash)) continue;
        if (!store.verifySync(hash)) return false;
        verified.add(hash);
      }
      return true;
    };
    const meta = Metadata.open(join(opts.dir, "meta"), { chunkSize, checkpointBytes: opts.checkpointBytes, check });
    const fs = new DiskFs(opts.dir, meta, store, opts);
    if (opts.root && meta.seq === 0) {
      const root = meta.state.get(ROOT_INO)!;
      meta.commit({
        op: "setattr",
        ino: ROOT_INO,
        mode: opts.root.mode ?? root.mode,
        uid: opts.root.uid ?? root.uid,
        gid: opts.root.gid ?? root.gid,
      });
    }
    // Inodes unlinked while open when we stopped: nobody has them open now.
    for (const ino of [...meta.state.orphans]) meta.commit({ op: "purge", ino });
    await meta.sync();
    // Chunks no durable op references: written for ops that never committed, or whose removal was interrupted.
    let swept = 0;
    for (const hash of store.list()) {
      if (!meta.state.refs.has(hash)) {
        await store.remove(hash);
        swept++;
      }
    }
    if (swept) log.debug(`removed ${swept} unreferenced chunk${swept === 1 ? "" : "s"}`);
    fs.gcCandidates.clear();
    const tick = opts.tickMs ?? 1000;
    if (tick > 0) {
      fs.timer = setInterval(() => void fs.tick(), tick);
      fs.timer.unref?.();
    }
    return fs;
  }

  // -------------------------------------------------------------------------------------------
  // helpers

  private now(): Time {
    return nowTime();
  }

  private inode(ino: number): Inode {
    const inode = this.meta.state.get(ino);
    if (!inode) throw new FsError("ENOENT", `no inode ${ino}`);
    return inode;
  }

  private dirInode(ino: number): Inode {
    const inode = this.inode(ino);
    if (!isDir(inode.mode)) throw new FsError("ENOTDIR");
    return inode;
  }

  private regInode(ino: number): Inode {
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
    return !this.unsynced.has(ino) && !this.files.has(ino);
  }

  /** Handle `fh` is open and has not written since its last sync. */
  handleClean(fh: number): boolean {
    const h = this.handles.get(fh);
    return h !== undefined && !h.wrote;
  }

  private changed(ino: number): void {
    this.onAttrChange?.(ino);
  }

  private commit(op: MetaOp): void {
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

  private fileData(ino: number): FileData {
    let fd = this.files.get(ino);
    if (!fd) {
      fd = {
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
      this.files.set(ino, fd);
      this.onDirty?.(ino);
    }
    return fd;
  }

  private sizeOf(inode: Inode): number {
    const fd = this.files.get(inode.ino);
    return fd?.size !== undefined ? Math.max(fd.size, inode.size) : inode.size;
  }

  attr(inode: Inode): Attr {
    const fd = this.files.get(inode.ino);
    const size = isDir(inode.mode) ? 4096 : this.sizeOf(inode);
    let stored = 0;
    if (inode.chunks) stored = inode.chunks.size * this.chunkSize;
    if (fd) stored += fd.dirtyBytes;
    const mtime = fd?.mtime && cmpTime(fd.mtime, inode.mtime) > 0 ? fd.mtime : inode.mtime;
    const ctime = fd?.mtime && cmpTime(fd.mtime, inode.ctime) > 0 ? fd.mtime : inode.ctime;
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

  private maybePurge(ino: number): void {
    const inode = this.meta.state.get(ino);
    if (!inode || inode.nlink > 0) return;
    if ((this.openCount.get(ino) ?? 0) > 0 || (this.lookups.get(ino) ?? 0) > 0) return;
    const fd = this.files.get(ino);
    if (fd && (fd.flushing.size > 0 || fd.loads.size > 0 || fd.completing.size > 0)) {
      void fd.chain.then(() => this.maybePurge(ino));
      return;
    }
    if (fd) {
      this.dirtyTotal -= fd.dirtyBytes;
      this.files.delete(ino);
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
  // namespace

  getattr(ino: number): Attr {
    return this.attr(this.inode(ino));
  }

  lookup(parent: number, name: string): Attr {
    const dir = this.dirInode(parent);
    if (name.length > NAME_MAX) throw new FsError("ENAMETOOLONG");
    const ino = name === "." ? parent : name === ".." ? dir.parent : dir.entries!.get(name);
    if (ino === undefined) throw new FsError("ENOENT");
    return this.attr(this.inode(ino));
  }

  /** The inode `name` in `parent` names, or undefined if there is none (lookup without the exception). */
  lookupIno(parent: number, name: string): number | undefined {
    const dir = this.dirInode(parent);
    if (name.length > NAME_MAX) throw new FsError("ENAMETOOLONG");
    const ino = name === "." ? parent : name === ".." ? dir.parent : dir.entries!.get(name);
    return ino !== undefined && this.meta.state.get(ino) ? ino : undefined;
  }

  private newNode(parent: number, name: string, mode: number, ctx: Ctx, rdev = 0, target?: string): Attr {
    const dir = this.dirInode(parent);
    validName(name);
    if (dir.entries!.has(name)) throw new FsError("EEXIST");
    let gid = ctx.gid;
    if (dir.mode & S_ISGID) {
      gid = dir.gid;
      if (isDir(mode)) mode |= S_ISGID;
    }
    const ino = this.meta.state.nextIno;
    this.commit({
      op: "mknod",
      ino,
      parent,
      name,
      mode,
      uid: ctx.uid,
      gid,
      rdev,
      time: this.now(),
      ...(target !== undefined ? { target } : {}),
    });
    return this.attr(this.inode(ino));
  }

  mknod(parent: number, name: string, mode: number, rdev: number, ctx: Ctx): Attr {
    if ((mode & S_IFMT) === 0) mode |= S_IFREG;
    if (isDir(mode) || isLnk(mode)) throw new FsError("EINVAL");
    return this.newNode(parent, name, mode, ctx, rdev);
  }

  mkdir(parent: number, name: string, mode: number, ctx: Ctx): Attr {
    return this.newNode(parent, name, S_IFDIR | (mode & 0o7777), ctx);
  }

  symlink(parent: number, name: string, target: string, ctx: Ctx): Attr {
    if (target.length === 0) throw new FsError("ENOENT");
    if (target.length > SYMLINK_MAX) throw new FsError("ENAMETOOLONG");
    return this.newNode(parent, name, S_IFLNK | 0o777, ctx, 0, target);
  }

  readlink(ino: number): string {
    const inode = this.inode(ino);
    if (!isLnk(inode.mode)) throw new FsError("EINVAL");
    return inode.target ?? "";
  }

  link(ino: number, newParent: number, newName: string): Attr {
    const inode = this.inode(ino);
    if (isDir(inode.mode)) throw new FsError("EPERM", "hard links to directories are not allowed");
    const dir = this.dirInode(newParent);
    validName(newName);
    if (dir.entries!.has(newName)) throw new FsError("EEXIST");
    this.commit({ op: "link", ino, parent: newParent, name: newName, time: this.now() });
    return this.attr(inode);
  }

  unlink(parent: number, name: string): void {
    const dir = this.dirInode(parent);
    const ino = dir.entries!.get(name);
    if (ino === undefined) throw new FsError("ENOENT");
    if (isDir(this.inode(ino).mode)) throw new FsError("EISDIR");
    this.commit({ op: "unlink", parent, name, time: this.now() });
    this.maybePurge(ino);
  }

  rmdir(parent: number, name: string): void {
    const dir = this.dirInode(parent);
    if (name === ".") throw new FsError("EINVAL");
    if (name === "..") throw new FsError("ENOTEMPTY");
    const ino = dir.entries!.get(name);
    if (ino === undefined) throw new FsError("ENOENT");
    const child = this.inode(ino);
    if (!isDir(child.mode)) throw new FsError("ENOTDIR");
    if (child.entries!.size > 0) throw new FsError("ENOTEMPTY");
    this.commit({ op: "unlink", parent, name, time: this.now() });
    this.maybePurge(ino);
  }

  /** True if `ino` is `ancestor` or lies below it. */
  private isWithin(ino: number, ancestor: number): boolean {
    for (let cur = ino, guard = 0; guard < 1_000_000; guard++) {
      if (cur === ancestor) return true;
      if (cur === ROOT_INO) return false;
      const inode = this.meta.state.get(cur);
      if (!inode) return false;
      cur = inode.parent;
    }
    return false;
  }

  rename(parent: number, name: string, newParent: number, newName: string, flags = 0): void {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) || (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
      throw new FsError("EINVAL");
    const from = this.dirInode(parent);
    const to = this.dirInode(newParent);
    const srcIno = from.entries!.get(name);
    if (srcIno === undefined) throw new FsError("ENOENT");
    validName(newName);
    const src = this.inode(srcIno);
    const dstIno = to.entries!.get(newName);
    const dst = dstIno === undefined ? undefined : this.inode(dstIno);
    if (parent === newParent && name === newName) return;
    if (flags & RENAME_EXCHANGE) {
      if (!dst) throw new FsError("ENOENT");
      if (isDir(src.mode) && this.isWithin(newParent, srcIno)) throw new FsError("EINVAL");
      if (isDir(dst.mode) && this.isWithin(parent, dst.ino)) throw new FsError("EINVAL");
      this.commit({ op: "rename", parent, name, newParent, newName, exchange: true, time: this.now() });
      return;
    }
    if (dst) {
      if (flags & RENAME_NOREPLACE) throw new FsError("EEXIST");
      if (dst.ino === src.ino) return;
      if (isDir(src.mode)) {
        if (!isDir(dst.mode)) throw new FsError("ENOTDIR");
        if (dst.entries!.size > 0) throw new FsError("ENOTEMPTY");
      } else if (isDir(dst.mode)) throw new FsError("EISDIR");
    }
    if (isDir(src.mode) && this.isWithin(newParent, srcIno))
      throw new FsError("EINVAL", "cannot move a directory into itself");
    this.commit({ op: "rename", parent, name, newParent, newName, time: this.now() });
    if (dst) this.maybePurge(dst.ino);
  }

  async setattr(ino: number, changes: SetAttr): Promise<Attr> {
    const inode = this.inode(ino);
    if (changes.size !== undefined) {
      this.regInode(ino);
      await this.truncate(ino, changes.size);
    }
    const now = this.now();
    if (
      inode.nlink === 0 &&
      !this.openCount.get(ino) &&
      changes.mode === undefined &&
      changes.uid === undefined &&
      changes.gid === undefined &&
      changes.size === undefined
    ) {
      // Times the kernel writes back (writeback cache) for a file it just unlinked: with no name
      // and no open file nobody can see them, and the inode goes at the kernel's FORGET. Answer
      // without a journal record.
      const attr = this.attr(inode);
      if (changes.atime !== undefined) attr.atime = changes.atime === "now" ? now : changes.atime;
      if (changes.mtime !== undefined) attr.mtime = changes.mtime === "now" ? now : changes.mtime;
      if (changes.ctime !== undefined) attr.ctime = changes.ctime;
      return attr;
    }
    const meta: Extract<MetaOp, { op: "setattr" }> = { op: "setattr", ino };
    if (changes.mode !== undefined) meta.mode = changes.mode & 0o7777;
    if (changes.uid !== undefined) meta.uid = changes.uid;
    if (changes.gid !== undefined) meta.gid = changes.gid;
    if (changes.atime !== undefined) meta.atime = changes.atime === "now" ? now : changes.atime;
    if (changes.mtime !== undefined) {
      // An explicit mtime wins over the write time of buffered data: commit that data first.
      if (this.files.has(ino)) await this.flushFile(ino);
      const fd = this.files.get(ino);
      if (fd) fd.mtime = undefined;
      this.changed(ino);
      meta.mtime = changes.mtime === "now" ? now : changes.mtime;
    }
    if (Object.keys(meta).length > 2 || changes.ctime) {
      meta.ctime = changes.ctime ?? now;
      this.commit(meta);
    }
    return this.attr(inode);
  }

  /**
   * What a write, truncate or chown by an unprivileged process does to a file: set-user-ID goes,
   * set-group-ID goes if group-executable, and so does a file capability (security.capability).
   */
  dropPrivileges(ino: number): boolean {
    const inode = this.inode(ino);
    if (isDir(inode.mode)) return false;
    let mode = inode.mode & ~S_ISUID;
    if (inode.mode & 0o010) mode &= ~S_ISGID;
    const now = this.now();
    let changed = false;
    if (mode !== inode.mode) {
      this.commit({ op: "setattr", ino, mode: mode & 0o7777, ctime: now });
      changed = true;
    }
    if (inode.xattrs?.has("security.capability")) {
      this.commit({ op: "removexattr", ino, name: "security.capability", time: now });
      changed = true;
    }
    return changed;
  }

  // -------------------------------------------------------------------------------------------
  // open files

  private addHandle(ino: number, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { ino, flags, wrote: false });
    this.openCount.set(ino, (this.openCount.get(ino) ?? 0) + 1);
    return fh;
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError("EBADF");
    return h;
  }

  open(ino: number, flags = 0): number {
    const inode = this.inode(ino);
    if (isDir(inode.mode)) throw new FsError("EISDIR");
    return this.addHandle(ino, flags);
  }

  create(parent: number, name: string, mode: number, ctx: Ctx, flags = 0): { attr: Attr; fh: number } {
    const attr = this.newNode(parent, name, S_IFREG | (mode & 0o7777), ctx);
    return { attr, fh: this.addHandle(attr.ino, flags) };
  }

  /** Ends one open file (kernel RELEASE): its data is flushed; an unlinked inode goes away. */
  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    this.handles.delete(fh);
    try {
      if (this.syncOnClose) await this.persist(h.ino, h.wrote);
      else await this.flushFile(h.ino);
    } finally {
      const n = (this.openCount.get(h.ino) ?? 1) - 1;
      if (n > 0) this.openCount.set(h.ino, n);
      else {
        this.openCount.delete(h.ino);
        this.maybePurge(h.ino);
        const fd = this.files.get(h.ino);
        if (
          fd &&
          fd.dirty.size === 0 &&
          fd.flushing.size === 0 &&
          fd.loads.size === 0 &&
          fd.size === undefined &&
          !fd.mtime
        )
          this.files.delete(h.ino);
      }
    }
  }

  /** close(2) of a descriptor (kernel FLUSH): buffered data is committed, and with sync_on_close made durable. */
  async flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    if (this.syncOnClose) await this.persist(h.ino, h.wrote);
    else await this.flushFile(h.ino);
  }

  async fsync(ino: number, _datasync = false): Promise<void> {
    this.inode(ino);
    await this.persist(ino, true);
  }

  /**
   * Commits `ino`'s buffered data and, if it was written since its last sync (or `force`), makes
   * everything committed so far durable. Writes that arrive meanwhile stay marked for the next one.
   */
  private async persist(ino: number, force: boolean): Promise<void> {
    const needed = force || this.unsynced.has(ino);
    this.unsynced.delete(ino);
    try {
      if (this.files.has(ino)) await this.flushFile(ino);
      if (needed) await this.meta.sync();
    } catch (err) {
      if (needed) {
        this.unsynced.add(ino);
        this.onDirty?.(ino);
      }
      throw err;
    }
    if (needed && !this.unsynced.has(ino)) for (const h of this.handles.values()) if (h.ino === ino) h.wrote = false;
  }

  async fsyncdir(ino: number): Promise<void> {
    this.dirInode(ino);
    await this.meta.sync();
  }

  // -------------------------------------------------------------------------------------------
  // data

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
    const inode = this.regInode(ino);
    const size = this.sizeOf(inode);
    if (offset >= size || length <= 0) return Buffer.alloc(0);
    const end = Math.min(offset + length, size);
    const fd = this.files.get(ino);
    const cs = this.chunkSize;
    const first = Math.floor(offset / cs);
    if (Math.floor((end - 1) / cs) === first && !fd?.dirty.has(first) && !fd?.flushing.has(first)) {
      // Within one cached chunk (the usual sequential read): the reply is a view of the cached
      // chunk, no copy (cached chunks are never modified; eviction only drops them).
      const hash = inode.chunks!.get(first);
      const whole = hash === undefined ? undefined : this.store.cached(hash);
      if (whole && end - first * cs <= whole.length) {
        const sequential = this.lastReadEnd.get(ino) === offset || offset % cs === 0;
        this.lastReadEnd.set(ino, end);
        if (this.lastReadEnd.size > 4096) this.lastReadEnd.delete(this.lastReadEnd.keys().next().value as number);
        const next = sequential ? inode.chunks!.get(first + 1) : undefined;
        if (next && !fd?.dirty.has(first + 1)) {
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
      const buffered = fd?.dirty.get(idx) ?? fd?.flushing.get(idx);
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
            if (next && !fd?.dirty.has(idx + 1)) {
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
  private loadChunk(ino: number, fd: FileData, idx: number): Promise<void> {
    let job = fd.loads.get(idx);
    if (job) return job;
    job = (async () => {
      const base = await this.readBase(ino, fd, idx);
      if (!fd.dirty.has(idx)) this.installDirty(fd, idx, base);
    })().finally(() => fd.loads.delete(idx));
    fd.loads.set(idx, job);
    return job;
  }

  /** The current bytes of chunk `idx` under its dirty buffer (a copy the caller may change). */
  private async readBase(ino: number, fd: FileData, idx: number): Promise<Buffer> {
    const flushing = fd.flushing.get(idx);
    if (flushing) {
      const base = sharedBuffer(flushing.length);
      flushing.copy(base);
      return base;
    }
    const hash = this.meta.state.get(ino)?.chunks?.get(idx);
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

  /** Merges the old bytes past the written prefix of a partial chunk (see FileData.partial). */
  private completeChunk(ino: number, fd: FileData, idx: number): Promise<void> {
    let job = fd.completing.get(idx);
    if (job) return job;
    job = (async () => {
      for (;;) {
        if (!fd.partial.has(idx)) return;
        const epoch = fd.epoch;
        const base = await this.readBase(ino, fd, idx);
        if (fd.epoch !== epoch) continue; // truncated meanwhile: read the new base
        const p = fd.partial.get(idx);
        let buf = fd.dirty.get(idx);
        if (!p || !buf) return;
        // Old bytes past `need` were past the end of the file (or cut by a truncate): zeros.
        const end = Math.min(base.length, p.need);
        if (end > p.fill) {
          if (buf.length < end) {
            const grown = sharedBuffer(bufferSize(this.chunkSize, end, buf.length));
            buf.copy(grown);
            this.installDirty(fd, idx, grown);
            buf = grown;
          }
          base.copy(buf, p.fill, p.fill, end);
        }
        fd.partial.delete(idx);
        return;
      }
    })().finally(() => fd.completing.delete(idx));
    fd.completing.set(idx, job);
    return job;
  }

  private installDirty(fd: FileData, idx: number, buf: Buffer): void {
    this.changed(fd.ino);
    const old = fd.dirty.get(idx);
    if (old) fd.dirtyBytes -= old.length;
    if (fd.dirty.size === 0 && fd.dirtyBytes === 0) fd.dirtySince = Date.now();
    fd.dirty.set(idx, buf);
    fd.dirtyBytes += buf.length;
    this.dirtyTotal += buf.length - (old?.length ?? 0);
  }

  async write(ino: number, offset: number, data: Uint8Array, fh?: number): Promise<number> {
    const inode = this.regInode(ino);
    if (fh !== undefined) this.handle(fh).wrote = true;
    this.unsynced.add(ino);
    this.onDirty?.(ino, fh);
    const end = offset + data.length;
    if (end > MAX_FILE_SIZE) throw new FsError("EFBIG");
    if (data.length === 0) return 0;
    const fd = this.fileData(ino);
    if (fd.error) {
      const err = fd.error;
      fd.error = undefined;
      throw err;
    }
    const cs = this.chunkSize;
    const completed: number[] = [];
    for (let pos = offset; pos < end; ) {
      const idx = Math.floor(pos / cs);
      const cOff = pos - idx * cs;
      const n = Math.min(cs - cOff, end - pos);
      let buf = fd.dirty.get(idx);
      const partial = fd.partial.get(idx);
      if (buf && partial && cOff > partial.fill) {
        await this.completeChunk(ino, fd, idx); // a gap after the written prefix needs the old bytes
        continue;
      }
      if (!buf) {
        const existing = Math.min(Math.max(this.sizeOf(inode) - idx * cs, 0), cs);
        const hasOld = fd.flushing.has(idx) || inode.chunks!.has(idx);
        if (hasOld && !(cOff === 0 && n >= existing)) {
          if (cOff !== 0 || fd.loads.has(idx) || fd.completing.has(idx)) {
            await this.loadChunk(ino, fd, idx);
            continue; // re-check: the buffer may have moved while we waited
          }
          // The start of a sequential overwrite: the old bytes are read only if they are needed.
          fd.partial.set(idx, { fill: 0, need: existing });
        }
        this.installDirty(fd, idx, sharedBuffer(bufferSize(cs, cOff + n, 0)));
        buf = fd.dirty.get(idx)!;
      }
      if (buf.length < cOff + n) {
        const grown = sharedBuffer(bufferSize(cs, cOff + n, buf.length));
        buf.copy(grown);
        this.installDirty(fd, idx, grown);
        buf = grown;
      }
      buf.set(data.subarray(pos - offset, pos - offset + n), cOff);
      const p = fd.partial.get(idx);
      if (p) {
        p.fill = Math.max(p.fill, cOff + n);
        if (p.fill >= p.need) fd.partial.delete(idx); // every old byte is overwritten
      }
      if (cOff + n === cs) completed.push(idx);
      pos += n;
    }
    fd.size = Math.max(this.sizeOf(inode), end);
    fd.mtime = this.now();
    this.changed(ino);
    if (completed.length) {
      // A sequential writer finished these chunks: store them now, in the background.
      this.flushFile(ino, completed).catch((err) => (fd.error ??= err));
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
      for (const [ino, fd] of this.files) {
        if (fd.dirtyBytes > most) {
          most = fd.dirtyBytes;
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
    const fd = this.files.get(ino);
    if (!fd) return Promise.resolve();
    const prev = fd.chain;
    const job = this.flushNow(ino, fd, prev, only);
    const settled = job.catch(() => {});
    fd.chain = settled;
    this.inflight.add(settled);
    void settled.then(() => this.inflight.delete(settled));
    return job;
  }

  private async flushNow(ino: number, fd: FileData, prev: Promise<void>, only?: number[]): Promise<void> {
    if (fd.error && !only) {
      const err = fd.error;
      fd.error = undefined;
      await prev;
      throw err;
    }
    // Partial chunks get their old bytes first: a chunk is stored whole.
    for (;;) {
      const partial = (only ?? [...fd.dirty.keys()]).filter((i) => fd.partial.has(i));
      if (partial.length === 0) break;
      await Promise.all(partial.map((i) => this.completeChunk(ino, fd, i)));
    }
    const inode = this.meta.state.get(ino);
    if (!inode) return prev;
    const indices = (only ?? [...fd.dirty.keys()]).filter((i) => fd.dirty.has(i));
    const size = this.sizeOf(inode);
    const mtime = fd.mtime;
    if (indices.length === 0 && size === inode.size && !mtime) return prev;
    const cs = this.chunkSize;
    const snapshot = new Map<number, Buffer>();
    for (const idx of indices) {
      const buf = fd.dirty.get(idx)!;
      fd.dirty.delete(idx);
      fd.flushing.set(idx, buf);
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
      if (this.meta.state.get(ino)) {
        const op: Extract<MetaOp, { op: "setattr" }> = {
          op: "setattr",
          ino,
          chunks: updates.sort((a, b) => a[0] - b[0]),
        };
        if (size > inode.size) op.size = size;
        if (mtime) op.mtime = op.ctime = mtime;
        this.commit(op);
      }
    } catch (err) {
      // Keep the data: put it back unless newer writes (or a newer flush) replaced it.
      for (const [idx, buf] of snapshot)
        if (!fd.dirty.has(idx) && fd.flushing.get(idx) === buf) this.installDirty(fd, idx, buf);
      log.error(`flush of inode ${ino} failed: ${(err as Error).message}`);
      throw err instanceof FsError
        ? err
        : new FsError((err as NodeJS.ErrnoException).code === "ENOSPC" ? "ENOSPC" : "EIO", (err as Error).message);
    } finally {
      for (const hash of pinned) this.store.unpin(hash);
      for (const [idx, buf] of snapshot) {
        if (fd.flushing.get(idx) === buf) fd.flushing.delete(idx);
        fd.dirtyBytes -= buf.length;
        this.dirtyTotal -= buf.length;
      }
      this.changed(ino);
    }
    if (fd.size !== undefined && fd.size <= inode.size) fd.size = undefined;
    if (fd.mtime === mtime) fd.mtime = undefined;
    this.changed(ino);
  }

  private truncate(ino: number, size: number): Promise<void> {
    if (size > MAX_FILE_SIZE || size < 0) return Promise.reject(new FsError(size < 0 ? "EINVAL" : "EFBIG"));
    const fd = this.fileData(ino);
    const flushed = this.flushFile(ino);
    const job = flushed.then(async () => {
      const inode = this.regInode(ino);
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
        const now = this.now();
        // Writes buffered past the new end are gone with it.
        for (const idx of [...fd.dirty.keys()]) {
          if (idx * cs >= size) {
            const buf = fd.dirty.get(idx)!;
            fd.dirty.delete(idx);
            fd.partial.delete(idx);
            fd.dirtyBytes -= buf.length;
            this.dirtyTotal -= buf.length;
            this.changed(ino);
          } else if (idx === Math.floor(size / cs)) {
            fd.dirty.get(idx)!.fill(0, size - idx * cs);
            const p = fd.partial.get(idx);
            if (p) p.need = Math.min(p.need, size - idx * cs);
            if (p && p.fill >= p.need) fd.partial.delete(idx);
          }
        }
        fd.size = undefined;
        fd.epoch++;
        this.commit({ op: "setattr", ino, size, chunks: updates, mtime: now, ctime: now });
      } finally {
        if (pinnedHash) this.store.unpin(pinnedHash);
      }
    });
    fd.chain = job.catch(() => {});
    return job;
  }

  async fallocate(ino: number, offset: number, length: number, mode: number): Promise<void> {
    const inode = this.regInode(ino);
    if (offset < 0 || length <= 0) throw new FsError("EINVAL");
    const end = offset + length;
    if (end > MAX_FILE_SIZE) throw new FsError("EFBIG");
    const keepSize = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
    const op = mode & ~FALLOC_FL_KEEP_SIZE;
    if (op === 0) {
      // Space is allocated on write (content-addressed chunks cannot be reserved); extend the size.
      if (!keepSize && end > this.sizeOf(inode)) await this.setattr(ino, { size: end });
      return;
    }
    if (op === FALLOC_FL_PUNCH_HOLE || op === FALLOC_FL_ZERO_RANGE) {
      if (op === FALLOC_FL_PUNCH_HOLE && !keepSize) throw new FsError("EOPNOTSUPP");
      const size = this.sizeOf(inode);
      const zeroEnd = keepSize ? Math.min(end, size) : end;
      if (offset < zeroEnd) await this.zeroRange(ino, offset, zeroEnd);
      if (!keepSize && end > this.sizeOf(inode)) await this.setattr(ino, { size: end });
      return;
    }
    throw new FsError("EOPNOTSUPP");
  }

  private async zeroRange(ino: number, start: number, end: number): Promise<void> {
    const cs = this.chunkSize;
    await this.flushFile(ino);
    const holes: [number, null][] = [];
    for (let pos = start; pos < end; ) {
      const idx = Math.floor(pos / cs);
      const cOff = pos - idx * cs;
      const n = Math.min(cs - cOff, end - pos);
      if (cOff === 0 && n === cs) holes.push([idx, null]);
      else await this.write(ino, pos, this.zero.subarray(0, n));
      pos += n;
    }
    await this.flushFile(ino);
    if (holes.length) {
      this.fileData(ino).epoch++;
      this.commit({ op: "setattr", ino, chunks: holes, ctime: this.now(), mtime: this.now() });
    }
  }

  lseek(ino: number, offset: number, whence: number): number {
    const inode = this.regInode(ino);
    const size = this.sizeOf(inode);
    if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError("EINVAL");
    if (offset >= size) throw new FsError("ENXIO");
    const cs = this.chunkSize;
    const fd = this.files.get(ino);
    const dataChunks = new Set<number>([
      ...inode.chunks!.keys(),
      ...(fd?.dirty.keys() ?? []),
      ...(fd?.flushing.keys() ?? []),
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

  // -------------------------------------------------------------------------------------------
  // directories

  opendir(ino: number): number {
    const dir = this.dirInode(ino);
    const fh = this.nextFh++;
    this.dirHandles.set(fh, { ino, snapshot: this.snapshot(dir) });
    return fh;
  }

  private snapshot(dir: Inode): [string, number][] {
    return [[".", dir.ino], ["..", dir.parent], ...dir.entries!];
  }

  /**
   * Entries from `offset` on (0 = start). Listings come from a snapshot taken at opendir (and at
   * each rewind), so entries removed while a reader walks the directory never shift others past it.
   */
  readdir(fh: number, offset: number, max = Infinity): DirEntry[] {
    const h = this.dirHandles.get(fh);
    if (!h) throw new FsError("EBADF");
    const dir = this.dirInode(h.ino);
    if (offset === 0) h.snapshot = this.snapshot(dir);
    const out: DirEntry[] = [];
    for (let i = offset; i < h.snapshot.length && out.length < max; i++) {
      const [name, ino] = h.snapshot[i]!;
      const inode = this.meta.state.get(ino);
      if (!inode) continue;
      out.push({ name, ino, type: inode.mode & S_IFMT, next: i + 1 });
    }
    return out;
  }

  releasedir(fh: number): void {
    this.dirHandles.delete(fh);
  }

  /** All names in a directory (convenience for tests and tools). */
  list(ino: number): string[] {
    return [...this.dirInode(ino).entries!.keys()];
  }

  // -------------------------------------------------------------------------------------------
  // xattrs

  getxattr(ino: number, name: string): Buffer {
    const value = this.inode(ino).xattrs?.get(name);
    if (!value) throw new FsError("ENODATA");
    return value;
  }

  listxattr(ino: number): string[] {
    return [...(this.inode(ino).xattrs?.keys() ?? [])];
  }

  setxattr(ino: number, name: string, value: Uint8Array, flags = 0): void {
    const inode = this.inode(ino);
    // POSIX ACLs are not supported (the mount does not negotiate FUSE_POSIX_ACL). Storing them as
    // plain xattrs would be wrong: `cp -a` sets the mode through the ACL and skips chmod when the
    // ACL write succeeds, leaving files 0600 with a "+". EOPNOTSUPP makes it fall back to chmod.
    if (name.startsWith("system.posix_acl_")) throw new FsError("EOPNOTSUPP", "POSIX ACLs are not supported");
    if (name.length === 0 || name.length > XATTR_NAME_MAX) throw new FsError("ERANGE");
    if (value.length > XATTR_SIZE_MAX) throw new FsError("E2BIG");
    const exists = inode.xattrs?.has(name) ?? false;
    if (flags & XATTR_CREATE && exists) throw new FsError("EEXIST");
    if (flags & XATTR_REPLACE && !exists) throw new FsError("ENODATA");
    this.commit({ op: "setxattr", ino, name, value: Buffer.from(value).toString("base64"), time: this.now() });
  }

  removexattr(ino: number, name: string): void {
    const inode = this.inode(ino);
    if (!inode.xattrs?.has(name)) throw new FsError("ENODATA");
    this.commit({ op: "removexattr", ino, name, time: this.now() });
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
      for (const [ino, fd] of this.files)
        if (fd.dirty.size > 0 && fd.dirtySince < expired) await this.flushFile(ino).catch(() => {});
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
    for (const ino of [...this.files.keys()]) await this.flushFile(ino);
    await this.meta.sync();
  }

  stats(): { inodes: number; chunks: number; dirtyBytes: number; journalSeq: number; openFiles: number } {
    return {
      inodes: this.meta.state.inodes.size,
      chunks: this.store.stats().chunks,
      dirtyBytes: this.dirtyTotal,
      journalSeq: this.meta.seq,
      openFiles: this.handles.size,
    };
  }

  /** Flushes, syncs, checkpoints and closes the drive. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    let flushError: unknown;
    for (const ino of [...this.files.keys()]) await this.flushFile(ino).catch((err) => (flushError ??= err));
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
