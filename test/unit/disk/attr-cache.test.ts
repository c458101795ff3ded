/**
 * The attribute cache the FUSE reader Worker answers GETATTR from (lib/disk/fuse/attr-cache.ts):
 * the seqlock slots themselves, and the property that makes it safe — kept up to date through
 * DiskFs.onAttrChange the way the session does it, a cached entry always equals what getattr
 * returns now, whatever sequence of namespace ops, writes, truncates, flushes and fsyncs ran.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { DiskFs } from "../../../lib/disk/fs.ts";
import { AttrCache, FlagTable, SLOTS } from "../../../lib/disk/fuse/attr-cache.ts";
import { ATTR_OUT_SIZE, attrOut } from "../../../lib/disk/fuse/protocol.ts";
import { CTX, openFs, prng, ROOT, tempDir } from "./helpers.ts";

const VALID_MS = 10_000;

function cached(cache: AttrCache, ino: number): Buffer | undefined {
  const out = Buffer.alloc(ATTR_OUT_SIZE);
  return cache.read(ino >>> 0, Math.floor(ino / 2 ** 32), out, 0) ? out : undefined;
}

describe("AttrCache slots", () => {
  test("publish, read, invalidate; a slot holding another inode is a miss", () => {
    const cache = new AttrCache();
    const a = Buffer.alloc(ATTR_OUT_SIZE, 7);
    cache.publish(5, a);
    expect(cached(cache, 5)).toEqual(a);
    expect(cache.answered).toBe(1);
    expect(cached(cache, 6)).toBeUndefined();
    // Same slot, other inode: the newer one wins, the older is a miss.
    const b = Buffer.alloc(ATTR_OUT_SIZE, 9);
    cache.publish(5 + SLOTS, b);
    expect(cached(cache, 5)).toBeUndefined();
    expect(cached(cache, 5 + SLOTS)).toEqual(b);
    // Invalidating an inode that is not in its slot leaves the slot alone.
    cache.invalidate(5);
    expect(cached(cache, 5 + SLOTS)).toEqual(b);
    cache.invalidate(5 + SLOTS);
    expect(cached(cache, 5 + SLOTS)).toBeUndefined();
  });

  test("a slot being written (odd sequence) is a miss", () => {
    const cache = new AttrCache();
    cache.publish(3, Buffer.alloc(ATTR_OUT_SIZE, 1));
    const ints = new Int32Array(cache.buffers.slots);
    ints[3 * 32]! += 1; // a writer is mid-way
    expect(cached(cache, 3)).toBeUndefined();
    ints[3 * 32]! += 1;
    expect(cached(cache, 3)).toBeDefined();
  });
});

describe("AttrCache kept by DiskFs.onAttrChange", () => {
  let dir: ReturnType<typeof tempDir>;
  let fs: DiskFs;
  let cache: AttrCache;
  let cleanInodes: FlagTable;
  let cleanHandles: FlagTable;
  const yes = (t: FlagTable, key: number) => t.get(key >>> 0, Math.floor(key / 2 ** 32));
  /** What the session does after OPEN/CREATE/FLUSH/FSYNC/RELEASE. */
  const refresh = (ino: number, fh?: number) => {
    cleanInodes.set(ino, fs.isClean(ino));
    if (fh !== undefined) cleanHandles.set(fh, fs.handleClean(fh));
  };

  beforeEach(async () => {
    dir = tempDir();
    fs = await openFs(dir.dir, { chunkSize: 64 * 1024 });
    cache = new AttrCache();
    // As lib/disk/fuse/session.ts wires it.
    fs.onAttrChange = (ino, attr) => (attr ? cache.publish(ino, attrOut(attr, VALID_MS)) : cache.invalidate(ino));
    cleanInodes = new FlagTable();
    cleanHandles = new FlagTable();
    fs.onDirty = (ino, fh) => {
      cleanInodes.set(ino, false);
      if (fh !== undefined) cleanHandles.set(fh, false);
    };
  });
  afterEach(async () => {
    await fs.close();
    dir.cleanup();
  });

  for (const seed of [1, 2, 3]) {
    test(`never serves stale attributes nor calls a dirty file clean (random ops, seed ${seed})`, async () => {
      const rnd = prng(seed);
      const inos = new Set<number>([ROOT]);
      const names: { parent: number; name: string; ino: number; dir: boolean }[] = [];
      const handles: { fh: number; ino: number }[] = [];
      const check = (what: string) => {
        // FLUSH answered by the reader: only when flush() would have nothing to do.
        for (const ino of inos)
          if (yes(cleanInodes, ino) && !fs.isClean(ino))
            throw new Error(`after ${what}: inode ${ino} called clean but has data to write back`);
        for (const { fh } of handles)
          if (yes(cleanHandles, fh) && !fs.handleClean(fh))
            throw new Error(`after ${what}: handle ${fh} called clean but it wrote`);
        for (const ino of inos) {
          const c = cached(cache, ino);
          if (!c) continue;
          let now: Buffer | undefined;
          try {
            now = attrOut(fs.getattr(ino), VALID_MS);
          } catch {
            now = undefined; // gone: a cached entry would be stale
          }
          if (!now || !c.equals(now)) throw new Error(`after ${what}: stale cached attributes for inode ${ino}`);
        }
      };
      for (let step = 0; step < 400; step++) {
        const pick = <T>(xs: T[]) => xs[rnd.int(xs.length)]!;
        const files = names.filter((n) => !n.dir);
        const dirs = [ROOT, ...names.filter((n) => n.dir).map((n) => n.ino)];
        const op = rnd.int(12);
        let what = "";
        try {
          if (op === 0 || names.length < 3) {
            const parent = pick(dirs);
            const name = `f${step}`;
            const { attr, fh } = fs.create(parent, name, 0o644, CTX);
            handles.push({ fh, ino: attr.ino });
            refresh(attr.ino, fh);
            names.push({ parent, name, ino: attr.ino, dir: false });
            inos.add(attr.ino);
            what = "create";
          } else if (op === 1) {
            const parent = pick(dirs);
            const attr = fs.mkdir(parent, `d${step}`, 0o755, CTX);
            names.push({ parent, name: `d${step}`, ino: attr.ino, dir: true });
            inos.add(attr.ino);
            what = "mkdir";
          } else if (op === 2 && files.length) {
            const f = pick(files);
            const h = handles.find((x) => x.ino === f.ino);
            await fs.write(f.ino, rnd.int(200_000), rnd.bytes(1 + rnd.int(70_000)), h?.fh);
            what = "write";
          } else if (op === 3 && files.length) {
            await fs.setattr(pick(files).ino, { size: rnd.int(150_000) });
            what = "truncate";
          } else if (op === 4 && files.length) {
            const f = pick(files);
            fs.unlink(f.parent, f.name);
            names.splice(names.indexOf(f), 1);
            what = "unlink";
          } else if (op === 5 && files.length) {
            const f = pick(files);
            const to = pick(dirs);
            fs.rename(f.parent, f.name, to, `r${step}`);
            f.parent = to;
            f.name = `r${step}`;
            what = "rename";
          } else if (op === 6 && files.length) {
            const f = pick(files);
            const parent = pick(dirs);
            fs.link(f.ino, parent, `l${step}`);
            names.push({ parent, name: `l${step}`, ino: f.ino, dir: false });
            what = "link";
          } else if (op === 7 && files.length) {
            await fs.setattr(pick(files).ino, { mode: 0o600 | rnd.int(0o100), mtime: [rnd.int(1e9), 0] });
            what = "chmod+utimes";
          } else if (op === 8 && files.length) {
            const f = pick(files);
            await fs.fsync(f.ino);
            refresh(f.ino);
            what = "fsync";
          } else if (op === 9 && handles.length) {
            const h = handles.splice(rnd.int(handles.length), 1)[0]!;
            cleanHandles.set(h.fh, false);
            await fs.release(h.fh);
            refresh(h.ino);
            what = "release";
          } else if (op === 10 && handles.length) {
            const h = pick(handles);
            if (rnd.int(2) === 0) {
              await fs.flush(h.fh);
              refresh(h.ino, h.fh);
              what = "flush";
            } else {
              const fh = fs.open(h.ino, 2);
              handles.push({ fh, ino: h.ino });
              refresh(h.ino, fh);
              what = "open";
            }
          } else {
            // The kernel asks: what the session would reply (and publish) for a few inodes.
            for (const ino of [...inos].slice(-5)) {
              try {
                cache.publish(ino, attrOut(fs.getattr(ino), VALID_MS));
              } catch {
                // gone
              }
            }
            what = "getattr";
          }
        } catch (err) {
          if (!(err as { errno?: number }).errno) throw err; // an FsError (EEXIST, ENOTEMPTY...) is fine
        }
        check(what);
        // Let background flushes of completed chunks finish, then check again.
        await Bun.sleep(0);
        check(`${what} (after background work)`);
      }
      for (const { fh, ino } of handles) {
        cleanHandles.set(fh, false);
        await fs.release(fh);
        refresh(ino);
      }
      check("closing");
    });
  }
});
