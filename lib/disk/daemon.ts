/**
 * `wolf disk mount`: opens a drive, mounts it and serves it in the foreground until it is
 * unmounted (SIGINT/SIGTERM here, or `wolf disk unmount` / umount elsewhere). On the way out
 * every buffered write is stored, the journal is synced and a checkpoint is written.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import type { DiskConfig } from "./config.ts";
import { daemonFile, type Drive, resolveDrive } from "./drives.ts";
import { DiskFs } from "./fs.ts";
import { FuseSession } from "./fuse/session.ts";
import { findMount, isDeadMount, isWolfMount } from "./mounts.ts";
import { formatProfile } from "./profile.ts";

const log = logger("disk");

export interface DaemonRecord {
  pid: number;
  drive: string;
  mountpoint: string;
  started: string;
}

/** True if `pid` runs (a zombie, or a process being torn down by kill -9, does not). */
function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** The daemon serving `drive`, if it runs (or, with `evenDead`, the record a killed one left). */
export function readDaemonRecord(
  drive: Drive,
  opts: { evenDead?: boolean } = {},
): (DaemonRecord & { alive: boolean }) | undefined {
  try {
    const rec = JSON.parse(readFileSync(daemonFile(drive), "utf8")) as DaemonRecord;
    const alive = pidAlive(rec.pid);
    return alive || opts.evenDead ? { ...rec, alive } : undefined;
  } catch {
    return undefined;
  }
}

/** Mounts the drive and serves it; resolves once it is unmounted and everything is on disk. */
export async function serveDrive(config: DiskConfig, opts: { mountpoint?: string; drive?: string }): Promise<void> {
  const drive = resolveDrive(config, opts.drive);
  const mountpoint = resolve(opts.mountpoint || drive.mountpoint || "");
  if (!opts.mountpoint && !drive.mountpoint)
    throw new WolfError("usage", `no mount point for drive "${drive.name}"`, {
      hint: "pass -m PATH or set mountpoint in [[drives]]",
    });
  const running = readDaemonRecord(drive);
  if (running)
    throw new WolfError(
      "state",
      `drive "${drive.name}" is already served by pid ${running.pid} at ${running.mountpoint}`,
    );
  if (isWolfMount(findMount(mountpoint)) && !isDeadMount(mountpoint))
    throw new WolfError("state", `${mountpoint} is already a mounted wolf disk`);
  if (!existsSync(mountpoint)) {
    // Create the mount point itself, but not a whole path: a typo must not get mounted silently.
    if (!existsSync(dirname(mountpoint))) {
      throw new WolfError("usage", `cannot mount at ${mountpoint}: ${dirname(mountpoint)} does not exist`, {
        hint: "check the path, or create the parent directory first",
      });
    }
    mkdirSync(mountpoint);
  } else if (!isDeadMount(mountpoint) && !statSync(mountpoint).isDirectory())
    throw new WolfError("usage", `${mountpoint} is not a directory`);

  mkdirSync(drive.dir, { recursive: true });
  const s = config.storage;
  const fs = await DiskFs.open({
    dir: drive.dir,
    chunkSize: s.chunk_size_kb * 1024,
    cacheBytes: s.cache_mb * 1024 * 1024,
    writeBufferBytes: s.write_buffer_mb * 1024 * 1024,
    syncOnClose: s.sync_on_close,
    checkpointBytes: s.checkpoint_mb * 1024 * 1024,
  });
  let session: FuseSession;
  try {
    session = await FuseSession.mount(fs, {
      mountpoint,
      source: `wolf:${drive.name}`,
      attrTimeoutMs: config.fuse.attr_timeout_ms,
      entryTimeoutMs: config.fuse.attr_timeout_ms,
      allowOther: config.fuse.allow_other,
      readAheadKb: config.fuse.read_ahead_kb,
      writebackCache: config.fuse.writeback_cache,
    });
  } catch (err) {
    await fs.close();
    throw new WolfError("io", `mounting ${mountpoint} failed: ${(err as Error).message}`, { cause: err });
  }
  const record: DaemonRecord = { pid: process.pid, drive: drive.name, mountpoint, started: new Date().toISOString() };
  writeFileSync(daemonFile(drive), `${JSON.stringify(record)}\n`);
  const st = fs.stats();
  log.info(
    `mounted drive "${drive.name}" (${drive.dir}, ${st.inodes} inodes, ${st.chunks} chunks, ${fs.chunkSize / 1024} KiB chunks) at ${mountpoint}`,
  );

  let signals = 0;
  const onSignal = (sig: string) => {
    signals++;
    if (signals === 1) {
      log.info(`${sig}: unmounting ${mountpoint}`);
      try {
        const { detached } = session.unmount();
        if (detached)
          log.warn(
            `${mountpoint} was busy: detached; serving until its last file is closed (send ${sig} again to stop now)`,
          );
      } catch (err) {
        log.error((err as Error).message);
      }
    } else {
      log.warn(`${sig} again: dropping the connection; programs still using ${mountpoint} get errors`);
      session.abort();
    }
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    await session.closed;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await fs.close();
    rmSync(daemonFile(drive), { force: true });
    if (process.env.WOLF_DISK_PROFILE === "1") process.stderr.write(`wolf disk profile:\n${formatProfile()}\n`);
  }
  log.info(`unmounted ${mountpoint}; drive "${drive.name}" is clean`);
}
