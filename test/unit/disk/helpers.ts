/** Shared helpers for the disk unit tests: temp drives, and the seeded PRNG of the fsx harness. */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskFs } from "../../../lib/disk/fs.ts";
import type { DiskFsOptions } from "../../../lib/disk/fs-types.ts";

export { prng } from "../../harness/fsx.ts";

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
