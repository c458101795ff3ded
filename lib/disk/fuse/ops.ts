/**
 * What each FUSE request does: decodes its body, calls lib/disk/fs and answers through a Replier
 * (FuseSession writes the reply to /dev/fuse). The session owns the connection, the reader Worker
 * and reply I/O; this file owns the per-opcode work and the tables the reader answers from.
 *
 * Hot path: a request costs one dispatch and, per reply, one method call on the Replier; no
 * closures or allocations beyond what the handler itself needs.
 */
import { ERRNO } from "../../../native/errno.ts";
import { logger } from "../../common/log.ts";
import type { DiskFs } from "../fs.ts";
import type { Attr, SetAttr } from "../fs-types.ts";
import { AttrCache, FlagTable } from "./attr-cache.ts";
import {
  attrOut,
  direntPlusSize,
  direntSize,
  ENTRY_OUT_SIZE,
  entryOut,
  FATTR,
  FOPEN_KEEP_CACHE,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  FUSE_OPEN_KILL_SUIDGID,
  FUSE_WRITE_KILL_SUIDGID,
  InitFlag,
  initOut,
  negativeEntryOut,
  Op,
  openOut,
  type Request,
  statfsOut,
  u32Out,
  u64Out,
  writeDirent,
  writeEntry,
} from "./protocol.ts";

const log = logger("disk:fuse");

const { ENOSYS, ERANGE, EPROTO } = ERRNO;

export const MAX_WRITE = 1024 * 1024;

/** How a handler answers a request (FuseSession: one write(2) to /dev/fuse). */
export interface Replier {
  /** Success: the reply body is `parts`, in order (none for an empty reply). */
  ok(req: Request, ...parts: Uint8Array[]): void;
  /** Failure with a positive errno. */
  fail(req: Request, errno: number): void;
  /** The kernel's cached attributes of `ino` are stale (sent after the reply that changed them). */
  invalidateAttrs(ino: number): void;
}

export interface FuseOpsOptions {
  /** How long the kernel may cache attributes and names (ms). */
  attrTimeoutMs?: number;
  entryTimeoutMs?: number;
  /** Negotiate FUSE_WRITEBACK_CACHE at INIT. Default true. */
  writebackCache?: boolean;
}

export class FuseOps {
  private readonly attrMs: number;
  private readonly entryMs: number;
  /** Attributes the reader Worker may answer GETATTR with (see attr-cache.ts). */
  readonly attrCache = new AttrCache();
  /** Inodes and handles whose FLUSH has nothing to do: the reader answers it (see FlagTable). */
  readonly cleanInodes = new FlagTable();
  readonly cleanHandles = new FlagTable();

  constructor(
    readonly fs: DiskFs,
    private readonly reply: Replier,
    private readonly opts: FuseOpsOptions,
  ) {
    this.attrMs = opts.attrTimeoutMs ?? 1000;
    this.entryMs = opts.entryTimeoutMs ?? 1000;
  }

  /** Keeps the reader's tables in step with `fs`: cleared synchronously with the change that makes them wrong. */
  attach(): void {
    this.fs.onAttrChange = (ino, attr) =>
      attr ? this.attrCache.publish(ino, attrOut(attr, this.attrMs)) : this.attrCache.invalidate(ino);
    this.fs.onDirty = (ino, fh) => {
      this.cleanInodes.set(ino, false);
      if (fh !== undefined) this.cleanHandles.set(fh, false);
    };
  }

  detach(): void {
    this.fs.onAttrChange = undefined;
    this.fs.onDirty = undefined;
  }

  private ctx(req: Request) {
    return { uid: req.uid, gid: req.gid };
  }

  private entry(req: Request, ino: number): void {
    const attr = this.fs.getattr(ino);
    this.fs.ref(ino);
    this.attrCache.publish(ino, attrOut(attr, this.attrMs));
    this.reply.ok(req, entryOut(attr, this.entryMs));
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
    this.reply.ok(req, out);
  }

