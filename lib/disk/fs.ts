/**
 * The filesystem of one drive as plain async functions over chunks + metadata: what the FUSE
 * adapter (lib/disk/fuse) calls, and what tests call without a mount.
 *
 * Data path: a file is a list of fixed-size content-addressed chunks (absent = hole = zeros),
 * buffered and flushed by write-back.ts. This file is the namespace, handles and lifecycle.
 *
 * Durability: metadata changes are journal records; fsync (and close of a handle that wrote,
 * with sync_on_close) waits for them — and the chunks they name — to be on stable storage.
 * Chunks are garbage only when the op that dropped their last reference is durable.
 */
import { join } from "node:path";
import { logger } from "../common/log.ts";
import { ChunkStore } from "./chunk-store.ts";
import { Drive } from "./drive.ts";
import { FsError } from "./errors.ts";
import {
  type Attr,
  type Ctx,
  type DirEntry,
  type DiskFsOptions,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  MAX_FILE_SIZE,
  NAME_MAX,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  type SetAttr,
  SYMLINK_MAX,
  XATTR_CREATE,
  XATTR_NAME_MAX,
  XATTR_REPLACE,
  XATTR_SIZE_MAX,
} from "./fs-types.ts";
import { type Inode, isDir, isLnk, type MetaOp, ROOT_INO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from "./meta-state.ts";
import { Metadata } from "./metadata.ts";

const log = logger("disk:fs");

const S_ISGID = 0o2000;
const S_ISUID = 0o4000;

interface DirHandle {
  ino: number;
  snapshot: [string, number][];
}

function validName(name: string): void {
  if (name.length === 0 || name === "." || name === ".." || name.includes("/") || name.includes("\0"))
    throw new FsError("EINVAL", `invalid name ${JSON.stringify(name)}`);
  if (name.length > NAME_MAX) throw new FsError("ENAMETOOLONG");
}

export class DiskFs extends Drive {
  private readonly dirHandles = new Map<number, DirHandle>();
  private nextFh = 1;

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
      await this.data.truncate(ino, changes.size);
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
      if (this.data.files.has(ino)) await this.data.flushFile(ino);
      const file = this.data.files.get(ino);
      if (file) file.mtime = undefined;
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
      else await this.data.flushFile(h.ino);
    } finally {
      const n = (this.openCount.get(h.ino) ?? 1) - 1;
      if (n > 0) this.openCount.set(h.ino, n);
      else {
        this.openCount.delete(h.ino);
        this.maybePurge(h.ino);
        const file = this.data.files.get(h.ino);
        if (
          file &&
          file.dirty.size === 0 &&
          file.flushing.size === 0 &&
          file.loads.size === 0 &&
          file.size === undefined &&
          !file.mtime
        )
          this.data.files.delete(h.ino);
      }
    }
  }

  /** close(2) of a descriptor (kernel FLUSH): buffered data is committed, and with sync_on_close made durable. */
  async flush(fh: number): Promise<void> {
    const h = this.handle(fh);
    if (this.syncOnClose) await this.persist(h.ino, h.wrote);
    else await this.data.flushFile(h.ino);
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
      if (this.data.files.has(ino)) await this.data.flushFile(ino);
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
  // data (write-back.ts)

  read(ino: number, offset: number, length: number): Promise<Buffer> {
    return this.data.read(ino, offset, length);
  }

  write(ino: number, offset: number, data: Uint8Array, fh?: number): Promise<number> {
    return this.data.write(ino, offset, data, fh);
  }

  lseek(ino: number, offset: number, whence: number): number {
    return this.data.lseek(ino, offset, whence);
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
      if (!keepSize && end > this.data.sizeOf(inode)) await this.setattr(ino, { size: end });
      return;
    }
    if (op === FALLOC_FL_PUNCH_HOLE || op === FALLOC_FL_ZERO_RANGE) {
      if (op === FALLOC_FL_PUNCH_HOLE && !keepSize) throw new FsError("EOPNOTSUPP");
      const size = this.data.sizeOf(inode);
      const zeroEnd = keepSize ? Math.min(end, size) : end;
      if (offset < zeroEnd) await this.zeroRange(ino, offset, zeroEnd);
      if (!keepSize && end > this.data.sizeOf(inode)) await this.setattr(ino, { size: end });
      return;
    }
    throw new FsError("EOPNOTSUPP");
  }

  private async zeroRange(ino: number, start: number, end: number): Promise<void> {
    const cs = this.chunkSize;
    await this.data.flushFile(ino);
    const holes: [number, null][] = [];
    for (let pos = start; pos < end; ) {
      const idx = Math.floor(pos / cs);
      const cOff = pos - idx * cs;
      const n = Math.min(cs - cOff, end - pos);
      if (cOff === 0 && n === cs) holes.push([idx, null]);
      else await this.data.write(ino, pos, this.data.zero.subarray(0, n));
      pos += n;
    }
    await this.data.flushFile(ino);
    if (holes.length) {
      this.data.buffersOf(ino).epoch++;
      this.commit({ op: "setattr", ino, chunks: holes, ctime: this.now(), mtime: this.now() });
    }
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
}
