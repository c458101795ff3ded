/**
 * Crash safety: kill -9 the `wolf disk mount` daemon while a writer is creating, overwriting,
 * renaming and fsyncing files; `wolf disk unmount` clears the dead mount; after a new mount every
 * file whose fsync returned is intact (an overwrite still in flight may or may not have landed;
 * every other byte must be as synced) and the whole tree can be walked and read.
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
  // A write to the shared file that was in flight (not yet fsynced) when the daemon died.
  const inFlight = new Map<string, { at: number; len: number; maskedSha: string }>();
  for (let round = 0; round < 2; round++) {
    const writer = runWolf([join(import.meta.dir, "disk-crash-writer.ts"), drive.mnt, String(round)], {
      command: [process.execPath],
    });
    // Let it get well into its work, then crash the daemon in the middle of it.
    await waitUntil(() => (writer.stdout().match(/^synced /gm)?.length ?? 0) >= 30 + round * 10, {
      timeoutMs: 60_000,
      what: "the writer to sync some files",
    });
    drive.daemon.kill("SIGKILL");
    await drive.daemon.waitForExit(10_000);
    await writer.waitForExit(30_000).catch(() => writer.stop(1000));
    for (const m of writer.stdout().matchAll(/^(synced|pending) (\S+) (?:(\d+) (\d+) )?([0-9a-f]{64})$/gm)) {
      if (m[1] === "synced") {
        synced.set(m[2]!, m[5]!);
        inFlight.delete(m[2]!);
      } else inFlight.set(m[2]!, { at: Number(m[3]), len: Number(m[4]), maskedSha: m[5]! });
    }

    const status = await runWolfOnce(["disk", "status", "-c", drive.config, "--data-dir", drive.dataDir]);
    expect(status.stdout).toMatch(/mount:\s+dead/);
    const un = await runWolfOnce(["disk", "unmount", "-m", drive.mnt]);
    expect(un.code).toBe(0);
    expect(un.stdout).toMatch(/daemon had died/);

    await drive.start();
    for (const [path, sha] of synced) {
      const data = readFileSync(path);
      const pending = inFlight.get(path);
      if (pending && createHash("sha256").update(data).digest("hex") !== sha) {
        // The unsynced write may have landed (wholly or partly): every other byte must be as synced.
        console.log(
          `[disk] ${path}: the overwrite in flight at the crash had landed (fsync never returned); checking every other byte`,
        );
        data.fill(0, pending.at, pending.at + pending.len);
        expect(`${path} outside the write in flight ${createHash("sha256").update(data).digest("hex")}`).toBe(
          `${path} outside the write in flight ${pending.maskedSha}`,
        );
      } else expect(`${path} ${createHash("sha256").update(data).digest("hex")}`).toBe(`${path} ${sha}`);
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
