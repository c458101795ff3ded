/**
 * A FUSE mount served from this process over the raw /dev/fuse protocol (no libfuse).
 *
 * A reader Worker blocks in read(2) on the fd and posts each request here; each request is handled
 * by an async function over lib/disk/fs and answered with one write(2) whenever it is done, so
 * many requests are in flight at once and replies may follow slow work (disk, later network).
 * FORGET, BATCH_FORGET and INTERRUPT get no reply.
 *
 * The hop to this thread costs more than most handlers (~45 µs of a ~65 µs round trip, measured
 * with GETXATTR), so the reader answers GETATTR itself from the attributes this thread publishes
 * (attr-cache.ts): after every directory change and on every first stat after a close the kernel
 * asks for attributes nothing has changed since we last sent them, or that we refreshed when we
 * changed them. It also answers FLUSH (every close) of a handle that did not write on an inode
 * with nothing buffered or unsynced, where flush() has nothing to do. Both tables are written
 * only here, cleared synchronously with the change that makes them wrong (DiskFs.onAttrChange,
 * onDirty), so the reader never answers from a state older than a reply the kernel already has.
 * Replies are built in one buffer and written with a single write(2) through FFI.
 *
 * Measured and rejected: polling a non-blocking clone of the fd (FUSE_DEV_IOC_CLONE) from this
 * thread for a while after each reply, to save the Worker hop for back-to-back requests. On two
 * busy cores the polling thread takes the CPU the client needs: round trips got slower.
 *
 * Locks: POSIX and flock locks are kernel-local (we do not negotiate FUSE_POSIX_LOCKS /
 * FUSE_FLOCK_LOCKS), which is exact for a single-node mount.
 *
 * Never touch the mount from this process's JS thread: the thread that would answer is the one
 * waiting (deadlock). Tests and tools use other processes.
 */
import { closeSync } from "node:fs";
import { findMount, isDeadMount, setBdiKnob, setReadAhead } from "../mounts.ts";
import { logger } from "../../common/log.ts";
import { startWorker } from "../../common/workers.ts";
import {
  abortConnection,
  EBUSY,
  EINVAL,
  ENODEV,
  ENOENT,
  MNT_DETACH,
  mountFuse,
  unmount,
  writeFuse,
  writevFuse,
} from "../../../native/fuse.ts";
import { errnoOf, FsError } from "../errors.ts";
import { AttrCache, FlagTable } from "./attr-cache.ts";
import { profile, recordOp } from "../profile.ts";
import type { Attr, DiskFs, SetAttr } from "../fs.ts";
import {
  attrOut,
  direntPlusSize,
  direntSize,
  ENTRY_OUT_SIZE,
  entryOut,
  negativeEntryOut,
  FATTR,
  FOPEN_KEEP_CACHE,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_OPEN_KILL_SUIDGID,
  FUSE_WRITE_KILL_SUIDGID,
  InitFlag,
  initOut,
  Op,
  OP_NAMES,
  openOut,
  OUT_HEADER_SIZE,
  outHeader,
  ProtocolError,
  Request,
  statfsOut,
  u32Out,
  u64Out,
  writeDirent,
  writeEntry,
} from "./protocol.ts";

const log = logger("disk:fuse");

const ENOSYS = 38;
const NOTIFY_INVAL_INODE = 2;
const ERANGE = 34;
const EPROTO = 71;

export const MAX_WRITE = 1024 * 1024;
const READ_BUFFER = MAX_WRITE + 64 * 1024;
/** Replies up to this size go out from one preallocated buffer; larger ones (READ data) with writev. */
const SMALL_REPLY = 64 * 1024;

export interface FuseSessionOptions {
  mountpoint: string;
  /** Shown in /proc/mounts, e.g. "wolf:default". */
  source: string;
  /** How long the kernel may cache attributes and names (ms). */
  attrTimeoutMs?: number;
  entryTimeoutMs?: number;
  allowOther?: boolean;
  /** Kernel read-ahead for the mount (KiB); 0 keeps the default (128). */
  readAheadKb?: number;
  /**
   * Let the kernel buffer writes in its page cache and send them in large batches
   * (FUSE_WRITEBACK_CACHE). close() and fsync() still write everything back first, so
   * sync_on_close and fsync keep their meaning. Default true.
   */
  writebackCache?: boolean;
  /** Share (%) of the kernel's dirty-page limit this mount may use (the kernel gives FUSE 1%). */
  dirtyMaxRatio?: number;
}

