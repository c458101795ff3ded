/**
 * Crash safety: kill -9 the `wolf disk mount` daemon while a writer is creating, overwriting,
 * renaming and fsyncing files; `wolf disk unmount` clears the dead mount; after a new mount every
 * file whose fsync returned is intact and the whole tree can be walked and read.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import { ensureBuilt, runWolf, runWolfOnce } from "../harness/index.ts";
import { type MountedDrive, mountDrive, sh } from "./disk-helpers.ts";

let drive: MountedDrive;

beforeAll(async () => {
  await ensureBuilt();
  drive = await mountDrive();
}, 300_000);

afterAll(async () => {
  await drive?.cleanup();
}, 60_000);

test("kill -9 during fsync'd writes loses nothing that was synced; the tree stays consistent", async () => {
  const synced = new Map<string, string>();
  for (let round = 0; round < 2; round++) {
    const writer = runWolf([join(import.meta.dir, "disk-crash-writer.ts"), drive.mnt, String(round)], { command: [process.execPath] });
    // Let it get well into its work, then crash the daemon in the middle of it.
    await waitUntil(() => (writer.stdout().match(/^synced /gm)?.length ?? 0) >= 30 + round * 10, { timeoutMs: 60_000, what: "the writer to sync some files" });
    drive.daemon.kill("SIGKILL");
    await drive.daemon.waitForExit(10_000);
    await writer.waitForExit(30_000).catch(() => writer.stop(1000));
    for (const m of writer.stdout().matchAll(/^synced (\S+) ([0-9a-f]{64})$/gm)) synced.set(m[1]!, m[2]!);

    const status = await runWolfOnce(["disk", "status", "-c", drive.config, "--data-dir", drive.dataDir]);
    expect(status.stdout).toMatch(/mount:\s+dead/);
    const un = await runWolfOnce(["disk", "unmount", "-m", drive.mnt]);
    expect(un.code).toBe(0);
    expect(un.stdout).toMatch(/daemon had died/);

    await drive.start();
    for (const [path, sha] of synced) {
      const data = readFileSync(path);
      expect(`${path} ${createHash("sha256").update(data).digest("hex")}`).toBe(`${path} ${sha}`);
    }
    // The whole tree walks and reads without errors; directory link counts add up.
    const out = await sh(
      `find . -type f -print0 | xargs -0 cat > /dev/null && find . -type d | while read d; do n=$(find "$d" -mindepth 1 -maxdepth 1 -type d | wc -l); [ "$(stat -c %h "$d")" = $((n + 2)) ] || echo "bad nlink $d"; done; echo walked`,
      { cwd: drive.mnt, timeoutMs: 60_000 },
    );
    expect(out).toBe("walked\n");
  }
  expect(synced.size).toBeGreaterThan(20);
  // The drive still takes writes after two crashes.
  expect(await sh(`echo after > after && cat after`, { cwd: drive.mnt })).toBe("after\n");
}, 240_000);
