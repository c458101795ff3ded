import { afterEach, expect, test } from "bun:test";
import type { DiskFs } from "../../../lib/disk/fs.ts";
import { type FsxTarget, runFsx } from "../../harness/fsx.ts";
import { CTX, openFs, ROOT, tempDir } from "./helpers.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** lib/disk/fs as an fsx target: one open handle per file, like a program holding fds. */
async function fsTarget(chunkSize: number, writeBufferBytes: number): Promise<FsxTarget & { fs: () => DiskFs }> {
  const t = tempDir();
  let fs = await openFs(t.dir, { chunkSize, writeBufferBytes });
  const abandoned: DiskFs[] = [];
  cleanups.push(async () => {
    for (const old of abandoned) await old.store.close();
    await fs.close().catch(() => {});
    t.cleanup();
  });
  const handles = new Map<string, { ino: number; fh: number }>();
  const h = (name: string) => {
    let e = handles.get(name);
    if (!e) {
      const ino = fs.lookup(ROOT, name).ino;
      e = { ino, fh: fs.open(ino) };
      handles.set(name, e);
    }
    return e;
  };
  const closeAll = async () => {
    for (const e of handles.values()) {
      await fs.flush(e.fh);
      await fs.release(e.fh);
    }
    handles.clear();
  };
  return {
    fs: () => fs,
    create(name) {
      const { attr, fh } = fs.create(ROOT, name, 0o644, CTX);
      handles.set(name, { ino: attr.ino, fh });
    },
    async write(name, off, data) {
      const e = h(name);
      await fs.write(e.ino, off, data, e.fh);
    },
    read: (name, off, len) => fs.read(h(name).ino, off, len),
    size: (name) => fs.getattr(h(name).ino).size,
    async truncate(name, size) {
      await fs.setattr(h(name).ino, { size });
    },
    async rename(from, to) {
      const e = h(from);
      fs.rename(ROOT, from, ROOT, to);
      const replaced = handles.get(to);
      if (replaced) await fs.release(replaced.fh);
      handles.delete(from);
      handles.set(to, e);
    },
    async unlink(name) {
      const e = handles.get(name);
      fs.unlink(ROOT, name);
      if (e) await fs.release(e.fh);
      handles.delete(name);
    },
    fsync: (name) => fs.fsync(h(name).ino),
    async reopen() {
      await closeAll();
      await fs.close();
      fs = await openFs(t.dir);
    },
    async crash() {
      // Everything was fsync'd; drop the instance without closing it (no checkpoint, no flush).
      abandoned.push(fs);
      handles.clear();
      fs = await openFs(t.dir);
    },
  };
}

test("fsx against lib/disk/fs: small chunks, tiny write-back buffer (flushes under pressure)", async () => {
  const target = await fsTarget(64 * 1024, 256 * 1024);
  const { ops } = await runFsx(target, { seed: 1, ops: 3000, maxSize: 1024 * 1024, maxLen: 96 * 1024 });
  expect(ops.write).toBeGreaterThan(500);
  expect(ops.crash).toBeGreaterThan(10);
}, 60_000);

// WOLF_FSX_SEEDS=10-200 runs more seeds (soak); the default run keeps three.
const range = /^(\d+)-(\d+)$/.exec(process.env.WOLF_FSX_SEEDS ?? "");
const seeds = range
  ? Array.from({ length: Number(range[2]) - Number(range[1]) + 1 }, (_, i) => Number(range[1]) + i)
  : [2, 3, 4];
for (const seed of seeds) {
  test(`fsx against lib/disk/fs, seed ${seed}`, async () => {
    const target = await fsTarget(16 * 1024, 64 * 1024 * 1024);
    await runFsx(target, { seed, ops: 2000, maxSize: 512 * 1024, maxLen: 40 * 1024 });
    // Garbage is collected: only chunks the surviving files reference stay on disk.
    const fs = target.fs();
    await fs.syncAll();
    await fs.collectGarbage();
    expect(fs.store.list().length).toBe(fs.meta.state.refs.size);
  }, 60_000);
}
