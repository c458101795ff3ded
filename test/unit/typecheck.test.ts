/** The whole tree type-checks under `strict` (bun runs TypeScript without checking types). */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

test("tsc --noEmit passes", () => {
  const root = join(import.meta.dir, "..", "..");
  const r = spawnSync(join(root, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", root], {
    encoding: "utf8",
    timeout: 180_000,
  });
  expect(r.stdout + r.stderr).toBe("");
  expect(r.status).toBe(0);
}, 200_000);
