/**
 * Writer for the disk crash test (run in its own process): creates files with content derived from
 * their number, overwrites parts of a shared file, renames, fsyncs, and prints one line per
 * durable step: "synced <name> <sha256>" (and "pending …" before an overwrite of the shared file). Runs until killed or until the mount fails.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";

const dir = process.argv[2]!;
const round = process.argv[3] ?? "0";
mkdirSync(join(dir, `round${round}`, "sub"), { recursive: true });

function content(i: number): Buffer {
  const size = 4096 + ((i * 2654435761) % (3 * 1024 * 1024));
  const b = Buffer.allocUnsafe(size);
  let x = (i + 1) * 0x9e3779b1;
  for (let o = 0; o + 4 <= size; o += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, o);
  }
  return b;
}

const shared = join(dir, `round${round}`, "shared.bin");
const sharedFd = openSync(shared, "w+");
const sharedData = Buffer.alloc(8 * 1024 * 1024);
writeSync(sharedFd, sharedData, 0, sharedData.length, 0);
fsyncSync(sharedFd);

try {
  for (let i = 0; ; i++) {
    const data = content(i);
    const tmp = join(dir, `round${round}`, `f${i}.tmp`);
    const final = join(dir, `round${round}`, i % 3 === 0 ? "sub" : "", `f${i}`);
    const fd = openSync(tmp, "w");
    for (let off = 0; off < data.length; off += 256 * 1024)
      writeSync(fd, data, off, Math.min(256 * 1024, data.length - off), off);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, final);
    const dfd = openSync(join(final, ".."), "r");
    fsyncSync(dfd);
    closeSync(dfd);
    console.log(`synced ${final} ${createHash("sha256").update(data).digest("hex")}`);
    // An overwrite in the middle of the shared file, made durable.
    const at = (i * 7919 * 4096) % (sharedData.length - 65536);
    const patch = content(i + 1_000_000).subarray(0, 65536);
    // Until its fsync returns, this write may land whole, in part or not at all: say which bytes
    // are in flight (and the hash of the synced state with them zeroed) so the test can tell.
    const masked = Buffer.from(sharedData);
    masked.fill(0, at, at + patch.length);
    console.log(`pending ${shared} ${at} ${patch.length} ${createHash("sha256").update(masked).digest("hex")}`);
    patch.copy(sharedData, at);
    writeSync(sharedFd, patch, 0, patch.length, at);
    fsyncSync(sharedFd);
    console.log(`synced ${shared} ${createHash("sha256").update(sharedData).digest("hex")}`);
  }
} catch (err) {
  console.log(`writer stopped: ${(err as Error).message}`);
}
