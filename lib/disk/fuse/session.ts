/**
 * A FUSE mount served from this process over the raw /dev/fuse protocol (no libfuse).
 *
 * A reader Worker blocks in read(2) on the fd and posts each request here; each request is handled
 * by its opcode's handler (ops.ts) over lib/disk/fs and answered with one write(2) whenever it is done, so
 * many requests are in flight at once and replies may follow slow work (disk).
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
import { ERRNO } from "../../../native/errno.ts";
import { abortConnection, MNT_DETACH, mountFuse, unmount, writeFuse, writevFuse } from "../../../native/fuse.ts";
import { logger } from "../../common/log.ts";
import { startWorker } from "../../common/workers.ts";
import { errnoOf, FsError } from "../errors.ts";
import type { DiskFs } from "../fs.ts";
import { findMount, isDeadMount, setBdiKnob, setReadAhead } from "../mounts.ts";
import { profile, recordOp } from "../profile.ts";
import { FuseOps, MAX_WRITE, type Replier } from "./ops.ts";
import { Op, OP_NAMES, OUT_HEADER_SIZE, outHeader, ProtocolError, Request, writeOutHeader } from "./protocol.ts";

const log = logger("disk:fuse");

const { EBUSY, EINVAL, EIO, ENODEV, ENOENT } = ERRNO;
const NOTIFY_INVAL_INODE = 2;
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

export class FuseSession implements Replier {
  readonly closed: Promise<void>;
  private resolveClosed!: () => void;
  private worker?: Worker;
  private fdOpen = true;
  /** major:minor of the connection (from mountinfo). */
  private dev?: string;
  readonly stats: FuseStats = { requests: 0, errors: 0, inFlight: 0, ops: {} };
  private readonly replyBuf = Buffer.alloc(SMALL_REPLY);
  /** The per-opcode handlers; they answer through this session (Replier). */
  private readonly ops: FuseOps;

  private constructor(
    readonly fs: DiskFs,
    private readonly fd: number,
    readonly opts: FuseSessionOptions,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.ops = new FuseOps(fs, this, opts);
    this.ops.attach();
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
      attrs: session.ops.attrCache.buffers,
      flush: { inodes: session.ops.cleanInodes.buffer, handles: session.ops.cleanHandles.buffer },
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
    this.ops.detach();
    profile.workerGetattrs += this.ops.attrCache.answered;
    profile.workerFlushes += this.ops.attrCache.flushesAnswered;
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
      writeOutHeader(out, len, error, unique);
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

  ok(req: Request, ...parts: Uint8Array[]): void {
    this.send(req.unique, 0, parts);
  }

  fail(req: Request, errno: number): void {
    this.send(req.unique, -errno);
  }

  /** Runs a request; synchronous handlers reply in the same tick (no promise, no microtask). */
  private handle(req: Request, started: number): void {
    let pending: void | Promise<void>;
    try {
      pending = this.ops.dispatch(req);
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
    else if (errno === EIO) log.warn(`${OP_NAMES[req.opcode]} on inode ${req.nodeid}: ${(err as Error).message}`);
    if (req.opcode !== Op.FORGET && req.opcode !== Op.BATCH_FORGET && req.opcode !== Op.INTERRUPT)
      this.fail(req, errno);
  }
}