export interface FuseStats {
  requests: number;
  errors: number;
  inFlight: number;
  /** Per operation: count, request bytes, total handling time (ms). */
  ops: Record<string, { count: number; bytes: number; ms: number }>;
}

export class FuseSession {
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private worker?: Worker;
  private fdOpen = true;
  /** major:minor of the connection (from mountinfo). */
  private dev?: string;
  private initDone = false;
  private readonly attrMs: number;
  private readonly entryMs: number;
  readonly stats: FuseStats = { requests: 0, errors: 0, inFlight: 0, ops: {} };
  private readonly replyBuf = Buffer.alloc(SMALL_REPLY);
  /** Attributes the reader Worker may answer GETATTR with (see attr-cache.ts). */
  private readonly attrCache = new AttrCache();
  /** Inodes and handles whose FLUSH has nothing to do: the reader answers it (see FlagTable). */
  private readonly cleanInodes = new FlagTable();
  private readonly cleanHandles = new FlagTable();

  private constructor(
    readonly fs: DiskFs,
    private readonly fd: number,
    readonly opts: FuseSessionOptions,
  ) {
    this.attrMs = opts.attrTimeoutMs ?? 1000;
    this.entryMs = opts.entryTimeoutMs ?? 1000;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    fs.onAttrChange = (ino, attr) =>
      attr ? this.attrCache.publish(ino, attrOut(attr, this.attrMs)) : this.attrCache.invalidate(ino);
    fs.onDirty = (ino, fh) => {
      this.cleanInodes.set(ino, false);
      if (fh !== undefined) this.cleanHandles.set(fh, false);
    };
  }

  /** Mounts `fs` at `opts.mountpoint` and starts serving. A dead mount left there is detached first. */
  static async mount(fs: DiskFs, opts: FuseSessionOptions): Promise<FuseSession> {
    if (isDeadMount(opts.mountpoint)) {
      log.warn(`${opts.mountpoint}: detaching a mount whose daemon died`);
      unmount(opts.mountpoint, MNT_DETACH);
    }
    const fd = mountFuse(opts.mountpoint, {
      source: opts.source,
      subtype: "wolf",
      allowOther: opts.allowOther,
      maxRead: MAX_WRITE,
    });
    const session = new FuseSession(fs, fd, opts);
    try {
      session.worker = await startWorker("lib/disk/fuse-reader.worker.ts");
    } catch (err) {
      unmount(opts.mountpoint, MNT_DETACH);
      closeSync(fd);
      throw err;
    }
    session.worker.onmessage = (event: MessageEvent) => session.onMessage(event.data);
    session.worker.postMessage({
      fd,
      bufferSize: READ_BUFFER,
      attrs: session.attrCache.buffers,
      flush: { inodes: session.cleanInodes.buffer, handles: session.cleanHandles.buffer },
    });
    session.dev = findMount(opts.mountpoint)?.dev;
    // Sequential reads come in read-ahead sized requests: 128 KiB by default is many small ones.
    setReadAhead(opts.mountpoint, opts.readAheadKb ?? 1024);
    // FUSE mounts may hold 1% of the dirty-page limit: random writes would be written back (and
    // sent to us) page by page as soon as a few MiB are dirty.
    if (opts.writebackCache !== false) setBdiKnob(opts.mountpoint, "max_ratio", opts.dirtyMaxRatio ?? 40);
    return session;
  }

