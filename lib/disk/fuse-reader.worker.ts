/**
 * Reads FUSE requests from /dev/fuse and hands them to the main thread. A read blocks its thread
 * in the kernel until a request comes, so it cannot run on the JS thread (it would freeze the
 * event loop) nor in the shared fs thread pool (it would starve chunk I/O). One request per
 * message; the buffer is transferred, not copied twice.
 */
import { EAGAIN, EINTR, ENODEV, ENOENT, readFuse } from "../../native/fuse.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<{ fd: number; bufferSize: number }>) => {
  const { fd, bufferSize } = event.data;
  const buf = new Uint8Array(bufferSize);
  for (;;) {
    const n = readFuse(fd, buf);
    if (n > 0) {
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
