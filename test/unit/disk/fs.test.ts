import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FsError } from "../../../lib/disk/errors.ts";
import type { DiskFs } from "../../../lib/disk/fs.ts";
import { RENAME_EXCHANGE, RENAME_NOREPLACE, SEEK_DATA, SEEK_HOLE, XATTR_CREATE } from "../../../lib/disk/fs-types.ts";
import { S_IFLNK, S_IFMT, S_IFREG } from "../../../lib/disk/meta-state.ts";
import { profile } from "../../../lib/disk/profile.ts";
import { CTX, openFs, prng, ROOT, tempDir } from "./helpers.ts";

const KiB = 1024;
const MiB = 1024 * 1024;

async function errnoOf(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof FsError) return err.code;
    throw err;
  }
  return "ok";
}

async function writeFile(fs: DiskFs, parent: number, name: string, data: Buffer): Promise<number> {
  const { attr, fh } = fs.create(parent, name, 0o644, CTX);
  await fs.write(attr.ino, 0, data, fh);
  await fs.flush(fh);
  await fs.release(fh);
  return attr.ino;
}

async function readAll(fs: DiskFs, ino: number): Promise<Buffer> {
  return fs.read(ino, 0, fs.getattr(ino).size);
}

function chunkFiles(dir: string): string[] {
  const out: string[] = [];
  const root = join(dir, "chunks");
  for (const sub of readdirSync(root))
    if (/^[0-9a-f]{2}$/.test(sub)) for (const f of readdirSync(join(root, sub))) out.push(join(root, sub, f));
  return out;
}

