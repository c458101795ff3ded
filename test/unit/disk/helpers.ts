/** Shared helpers for the disk unit tests: temp drives and a seeded PRNG. */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskFs } from "../../../lib/disk/fs.ts";
import type { DiskFsOptions } from "../../../lib/disk/fs-types.ts";

export const ROOT = 1;
export const CTX = { uid: 0, gid: 0 };

/** Temp dirs on tmpfs when there is one: unit tests exercise logic, not the disk's fsync latency. */
export function tempDir(prefix = "wolf-disk-unit-"): { dir: string; cleanup: () => void } {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const dir = mkdtempSync(join(base, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function openFs(dir: string, opts: Partial<DiskFsOptions> = {}): Promise<DiskFs> {
  return DiskFs.open({ dir, tickMs: 0, ...opts });
}

/** mulberry32: deterministic, seedable, fast. */
export function prng(seed: number): { next: () => number; int: (n: number) => number; bytes: (n: number) => Buffer } {
  let a = seed >>> 0;
  const u32 = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  const next = () => u32() / 2 ** 32;
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