  private onMessage(data: unknown): void {
    if (data instanceof Uint8Array) {
      let req: Request;
      try {
        req = new Request(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      } catch (err) {
        // Without a readable header there is no request id to answer.
        log.error(`dropping an undecodable request: ${(err as Error).message}`);
        return;
      }
      this.stats.requests++;
      this.stats.inFlight++;
      profile.requests++;
      this.handle(req, performance.now());
      return;
    }
    const msg = data as { closed?: boolean; errno?: number };
    if (msg.closed) {
      if (msg.errno) log.error(`reading /dev/fuse failed: errno ${msg.errno}`);
      this.finish();
    }
  }

  private finish(): void {
    if (!this.fdOpen) return;
    this.fdOpen = false;
    this.worker?.terminate();
    this.fs.onAttrChange = undefined;
    this.fs.onDirty = undefined;
    profile.workerGetattrs += this.attrCache.answered;
    profile.workerFlushes += this.attrCache.flushesAnswered;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.resolveClosed();
  }

  /**
   * Unmounts. If the mount is busy (open files, a shell inside), it is detached: it disappears
   * from the namespace now and the connection ends when the last user lets go.
   */
  unmount(): { detached: boolean } {
    const rc = unmount(this.opts.mountpoint, 0);
    if (rc === 0 || rc === EINVAL) return { detached: false };
    if (rc === EBUSY) {
      log.warn(`${this.opts.mountpoint} is busy; detaching it (it goes away when the last file is closed)`);
      unmount(this.opts.mountpoint, MNT_DETACH);
      return { detached: true };
    }
    throw new Error(`umount ${this.opts.mountpoint}: errno ${rc}`);
  }

  /** Ends the connection now (requests in flight fail); used when a detached mount must not wait. */
  abort(): void {
    if (this.dev) abortConnection(this.dev);
    unmount(this.opts.mountpoint, MNT_DETACH);
    this.finish();
  }

  private send(unique: bigint, error: number, parts: Uint8Array[] = []): void {
    if (!this.fdOpen) return;
    let len = OUT_HEADER_SIZE;
    for (const p of parts) len += p.length;
    let rc: number;
    if (len <= SMALL_REPLY) {
      // Small replies (all but READ data): header and body copied into one buffer, one write(2).
      const out = this.replyBuf;
      out.writeUInt32LE(len, 0);
      out.writeInt32LE(error, 4);
      out.writeBigUInt64LE(unique, 8);
      let at = OUT_HEADER_SIZE;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      rc = writeFuse(this.fd, out, len);
    } else {
      rc =
        parts.length < 8
          ? writevFuse(this.fd, [outHeader(len, error, unique), ...parts])
          : writeFuse(this.fd, Buffer.concat([outHeader(len, error, unique), ...parts]));
    }
    // ENOENT: the request was interrupted and is gone; ENODEV: unmounted meanwhile.
    if (rc < 0 && rc !== -ENOENT && rc !== -ENODEV) log.error(`reply to /dev/fuse failed: errno ${-rc}`);
  }

  /**
   * Tells the kernel that the attributes it cached for `ino` are stale (FUSE_NOTIFY_INVAL_INODE with
   * a negative offset: attributes only, no page cache, so it cannot wait on pages a writer holds).
   */
  invalidateAttrs(ino: number): void {
    const body = Buffer.alloc(24);
    body.writeBigUInt64LE(BigInt(ino), 0);
    body.writeBigInt64LE(-1n, 8);
    body.writeBigInt64LE(0n, 16);
    this.send(0n, NOTIFY_INVAL_INODE, [body]);
  }

  private ok(req: Request, ...parts: Uint8Array[]): void {
    this.send(req.unique, 0, parts);
  }

  private fail(req: Request, errno: number): void {
    this.send(req.unique, -errno);
  }

  /** Runs a request; synchronous handlers reply in the same tick (no promise, no microtask). */
  private handle(req: Request, started: number): void {
    let pending: void | Promise<void>;
    try {
      pending = this.dispatch(req);
    } catch (err) {
      this.failed(req, err);
      return this.done(req, started);
    }
    if (!pending) return this.done(req, started);
    pending.then(
      () => this.done(req, started),
      (err) => {
        this.failed(req, err);
        this.done(req, started);
      },
    );
  }

  private done(req: Request, started: number): void {
    this.stats.inFlight--;
    const name = OP_NAMES[req.opcode] ?? String(req.opcode);
    const op = (this.stats.ops[name] ??= { count: 0, bytes: 0, ms: 0 });
    const ms = performance.now() - started;
    op.count++;
    op.bytes += req.len;
    op.ms += ms;
    recordOp(name, ms, req.len);
  }

  private failed(req: Request, err: unknown): void {
    const errno = errnoOf(err);
    this.stats.errors++;
    if (err instanceof ProtocolError) log.warn(err.message);
    else if (!(err instanceof FsError))
      log.error(`${OP_NAMES[req.opcode] ?? req.opcode} on inode ${req.nodeid} failed: ${(err as Error).stack ?? err}`);
    else if (errno === 5) log.warn(`${OP_NAMES[req.opcode]} on inode ${req.nodeid}: ${(err as Error).message}`);
    if (req.opcode !== Op.FORGET && req.opcode !== Op.BATCH_FORGET && req.opcode !== Op.INTERRUPT)
      this.fail(req, errno);
  }

  private ctx(req: Request) {
    return { uid: req.uid, gid: req.gid };
  }

  private entry(req: Request, ino: number): void {
    const attr = this.fs.getattr(ino);
    this.fs.ref(ino);
    this.attrCache.publish(ino, attrOut(attr, this.attrMs));
    this.ok(req, entryOut(attr, this.entryMs));
  }

  /** Tells the reader whether FLUSH of `fh` (on `ino`) has work to do, from the real state now. */
  private refreshClean(ino: number, fh?: number): void {
    this.cleanInodes.set(ino, this.fs.isClean(ino));
    if (fh !== undefined) this.cleanHandles.set(fh, this.fs.handleClean(fh));
  }

  /** A GETATTR/SETATTR reply; what it says is published for the reader to answer with. */
  private attrReply(req: Request, attr: Attr): void {
    const out = attrOut(attr, this.attrMs);
    this.attrCache.publish(attr.ino, out);
    this.ok(req, out);
  }

  private dispatch(req: Request): void | Promise<void> {
    const fs = this.fs;
    const id = req.nodeid;
    switch (req.opcode) {
      case Op.INIT:
        return this.init(req);
      case Op.LOOKUP: {
        const ino = fs.lookupIno(id, req.name());
        // A missing name is a negative entry (node id 0) the kernel may cache as long as a
        // positive one: every create on this drive goes through this kernel, which then
        // replaces it. Saves a round trip per repeated lookup of a missing file.
        if (ino === undefined) return this.ok(req, negativeEntryOut(this.entryMs));
        return this.entry(req, ino);
      }
      case Op.FORGET:
        fs.forget(id, req.u64());
        return;
      case Op.BATCH_FORGET: {
        const count = req.u32();
        req.skip(4);
        for (let i = 0; i < count; i++) {
          const node = req.u64();
          fs.forget(node, req.u64());
        }
        return;
      }
      case Op.INTERRUPT:
        return;
      case Op.GETATTR:
        return this.attrReply(req, fs.getattr(id));
      case Op.SETATTR:
        return this.setattr(req);
      case Op.READLINK:
        return this.ok(req, Buffer.from(fs.readlink(id), "latin1"));
      case Op.SYMLINK: {
        const name = req.name();
        const target = req.name();
        return this.entry(req, fs.symlink(id, name, target, this.ctx(req)).ino);
      }
      case Op.MKNOD: {
        const mode = req.u32();
        const rdev = req.u32();
        req.skip(8);
        return this.entry(req, fs.mknod(id, req.name(), mode, rdev, this.ctx(req)).ino);
      }
      case Op.MKDIR: {
        const mode = req.u32();
        req.skip(4);
        return this.entry(req, fs.mkdir(id, req.name(), mode, this.ctx(req)).ino);
      }
      case Op.UNLINK:
        fs.unlink(id, req.name());
        return this.ok(req);
      case Op.RMDIR:
        fs.rmdir(id, req.name());
        return this.ok(req);
      case Op.RENAME:
      case Op.RENAME2: {
        const newDir = req.u64();
        let flags = 0;
        if (req.opcode === Op.RENAME2) {
          flags = req.u32();
          req.skip(4);
        }
        const from = req.name();
        const to = req.name();
        fs.rename(id, from, newDir, to, flags);
        return this.ok(req);
      }
      case Op.LINK: {
        const old = req.u64();
        return this.entry(req, fs.link(old, id, req.name()).ino);
      }
      case Op.OPEN: {
        const flags = req.u32();
        const fh = fs.open(id, flags);
        const dropped = (req.u32() & FUSE_OPEN_KILL_SUIDGID) !== 0 && fs.dropPrivileges(id);
        this.refreshClean(id, fh);
        this.ok(req, openOut(fh, FOPEN_KEEP_CACHE));
        if (dropped) this.invalidateAttrs(id);
        return;
      }
      case Op.CREATE: {
        const flags = req.u32();
        const mode = req.u32();
        req.skip(8);
        const { attr, fh } = fs.create(id, req.name(), mode, this.ctx(req), flags);
        fs.ref(attr.ino);
        this.attrCache.publish(attr.ino, attrOut(attr, this.attrMs));
        this.refreshClean(attr.ino, fh);
        return this.ok(req, entryOut(attr, this.entryMs), openOut(fh, FOPEN_KEEP_CACHE));
      }
      case Op.READ: {
        req.skip(8);
        const offset = req.u64();
        const size = req.u32();
        return fs.read(id, offset, size).then((data) => this.ok(req, data));
      }
      case Op.WRITE:
        return this.write(req);
      case Op.STATFS:
        return this.ok(req, statfsOut(fs.statfs()));
      case Op.FLUSH: {
        const fh = req.u64();
        return fs.flush(fh).then(() => {
          this.refreshClean(id, fh);
          this.ok(req);
        });
      }
      case Op.RELEASE: {
        const fh = req.u64();
        this.cleanHandles.set(fh, false);
        return fs.release(fh).then(() => {
          this.refreshClean(id);
          this.ok(req);
        });
      }
      case Op.FSYNC: {
        const fh = req.u64();
        return fs.fsync(id, (req.u32() & 1) !== 0).then(() => {
          this.refreshClean(id, fh);
          this.ok(req);
        });
      }
      case Op.FSYNCDIR:
        return fs.fsyncdir(id).then(() => this.ok(req));
      case Op.SETXATTR: {
        const size = req.u32();
        const flags = req.u32();
        const name = req.name();
        fs.setxattr(id, name, req.rest(size), flags);
        return this.ok(req);
      }
      case Op.GETXATTR: {
        const size = req.u32();
        req.skip(4);
        return this.sized(req, size, fs.getxattr(id, req.name()));
      }
      case Op.LISTXATTR: {
        const size = req.u32();
        const names = fs.listxattr(id);
        return this.sized(req, size, Buffer.from(names.map((n) => `${n}\0`).join(""), "latin1"));
      }
      case Op.REMOVEXATTR:
        fs.removexattr(id, req.name());
        return this.ok(req);
      case Op.OPENDIR:
        return this.ok(req, openOut(fs.opendir(id), 0));
      case Op.READDIR:
      case Op.READDIRPLUS:
        return this.readdir(req);
      case Op.RELEASEDIR:
        fs.releasedir(req.u64());
        return this.ok(req);
      case Op.ACCESS:
        // default_permissions: the kernel checked the mode bits; the inode must exist.
        fs.getattr(id);
        return this.ok(req);
      case Op.FALLOCATE: {
        req.skip(8);
        const offset = req.u64();
        const length = req.u64();
        return fs.fallocate(id, offset, length, req.u32()).then(() => this.ok(req));
      }
      case Op.LSEEK: {
        req.skip(8);
        const offset = req.u64();
        return this.ok(req, u64Out(fs.lseek(id, offset, req.u32())));
      }
      case Op.SYNCFS:
      case Op.DESTROY:
        return fs.syncAll().then(() => this.ok(req));
      default:
        return this.fail(req, ENOSYS);
    }
  }

  private async write(req: Request): Promise<void> {
    const id = req.nodeid;
    const fh = req.u64();
    const offset = req.u64();
    const size = req.u32();
    const writeFlags = req.u32();
    req.skip(8 + 4 + 4);
    // HANDLE_KILLPRIV_V2: the kernel does not ask for security.capability before every write;
    // it flags writes by unprivileged processes and we drop the privileges ourselves.
    const dropped = (writeFlags & FUSE_WRITE_KILL_SUIDGID) !== 0 && this.fs.dropPrivileges(id);
    this.ok(req, u32Out(await this.fs.write(id, offset, req.rest(size), fh)));
    if (dropped) this.invalidateAttrs(id);
  }

  /** getxattr/listxattr: size 0 asks for the length; a too-small buffer is ERANGE. */
  private sized(req: Request, size: number, value: Buffer): void {
    if (size === 0) return this.ok(req, u32Out(value.length));
    if (value.length > size) return this.fail(req, ERANGE);
    this.ok(req, value);
  }

  private init(req: Request): void {
    const major = req.u32();
    const minor = req.u32();
    const maxReadahead = req.u32();
    const kernelFlags = req.u32();
    if (major !== FUSE_KERNEL_VERSION) {
      log.error(`kernel speaks FUSE ${major}.${minor}; we need ${FUSE_KERNEL_VERSION}.x`);
      return this.fail(req, EPROTO);
    }
    const want =
      InitFlag.ASYNC_READ |
      InitFlag.BIG_WRITES |
      InitFlag.AUTO_INVAL_DATA |
      InitFlag.DO_READDIRPLUS |
      InitFlag.READDIRPLUS_AUTO |
      InitFlag.PARALLEL_DIROPS |
      InitFlag.MAX_PAGES |
      InitFlag.CACHE_SYMLINKS |
      InitFlag.HANDLE_KILLPRIV_V2 |
      InitFlag.ASYNC_DIO |
      (this.opts.writebackCache !== false ? InitFlag.WRITEBACK_CACHE : 0);
    this.initDone = true;
    log.debug(`FUSE ${major}.${minor} initialised`);
    this.ok(
      req,
      initOut({
        minor: Math.min(minor, FUSE_KERNEL_MINOR_VERSION),
        maxReadahead,
        flags: want & kernelFlags,
        maxWrite: MAX_WRITE,
        maxPages: MAX_WRITE / 4096,
        maxBackground: 64,
      }),
    );
  }

  get initialised(): boolean {
    return this.initDone;
  }

  private async setattr(req: Request): Promise<void> {
    const valid = req.u32();
    req.skip(4 + 8); // padding, fh
    const size = req.u64();
    req.skip(8); // lock_owner
    const atime = req.u64();
    const mtime = req.u64();
    const ctime = req.u64();
    const atimensec = req.u32();
    const mtimensec = req.u32();
    const ctimensec = req.u32();
    const mode = req.u32();
    req.skip(4);
    const uid = req.u32();
    const gid = req.u32();
    const changes: SetAttr = {};
    if (valid & FATTR.MODE) changes.mode = mode;
    if (valid & FATTR.UID) changes.uid = uid;
    if (valid & FATTR.GID) changes.gid = gid;
    if (valid & FATTR.SIZE) changes.size = size;
    if (valid & FATTR.ATIME) changes.atime = valid & FATTR.ATIME_NOW ? "now" : [atime, atimensec];
    if (valid & FATTR.MTIME) changes.mtime = valid & FATTR.MTIME_NOW ? "now" : [mtime, mtimensec];
    if (valid & FATTR.CTIME) changes.ctime = [ctime, ctimensec];
    let attr = await this.fs.setattr(req.nodeid, changes);
    if (valid & FATTR.KILL_SUIDGID) {
      this.fs.dropPrivileges(req.nodeid);
      attr = this.fs.getattr(req.nodeid);
    }
    this.attrReply(req, attr);
  }

  private readdir(req: Request): void {
    const plus = req.opcode === Op.READDIRPLUS;
    const fh = req.u64();
    const offset = req.u64();
    const size = req.u32();
    const out = Buffer.alloc(size);
    let used = 0;
    for (const e of this.fs.readdir(fh, offset, 4096)) {
      const name = Buffer.from(e.name, "latin1");
      const need = plus ? direntPlusSize(name.length) : direntSize(name.length);
      if (used + need > size) break;
      if (plus) {
        const dot = e.name === "." || e.name === "..";
        if (dot) out.fill(0, used, used + ENTRY_OUT_SIZE);
        else {
          let attr: ReturnType<typeof this.fs.getattr>;
          try {
            attr = this.fs.getattr(e.ino);
          } catch {
            continue; // removed since the listing snapshot
          }
          writeEntry(out, used, attr, this.entryMs);
          this.fs.ref(e.ino);
        }
        writeDirent(out, used + ENTRY_OUT_SIZE, e.ino, e.next, e.type, name);
      } else {
        writeDirent(out, used, e.ino, e.next, e.type, name);
      }
      used += need;
    }
    this.ok(req, out.subarray(0, used));
  }
}
