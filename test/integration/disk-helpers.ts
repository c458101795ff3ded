/** Shared setup of the disk integration tests: a drive served by `dist/wolf disk mount`. */
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import { findMount } from "../../lib/disk/mounts.ts";
import { execArgv, runDir, runWolf, runWolfOnce, type WolfProcess } from "../harness/index.ts";

export interface MountedDrive {
  root: string;
  config: string;
  dataDir: string;
  mnt: string;
  daemon: WolfProcess;
  /** Starts (again) the daemon on the same drive and mount point. */
  start(): Promise<WolfProcess>;
  /** `wolf disk unmount`, waits for the daemon to exit; returns its exit code. */
  unmount(): Promise<number>;
  /** Last resort for afterAll: stop the daemon and detach whatever is left. */
  cleanup(): Promise<void>;
}

export async function sh(script: string, opts: { cwd?: string; timeoutMs?: number } = {}): Promise<string> {
  const r = await execArgv(["bash", "-euo", "pipefail", "-c", script], {
    cwd: opts.cwd,
    timeoutMs: opts.timeoutMs ?? 60_000,
  });
  if (r.code !== 0) throw new Error(`shell failed (exit ${r.code}): ${script}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** `extraConfig` is appended to the generated disk.toml; `edit` may rewrite it (e.g. flip a key). */
export async function mountDrive(extraConfig = "", edit?: (toml: string) => string): Promise<MountedDrive> {
  const root = mkdtempSync(join(runDir(), "disk-"));
  const config = join(root, "disk.toml");
  const dataDir = join(root, "data");
  const mnt = join(root, "mnt");
  mkdirSync(mnt, { recursive: true });
  const init = await runWolfOnce(["disk", "init", "-c", config]);
  if (init.code !== 0) throw new Error(`disk init failed: ${init.stderr}`);
  if (extraConfig) appendFileSync(config, `\n${extraConfig}\n`);
  if (edit) writeFileSync(config, edit(readFileSync(config, "utf8")));
  const drive: MountedDrive = {
    root,
    config,
    dataDir,
    mnt,
    daemon: undefined as unknown as WolfProcess,
    async start() {
      const p = runWolf(["disk", "mount", "-c", config, "--data-dir", dataDir, "-m", mnt], { env: { NO_COLOR: "1" } });
      await p.waitForOutput(/mounted drive "default"/, 30_000);
      drive.daemon = p;
      return p;
    },
    async unmount() {
      const r = await runWolfOnce(["disk", "unmount", "-m", mnt]);
      if (r.code !== 0) throw new Error(`wolf disk unmount failed (${r.code}): ${r.stderr}`);
      return drive.daemon.waitForExit(30_000);
    },
    async cleanup() {
      if (drive.daemon?.running) await drive.daemon.stop(10_000);
      if (findMount(mnt)) await execArgv(["umount", "-l", mnt]);
      await waitUntil(() => !findMount(mnt), { timeoutMs: 10_000, what: `${mnt} to be unmounted` }).catch(() => {});
      if (!findMount(mnt) && existsSync(root)) rmSync(root, { recursive: true, force: true });
    },
  };
  await drive.start();
  return drive;
}
