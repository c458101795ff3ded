/**
 * Reads FUSE requests from /dev/fuse and hands them to the main thread. A read blocks its thread
 * in the kernel until a request comes, so it cannot run on the JS thread (it would freeze the
 * event loop) nor in the shared fs thread pool (it would starve chunk I/O). One request per
 * message; the buffer is transferred, not copied twice.
 *
 * GETATTR of an inode whose attributes the main thread published (lib/disk/fuse/attr-cache.ts)
 * is answered here, without waking the main thread: the most frequent request (every stat after
 * a close, every directory change) then costs a third of a round trip through the main thread.
 * So is FLUSH (close) of a handle that did not write, on an inode with nothing to write back.
 */
import { ERRNO } from "../../native/errno.ts";
import { readFuse, writeFuse } from "../../native/fuse.ts";
import { AttrCache, type AttrCacheBuffers, FlagTable, type FlushBuffers } from "./fuse/attr-cache.ts";
import { ATTR_OUT_SIZE, Op, OUT_HEADER_SIZE } from "./fuse/protocol.ts";

declare const self: Worker;

const { EAGAIN, EINTR, ENODEV, ENOENT } = ERRNO;

self.onmessage = (
  event: MessageEvent<{ fd: number; bufferSize: number; attrs?: AttrCacheBuffers; flush?: FlushBuffers }>,
) => {
  const { fd, bufferSize, attrs, flush } = event.data;
  const cleanInodes = flush && new FlagTable(flush.inodes);
  const cleanHandles = flush && new FlagTable(flush.handles);
  const ok = new Uint8Array(OUT_HEADER_SIZE);
  new DataView(ok.buffer).setUint32(0, OUT_HEADER_SIZE, true);
  const buf = new Uint8Array(bufferSize);
  const view = new DataView(buf.buffer);
  const cache = attrs ? new AttrCache(attrs) : undefined;
  const reply = new Uint8Array(OUT_HEADER_SIZE + ATTR_OUT_SIZE);
  const replyView = new DataView(reply.buffer);
  replyView.setUint32(0, reply.length, true);
  for (;;) {
    const n = readFuse(fd, buf);
    if (n > 0) {
      // in header: len u32, opcode u32, unique u64, nodeid u64, ...
      if (
        cache &&
        n >= 40 &&
        view.getUint32(4, true) === Op.GETATTR &&
        cache.read(view.getUint32(16, true), view.getUint32(20, true), reply, OUT_HEADER_SIZE)
      ) {
        reply.set(buf.subarray(8, 16), 8); // unique
        const rc = writeFuse(fd, reply);
        // ENOENT: interrupted meanwhile. Anything else: let the main thread answer (and report).
        if (rc >= 0 || rc === -ENOENT) continue;
        if (rc === -ENODEV) {
          self.postMessage({ closed: true, errno: 0 });
          return;
        }
      }
      // FLUSH (fuse_flush_in: fh u64 at 40) of a handle that did not write, on an inode with
      // nothing buffered or unsynced: flush() would return at once.
      if (
        cache &&
        cleanInodes &&
        cleanHandles &&
        n >= 48 &&
        view.getUint32(4, true) === Op.FLUSH &&
        cleanHandles.get(view.getUint32(40, true), view.getUint32(44, true)) &&
        cleanInodes.get(view.getUint32(16, true), view.getUint32(20, true))
      ) {
        ok.set(buf.subarray(8, 16), 8);
        const rc = writeFuse(fd, ok);
        if (rc >= 0 || rc === -ENOENT) {
          cache.countFlush();
          continue;
        }
        if (rc === -ENODEV) {
          self.postMessage({ closed: true, errno: 0 });
          return;
        }
      }
      const copy = buf.slice(0, n);
      self.postMessage(copy, [copy.buffer]);
      continue;
    }
    // ENOENT: the request was interrupted before we read it. EINTR/EAGAIN: try again.
    if (n === -ENOENT || n === -EINTR || n === -EAGAIN) continue;
    self.postMessage({ closed: true, errno: n === -ENODEV ? 0 : -n });
    return;
  }
};
