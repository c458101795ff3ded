/**
 * `wolf disk status`: per drive, where it lives, whether a daemon serves it and where it is
 * mounted, and what the store holds. Reads only files and the mount table, never the mount
 * itself, so it works while the daemon is busy or dead.
 */
import { closeSync, existsSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { DiskConfig } from "./config.ts";
import { readDaemonRecord } from "./daemon.ts";
import { drives } from "./drives.ts";
import { findMount, isDeadMount } from "./mounts.ts";

export interface DriveStatus {
  name: string;
  dir: string;
  initialised: boolean;
  daemonPid?: number;
  mountpoint?: string;
  mount: "mounted" | "dead" | "not mounted";
  chunks: number;
  chunkBytes: number;
  journalBytes: number;
  checkpointSeq?: number;
  chunkSizeKb?: number;
}

function checkpointInfo(dir: string): { seq?: number } {
  const path = join(dir, "meta", "checkpoint");
  if (!existsSync(path)) return {};
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(256);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const m = /seq=(\d+)/.exec(buf.subarray(0, n).toString());
    return { seq: m ? Number(m[1]) : undefined };
  } finally {
    closeSync(fd);
  }
}

function chunkSizeOf(dir: string): number | undefined {
  const path = join(dir, "meta", "checkpoint");
  if (!existsSync(path)) return undefined;
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(512);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const m = /"chunkSize":(\d+)/.exec(buf.subarray(0, n).toString());
    return m ? Number(m[1]) / 1024 : undefined;
  } finally {
    closeSync(fd);
  }
}

export function driveStatus(config: DiskConfig): DriveStatus[] {
  return drives(config).map((drive) => {
    const record = readDaemonRecord(drive, { evenDead: true });
    const daemon = record?.alive ? record : undefined;
    const mountpoint = record?.mountpoint ?? (drive.mountpoint || undefined);
    const m = mountpoint ? findMount(mountpoint) : undefined;
    const mounted = m?.fstype === "fuse.wolf" && m.source === `wolf:${drive.name}`;
    let chunks = 0;
    let chunkBytes = 0;
    const chunkDir = join(drive.dir, "chunks");
    if (existsSync(chunkDir)) {
      for (const sub of readdirSync(chunkDir)) {
        if (!/^[0-9a-f]{2}$/.test(sub)) continue;
        for (const f of readdirSync(join(chunkDir, sub))) {
          chunks++;
          chunkBytes += statSync(join(chunkDir, sub, f)).size;
        }
      }
    }
    let journalBytes = 0;
    const metaDir = join(drive.dir, "meta");
    if (existsSync(metaDir))
      for (const f of readdirSync(metaDir))
        if (f.startsWith("journal-")) journalBytes += statSync(join(metaDir, f)).size;
    return {
      name: drive.name,
      dir: drive.dir,
      initialised: existsSync(join(metaDir, "checkpoint")),
      daemonPid: daemon?.pid,
      mountpoint: mounted || daemon ? mountpoint : undefined,
      mount: mounted ? (daemon ? "mounted" : isDeadMount(mountpoint!) ? "dead" : "mounted") : "not mounted",
      chunks,
      chunkBytes,
      journalBytes,
      checkpointSeq: checkpointInfo(drive.dir).seq,
      chunkSizeKb: chunkSizeOf(drive.dir),
    };
  });
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export function formatStatus(list: DriveStatus[]): string {
  const lines: string[] = [];
  for (const d of list) {
    lines.push(`drive ${d.name}`);
    lines.push(`  data:       ${d.dir}${d.initialised ? "" : " (not created yet: the first mount creates it)"}`);
    lines.push(
      `  mount:      ${d.mount}${d.mountpoint ? ` at ${d.mountpoint}` : ""}${d.daemonPid ? ` (daemon pid ${d.daemonPid})` : ""}`,
    );
    if (d.mount === "dead") lines.push(`              its daemon died: run \`wolf disk unmount -m ${d.mountpoint}\``);
    lines.push(
      `  chunks:     ${d.chunks} (${mib(d.chunkBytes)})${d.chunkSizeKb ? `, ${d.chunkSizeKb} KiB each at most` : ""}`,
    );
    lines.push(`  journal:    ${mib(d.journalBytes)} since checkpoint seq ${d.checkpointSeq ?? "-"}`);
  }
  return `${lines.join("\n")}\n`;
}