describe("lib/disk/fs", () => {
  let t: ReturnType<typeof tempDir>;
  let fs: DiskFs;
  beforeEach(async () => {
    t = tempDir();
    fs = await openFs(t.dir, { chunkSize: 64 * KiB });
  });
  afterEach(async () => {
    await fs.close().catch(() => {});
    t.cleanup();
  });

  test("cp a b; rm a; cat b — dedup'd chunks survive the removal of one copy", async () => {
    const data = prng(1).bytes(300 * KiB);
    const a = await writeFile(fs, ROOT, "a", data);
    const b = await writeFile(fs, ROOT, "b", await readAll(fs, a));
    const before = chunkFiles(t.dir).length;
    expect(before).toBe(5); // 300 KiB in 64 KiB chunks, shared by both files
    fs.unlink(ROOT, "a");
    await fs.collectGarbage();
    expect(chunkFiles(t.dir).length).toBe(5);
    expect((await readAll(fs, b)).equals(data)).toBe(true);
    fs.unlink(ROOT, "b");
    await fs.collectGarbage();
    expect(chunkFiles(t.dir).length).toBe(0);
  });

  test("overwrite in the middle returns the new bytes and keeps the rest", async () => {
    const data = prng(2).bytes(200 * KiB);
    const ino = await writeFile(fs, ROOT, "f", data);
    const fh = fs.open(ino);
    const patch = Buffer.alloc(10 * KiB, 0xab);
    await fs.write(ino, 60 * KiB, patch, fh); // straddles a chunk boundary
    const expected = Buffer.from(data);
    patch.copy(expected, 60 * KiB);
    expect((await readAll(fs, ino)).equals(expected)).toBe(true); // from the write-back buffer
    await fs.release(fh);
    expect((await readAll(fs, ino)).equals(expected)).toBe(true); // from chunks
    await fs.close();
    fs = await openFs(t.dir);
    expect((await readAll(fs, ino)).equals(expected)).toBe(true); // after restart
  });

  test("a small write into a large file stores one chunk, not the file", async () => {
    const ino = await writeFile(fs, ROOT, "big", prng(3).bytes(4 * MiB));
    const puts: number[] = [];
    const orig = fs.store.put.bind(fs.store);
    fs.store.put = (hash, data) => {
      puts.push(data.length);
      return orig(hash, data);
    };
    const fh = fs.open(ino);
    for (let i = 0; i < 16; i++) await fs.write(ino, 2 * MiB + i * 4 * KiB, Buffer.alloc(4 * KiB, i + 1), fh);
    await fs.release(fh);
    expect(puts).toEqual([64 * KiB]);
  });

  test("a sequential overwrite never reads the old chunks; reads and writes past the written prefix see the old bytes", async () => {
    const old = prng(11).bytes(200 * KiB);
    const ino = await writeFile(fs, ROOT, "f", old);
    const model = Buffer.from(old);
    const loads = profile.chunkLoads.count;
    let fh = fs.open(ino);
    const fresh = prng(12).bytes(200 * KiB);
    for (let off = 0; off < fresh.length; off += 16 * KiB)
      await fs.write(ino, off, fresh.subarray(off, off + 16 * KiB), fh);
    fresh.copy(model);
    await fs.release(fh);
    expect(profile.chunkLoads.count).toBe(loads);
    expect((await readAll(fs, ino)).equals(model)).toBe(true);

    fh = fs.open(ino);
    const a = Buffer.alloc(16 * KiB, 0xa1);
    await fs.write(ino, 0, a, fh); // chunk 0: written prefix [0, 16 KiB)
    a.copy(model, 0);
    expect((await fs.read(ino, 0, 64 * KiB)).equals(model.subarray(0, 64 * KiB))).toBe(true); // read past the prefix
    const b = Buffer.alloc(8 * KiB, 0xb2);
    await fs.write(ino, 64 * KiB, b, fh); // chunk 1 prefix
    b.copy(model, 64 * KiB);
    const c = Buffer.alloc(4 * KiB, 0xc3);
    await fs.write(ino, 100 * KiB, c, fh); // a gap after chunk 1's prefix
    c.copy(model, 100 * KiB);
    const d = Buffer.alloc(4 * KiB, 0xd4);
    await fs.write(ino, 192 * KiB, d, fh); // chunk 3 (8 KiB long): prefix of half of it
    d.copy(model, 192 * KiB);
    await fs.setattr(ino, { size: 194 * KiB }); // truncate inside chunk 3, past its prefix
    await fs.setattr(ino, { size: 200 * KiB }); // and up again: zeros, not the old bytes
    const expected = Buffer.concat([model.subarray(0, 194 * KiB), Buffer.alloc(6 * KiB)]);
    expect((await readAll(fs, ino)).equals(expected)).toBe(true);
    await fs.release(fh);
    expect((await readAll(fs, ino)).equals(expected)).toBe(true);
    await fs.close();
    fs = await openFs(t.dir);
    expect((await readAll(fs, ino)).equals(expected)).toBe(true);
  });

  test("sparse files read zeros; truncate down and up", async () => {
    const { attr, fh } = fs.create(ROOT, "s", 0o644, CTX);
    const ino = attr.ino;
    await fs.write(ino, 5 * 1024 * MiB, Buffer.from("end"), fh);
    await fs.flush(fh);
    expect(fs.getattr(ino).size).toBe(5 * 1024 * MiB + 3);
    expect((await fs.read(ino, 123 * MiB, 4 * KiB)).equals(Buffer.alloc(4 * KiB))).toBe(true);
    expect((await fs.read(ino, 5 * 1024 * MiB, 10)).toString()).toBe("end");
    expect(fs.lseek(ino, 0, SEEK_DATA)).toBe(5 * 1024 * MiB);
    expect(fs.lseek(ino, 0, SEEK_HOLE)).toBe(0);
    await fs.write(ino, 0, Buffer.alloc(100 * KiB, 7), fh);
    await fs.setattr(ino, { size: 1000 });
    expect(fs.getattr(ino).size).toBe(1000);
    await fs.setattr(ino, { size: 200 * KiB });
    const back = await fs.read(ino, 0, 200 * KiB);
    expect(back.subarray(0, 1000).equals(Buffer.alloc(1000, 7))).toBe(true);
    expect(back.subarray(1000).equals(Buffer.alloc(200 * KiB - 1000))).toBe(true);
    await fs.release(fh);
  });

  test("rename of a non-empty directory keeps its children; replace, noreplace, exchange", async () => {
    const d = fs.mkdir(ROOT, "d", 0o755, CTX).ino;
    const sub = fs.mkdir(d, "sub", 0o755, CTX).ino;
    const f = await writeFile(fs, sub, "f", Buffer.from("hello"));
    const other = fs.mkdir(ROOT, "other", 0o755, CTX).ino;
    fs.rename(ROOT, "d", other, "moved");
    expect(fs.lookup(other, "moved").ino).toBe(d);
    expect(fs.lookup(d, "..").ino).toBe(other);
    expect(fs.lookup(fs.lookup(d, "sub").ino, "f").ino).toBe(f);
    expect(fs.getattr(ROOT).nlink).toBe(3);
    expect(fs.getattr(other).nlink).toBe(3);
    expect(await errnoOf(() => fs.rename(other, "moved", sub, "loop"))).toBe("EINVAL");
    const x = await writeFile(fs, ROOT, "x", Buffer.from("x"));
    const y = await writeFile(fs, ROOT, "y", Buffer.from("y"));
    expect(await errnoOf(() => fs.rename(ROOT, "x", ROOT, "y", RENAME_NOREPLACE))).toBe("EEXIST");
    fs.rename(ROOT, "x", ROOT, "y", RENAME_EXCHANGE);
    expect(fs.lookup(ROOT, "y").ino).toBe(x);
    expect(fs.lookup(ROOT, "x").ino).toBe(y);
    fs.rename(ROOT, "x", ROOT, "y");
    expect(fs.lookup(ROOT, "y").ino).toBe(y);
    expect(await errnoOf(() => fs.lookup(ROOT, "x"))).toBe("ENOENT");
    expect(await errnoOf(() => fs.getattr(x))).toBe("ENOENT"); // replaced file is gone
    expect(await errnoOf(() => fs.rmdir(ROOT, "other"))).toBe("ENOTEMPTY");
    expect(await errnoOf(() => fs.rename(ROOT, "y", other, "moved"))).toBe("EISDIR");
  });

  test("hard links, symlinks, xattrs, modes and owners persist across a restart with the same inode numbers", async () => {
    const f = await writeFile(fs, ROOT, "f", Buffer.from("data"));
    fs.link(f, ROOT, "g");
    expect(fs.getattr(f).nlink).toBe(2);
    const l = fs.symlink(ROOT, "l", "f", CTX);
    expect(l.mode & S_IFMT).toBe(S_IFLNK);
    expect(l.size).toBe(1);
    fs.setxattr(f, "user.color", Buffer.from("blue"));
    expect(await errnoOf(() => fs.setxattr(f, "user.color", Buffer.from("red"), XATTR_CREATE))).toBe("EEXIST");
    await fs.setattr(f, { mode: 0o4750, uid: 1000, gid: 100, mtime: [1_000_000, 5] });
    const d = fs.mkdir(ROOT, "d", 0o700, CTX).ino;
    await fs.close();
    fs = await openFs(t.dir);
    expect(fs.lookup(ROOT, "g").ino).toBe(f);
    expect(fs.lookup(ROOT, "d").ino).toBe(d);
    const a = fs.getattr(f);
    expect(a.nlink).toBe(2);
    expect(a.mode).toBe(S_IFREG | 0o4750);
    expect([a.uid, a.gid]).toEqual([1000, 100]);
    expect(a.mtime).toEqual([1_000_000, 5]);
    expect(fs.readlink(fs.lookup(ROOT, "l").ino)).toBe("f");
    expect(fs.getxattr(f, "user.color").toString()).toBe("blue");
    expect(fs.listxattr(f)).toEqual(["user.color"]);
    fs.removexattr(f, "user.color");
    expect(await errnoOf(() => fs.getxattr(f, "user.color"))).toBe("ENODATA");
    fs.unlink(ROOT, "f");
    expect((await readAll(fs, f)).toString()).toBe("data");
    expect(fs.getattr(f).nlink).toBe(1);
    // New inodes never reuse old numbers.
    expect(fs.mkdir(ROOT, "e", 0o755, CTX).ino).toBeGreaterThan(d);
  });

  test("an unlinked file stays readable while open and goes away on release", async () => {
    const ino = await writeFile(fs, ROOT, "tmp", Buffer.from("still here"));
    const fh = fs.open(ino);
    fs.unlink(ROOT, "tmp");
    expect((await readAll(fs, ino)).toString()).toBe("still here");
    await fs.release(fh);
    expect(await errnoOf(() => fs.getattr(ino))).toBe("ENOENT");
    await fs.collectGarbage();
    expect(chunkFiles(t.dir).length).toBe(0);
  });

  test("readdir is stable while entries are removed (rm -rf pattern)", async () => {
    const d = fs.mkdir(ROOT, "d", 0o755, CTX).ino;
    for (let i = 0; i < 100; i++) fs.mknod(d, `f${i}`, S_IFREG | 0o644, 0, CTX);
    const fh = fs.opendir(d);
    const seen: string[] = [];
    let off = 0;
    for (;;) {
      const batch = fs.readdir(fh, off, 7);
      if (batch.length === 0) break;
      for (const e of batch) {
        if (e.name !== "." && e.name !== "..") {
          seen.push(e.name);
          fs.unlink(d, e.name);
        }
        off = e.next;
      }
    }
    fs.releasedir(fh);
    expect(seen.length).toBe(100);
    fs.rmdir(ROOT, "d");
  });

  test("a corrupted chunk is EIO, never wrong bytes", async () => {
    const ino = await writeFile(fs, ROOT, "f", prng(4).bytes(100 * KiB));
    await fs.close();
    const [victim] = chunkFiles(t.dir).sort();
    const buf = readFileSync(victim!);
    buf[buf.length - 10]! ^= 0xff;
    writeFileSync(victim!, buf);
    fs = await openFs(t.dir);
    expect(await errnoOf(() => readAll(fs, ino))).toBe("EIO");
  });

  test("metadata is recovered from the journal without a clean close, and checkpoints compact it", async () => {
    const d = fs.mkdir(ROOT, "d", 0o755, CTX).ino;
    const ino = await writeFile(fs, d, "f", Buffer.from("journal"));
    await fs.fsync(ino);
    // No close: like kill -9 after fsync.
    const fs2 = await openFs(t.dir);
    expect((await readAll(fs2, fs2.lookup(d, "f").ino)).toString()).toBe("journal");
    await fs2.close();
    const metaFiles = readdirSync(join(t.dir, "meta")).sort();
    expect(metaFiles).toContain("checkpoint");
    fs = await openFs(t.dir);
    expect(fs.lookup(ROOT, "d").ino).toBe(d);
  });

  test("errors: ENOENT, EEXIST, ENOTDIR, EISDIR, ENAMETOOLONG", async () => {
    const f = await writeFile(fs, ROOT, "f", Buffer.from("x"));
    expect(await errnoOf(() => fs.lookup(ROOT, "nope"))).toBe("ENOENT");
    expect(await errnoOf(() => fs.mkdir(ROOT, "f", 0o755, CTX))).toBe("EEXIST");
    expect(await errnoOf(() => fs.mkdir(f, "x", 0o755, CTX))).toBe("ENOTDIR");
    expect(await errnoOf(() => fs.unlink(ROOT, "nope"))).toBe("ENOENT");
    expect(await errnoOf(() => fs.mkdir(ROOT, "n".repeat(256), 0o755, CTX))).toBe("ENAMETOOLONG");
    fs.mkdir(ROOT, "dir", 0o755, CTX);
    expect(await errnoOf(() => fs.unlink(ROOT, "dir"))).toBe("EISDIR");
    expect(await errnoOf(() => fs.rmdir(ROOT, "f"))).toBe("ENOTDIR");
  });
});

