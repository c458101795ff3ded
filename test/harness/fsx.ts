/**
 * fsx-style randomized test: random writes, truncates, reads, renames, fsyncs and reopens at random
 * offsets against an in-memory model, seeded so a failure replays exactly. The same engine drives
 * lib/disk/fs directly (unit test) and a real mount through node:fs (integration test).
 */
import { seededRng } from "../../lib/cluster/clock.ts";

export interface FsxTarget {
  create(name: string): Promise<void> | void;
  write(name: string, offset: number, data: Buffer): Promise<void> | void;
  read(name: string, offset: number, length: number): Promise<Buffer> | Buffer;
  size(name: string): Promise<number> | number;
  truncate(name: string, size: number): Promise<void> | void;
  rename(from: string, to: string): Promise<void> | void;
  unlink(name: string): Promise<void> | void;
  fsync(name: string): Promise<void> | void;
  /** Close and reopen every handle (or restart the filesystem). */
  reopen(): Promise<void> | void;
  /** Optional: simulate a crash after everything was fsync'd (state must survive exactly). */
  crash?(): Promise<void> | void;
}

export interface FsxOptions {
  seed: number;
  ops: number;
  files?: number;
  maxSize: number;
  maxLen: number;
  log?: (line: string) => void;
}

export async function runFsx(target: FsxTarget, opts: FsxOptions): Promise<{ ops: Record<string, number> }> {
  const rnd = prng(opts.seed);
  const names = Array.from({ length: opts.files ?? 4 }, (_, i) => `fsx${i}`);
  const model = new Map<string, Buffer>();
  const counts: Record<string, number> = {};
  const history: string[] = [];
  const note = (line: string) => {
    history.push(line);
    if (history.length > 30) history.shift();
    opts.log?.(line);
  };
  const fail = (msg: string): never => {
    throw new Error(`fsx seed ${opts.seed}: ${msg}\nlast ops:\n  ${history.join("\n  ")}`);
  };
  const existing = () => names.filter((n) => model.has(n));
  // Offsets cluster near chunk-ish boundaries and the end of file as well as anywhere.
  const pickOffset = (size: number) => {
    const r = rnd.next();
    if (r < 0.3 && size > 0) return Math.max(0, size - rnd.int(opts.maxLen));
    if (r < 0.45) return Math.max(0, Math.floor(rnd.int(opts.maxSize) / 65536) * 65536 - rnd.int(16));
    return rnd.int(opts.maxSize);
  };

  for (let i = 0; i < opts.ops; i++) {
    const live = existing();
    const r = rnd.next();
    let kind: string;
    if (live.length === 0 || r < 0.05) kind = "create";
    else if (r < 0.4) kind = "write";
    else if (r < 0.65) kind = "read";
    else if (r < 0.75) kind = "truncate";
    else if (r < 0.8) kind = "rename";
    else if (r < 0.83) kind = "unlink";
    else if (r < 0.9) kind = "fsync";
    else if (r < 0.95) kind = "size";
    else if (r < 0.98) kind = "reopen";
    else kind = target.crash ? "crash" : "reopen";
    counts[kind] = (counts[kind] ?? 0) + 1;
    const name = live[rnd.int(live.length)]!;
    switch (kind) {
      case "create": {
        const fresh = names.filter((n) => !model.has(n));
        if (fresh.length === 0) break;
        const n = fresh[rnd.int(fresh.length)]!;
        note(`${i}: create ${n}`);
        await target.create(n);
        model.set(n, Buffer.alloc(0));
        break;
      }
      case "write": {
        const cur = model.get(name)!;
        const off = pickOffset(cur.length);
        const len = 1 + rnd.int(opts.maxLen);
        const data = rnd.bytes(len);
        note(`${i}: write ${name} off=${off} len=${len}`);
        await target.write(name, off, data);
        const next = Buffer.alloc(Math.max(cur.length, off + len));
        cur.copy(next);
        data.copy(next, off);
        model.set(name, next);
        break;
      }
      case "read": {
        const cur = model.get(name)!;
        const off = pickOffset(cur.length);
        const len = 1 + rnd.int(opts.maxLen);
        note(`${i}: read ${name} off=${off} len=${len}`);
        const got = await target.read(name, off, len);
        const want = cur.subarray(Math.min(off, cur.length), Math.min(off + len, cur.length));
        if (!got.equals(want)) {
          let at = 0;
          while (at < Math.min(got.length, want.length) && got[at] === want[at]) at++;
          fail(
            `read ${name} off=${off} len=${len}: got ${got.length} bytes, want ${want.length}; first difference at +${at} (file offset ${off + at})`,
          );
        }
        break;
      }
      case "truncate": {
        const cur = model.get(name)!;
        const size = rnd.next() < 0.5 ? rnd.int(cur.length + 1) : rnd.int(opts.maxSize);
        note(`${i}: truncate ${name} ${size}`);
        await target.truncate(name, size);
        const next = Buffer.alloc(size);
        cur.copy(next, 0, 0, Math.min(size, cur.length));
        model.set(name, next);
        break;
      }
      case "rename": {
        const to = names[rnd.int(names.length)]!;
        if (to === name) break;
        note(`${i}: rename ${name} -> ${to}`);
        await target.rename(name, to);
        model.set(to, model.get(name)!);
        model.delete(name);
        break;
      }
      case "unlink":
        note(`${i}: unlink ${name}`);
        await target.unlink(name);
        model.delete(name);
        break;
      case "fsync":
        note(`${i}: fsync ${name}`);
        await target.fsync(name);
        break;
      case "size": {
        const got = await target.size(name);
        note(`${i}: size ${name} = ${got}`);
        if (got !== model.get(name)!.length) fail(`size of ${name}: got ${got}, want ${model.get(name)!.length}`);
        break;
      }
      case "reopen":
        note(`${i}: reopen`);
        await target.reopen();
        break;
      case "crash":
        for (const n of existing()) await target.fsync(n);
        note(`${i}: crash (after fsync of all files)`);
        await target.crash!();
        break;
    }
  }
  // Final check of every file, whole.
  for (const [name, want] of model) {
    const size = await target.size(name);
    if (size !== want.length) fail(`final size of ${name}: got ${size}, want ${want.length}`);
    const got = await target.read(name, 0, want.length);
    if (!got.equals(want)) fail(`final contents of ${name} differ`);
  }
  return { ops: counts };
}

/** The cluster's seeded PRNG (mulberry32), with helpers for ints and bytes: deterministic per seed. */
export function prng(seed: number): { next: () => number; int: (n: number) => number; bytes: (n: number) => Buffer } {
  const next = seededRng(seed);
  const u32 = () => next() * 2 ** 32; // exact: next() is a 32-bit integer over 2^32
  const int = (n: number) => Math.floor(next() * n);
  const bytes = (n: number) => {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(u32(), i);
    for (; i < n; i++) b[i] = u32() & 255;
    return b;
  };
  return { next, int, bytes };
}
