/**
 * `wolf disk mount` stops cleanly on SIGTERM and on SIGINT: the mount leaves /proc/mounts, the
 * daemon exits 0 having written a checkpoint (the journal is empty), and the next mount finds the
 * drive clean — nothing to recover, the data written before the signal intact.
 */
import { afterEach, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ensureBuilt, runWolfOnce } from "../harness/index.ts";
import { type MountedDrive, mountDrive, sh } from "./disk-helpers.ts";

let drive: MountedDrive | undefined;

beforeAll(async () => {
  await ensureBuilt();
}, 300_000);

afterEach(async () => {
  await drive?.cleanup();
  drive = undefined;
}, 60_000);

/** Mount points in /proc/mounts (octal escapes decoded). */
function procMounts(): string[] {
  return readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(" ")[1]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`${signal} unmounts cleanly: gone from /proc/mounts, exit 0, clean on the next mount`, async () => {
    const d = await mountDrive();
    drive = d;
    expect(procMounts()).toContain(d.mnt);
    await sh(
      `mkdir -p sub && head -c 3000000 /dev/urandom > sub/data && md5sum sub/data > ../sum && echo hello > greeting`,
      { cwd: d.mnt },
    );
    // Written through the page cache (writeback) and not fsync'd: the shutdown must store it.
    writeFileSync(join(d.mnt, "late"), "written just before the signal\n");

    d.daemon.kill(signal);
    expect(await d.daemon.waitForExit(30_000)).toBe(0);
    expect(d.daemon.output()).toMatch(new RegExp(`${signal}: unmounting`));
    expect(d.daemon.output()).toMatch(/is clean/);
    expect(procMounts()).not.toContain(d.mnt);

    const status = await runWolfOnce(["disk", "status", "-c", d.config, "--data-dir", d.dataDir, "--json"]);
    expect(status.code).toBe(0);
    const [st] = JSON.parse(status.stdout) as { mount: string; daemonPid?: number; journalBytes: number }[];
    expect(st!.mount).toBe("not mounted");
    expect(st!.daemonPid).toBeUndefined();
    expect(st!.journalBytes).toBe(0); // everything is in the checkpoint written on the way out

    const again = await d.start();
    expect(again.output()).not.toMatch(/WARN|ERROR|detaching|discarding|torn|cut /i);
    expect(await sh(`md5sum -c ../sum --quiet && cat greeting late`, { cwd: d.mnt })).toBe(
      "hello\nwritten just before the signal\n",
    );
    expect(await d.unmount()).toBe(0);
  }, 120_000);
}