describe("lib/disk/journal recovery", () => {
  test("after a crash, records past the last sync that name chunks cut short are dropped, not read as EIO", async () => {
    const t = tempDir();
    try {
      let fs = await openFs(t.dir, { chunkSize: 64 * KiB, syncOnClose: false });
      const synced = prng(21).bytes(100 * KiB);
      const ino = await writeFile(fs, ROOT, "synced", synced);
      await fs.fsync(ino);
      const { attr, fh } = fs.create(ROOT, "unsynced", 0o644, CTX);
      await fs.write(attr.ino, 0, prng(22).bytes(100 * KiB), fh);
      await fs.flush(fh); // committed to the journal; its chunks are not synced yet
      // The power went out before those chunks reached the disk.
      for (const hash of fs.meta.state.get(attr.ino)!.chunks!.values()) truncateSync(fs.store.pathOf(hash), 100);
      fs = await openFs(t.dir); // no close: a crash
      expect((await readAll(fs, ino)).equals(synced)).toBe(true);
      const unsynced = fs.lookup(ROOT, "unsynced"); // created before the cut record: kept, empty
      expect(unsynced.size).toBe(0);
      expect((await readAll(fs, unsynced.ino)).length).toBe(0);
      await fs.close();
    } finally {
      t.cleanup();
    }
  });

  test("a torn record at the end of the journal is cut off; everything before it is kept", async () => {
    const t = tempDir();
    try {
      let fs = await openFs(t.dir, { chunkSize: 64 * KiB });
      fs.mkdir(ROOT, "kept", 0o755, CTX);
      await fs.meta.sync();
      // A crash in the middle of an append leaves a partial record.
      const { appendFileSync, readdirSync: ls } = await import("node:fs");
      const seg = ls(join(t.dir, "meta")).find((f) => f.startsWith("journal-"))!;
      appendFileSync(join(t.dir, "meta", seg), Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 123, 34]));
      fs = await openFs(t.dir);
      expect(fs.lookup(ROOT, "kept").mode & S_IFMT).toBe(0o040000);
      fs.mkdir(ROOT, "after", 0o755, CTX); // appends continue after the cut
      await fs.close();
      fs = await openFs(t.dir);
      expect(fs.list(ROOT).sort()).toEqual(["after", "kept"]);
      await fs.close();
    } finally {
      t.cleanup();
    }
  });
});