  dispatch(req: Request): void | Promise<void> {
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
        if (ino === undefined) return this.reply.ok(req, negativeEntryOut(this.entryMs));
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
        return this.reply.ok(req, Buffer.from(fs.readlink(id), "latin1"));
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
        return this.reply.ok(req);
      case Op.RMDIR:
        fs.rmdir(id, req.name());
        return this.reply.ok(req);
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
        return this.reply.ok(req);
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
        this.reply.ok(req, openOut(fh, FOPEN_KEEP_CACHE));
        if (dropped) this.reply.invalidateAttrs(id);
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
        return this.reply.ok(req, entryOut(attr, this.entryMs), openOut(fh, FOPEN_KEEP_CACHE));
      }
      case Op.READ: {
        req.skip(8);
        const offset = req.u64();
        const size = req.u32();
        return fs.read(id, offset, size).then((data) => this.reply.ok(req, data));
      }
      case Op.WRITE:
        return this.write(req);
      case Op.STATFS:
        return this.reply.ok(req, statfsOut(fs.statfs()));
      case Op.FLUSH: {
        const fh = req.u64();
        return fs.flush(fh).then(() => {
          this.refreshClean(id, fh);
          this.reply.ok(req);
        });
      }
      case Op.RELEASE: {
        const fh = req.u64();
        this.cleanHandles.set(fh, false);
        return fs.release(fh).then(() => {
          this.refreshClean(id);
          this.reply.ok(req);
        });
      }
      case Op.FSYNC: {
        const fh = req.u64();
        return fs.fsync(id, (req.u32() & 1) !== 0).then(() => {
          this.refreshClean(id, fh);
          this.reply.ok(req);
        });
      }
      case Op.FSYNCDIR:
        return fs.fsyncdir(id).then(() => this.reply.ok(req));
      case Op.SETXATTR: {
        const size = req.u32();
        const flags = req.u32();
        const name = req.name();
        fs.setxattr(id, name, req.rest(size), flags);
        return this.reply.ok(req);
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
        return this.reply.ok(req);
      case Op.OPENDIR:
        return this.reply.ok(req, openOut(fs.opendir(id), 0));
      case Op.READDIR:
      case Op.READDIRPLUS:
        return this.readdir(req);
      case Op.RELEASEDIR:
        fs.releasedir(req.u64());
        return this.reply.ok(req);
      case Op.ACCESS:
        // default_permissions: the kernel checked the mode bits; the inode must exist.
        fs.getattr(id);
        return this.reply.ok(req);
      case Op.FALLOCATE: {
        req.skip(8);
        const offset = req.u64();
        const length = req.u64();
        return fs.fallocate(id, offset, length, req.u32()).then(() => this.reply.ok(req));
      }
      case Op.LSEEK: {
        req.skip(8);
        const offset = req.u64();
        return this.reply.ok(req, u64Out(fs.lseek(id, offset, req.u32())));
      }
      case Op.SYNCFS:
      case Op.DESTROY:
        return fs.syncAll().then(() => this.reply.ok(req));
      default:
        return this.reply.fail(req, ENOSYS);
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
    this.reply.ok(req, u32Out(await this.fs.write(id, offset, req.rest(size), fh)));
    if (dropped) this.reply.invalidateAttrs(id);
  }

  /** getxattr/listxattr: size 0 asks for the length; a too-small buffer is ERANGE. */
  private sized(req: Request, size: number, value: Buffer): void {
    if (size === 0) return this.reply.ok(req, u32Out(value.length));
    if (value.length > size) return this.reply.fail(req, ERANGE);
    this.reply.ok(req, value);
  }

  private init(req: Request): void {
    const major = req.u32();
    const minor = req.u32();
    const maxReadahead = req.u32();
    const kernelFlags = req.u32();
    if (major !== FUSE_KERNEL_VERSION) {
      log.error(`kernel speaks FUSE ${major}.${minor}; we need ${FUSE_KERNEL_VERSION}.x`);
      return this.reply.fail(req, EPROTO);
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
    log.debug(`FUSE ${major}.${minor} initialised`);
    this.reply.ok(
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
    this.reply.ok(req, out.subarray(0, used));
  }
}
