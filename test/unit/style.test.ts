/**
 * The tree is formatted and lint-clean (Biome, config in biome.json): `npm run format` fixes the
 * formatting, `npm run lint` lists what is left.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

test("biome ci (format and lint) passes", () => {
  const root = join(import.meta.dir, "..", "..");
  const r = spawnSync(join(root, "node_modules", ".bin", "biome"), ["ci", "--colors=off", "--error-on-warnings", "."], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.status !== 0) console.error(r.stdout + r.stderr);
  expect(r.status).toBe(0);
}, 90_000);
