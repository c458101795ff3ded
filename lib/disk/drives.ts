/** Which drive a command means, and where its data lives. */
import { join } from "node:path";
import { UsageError } from "../common/errors.ts";
import type { DiskConfig } from "./config.ts";

export interface Drive {
  name: string;
  /** Directory holding chunks/ and meta/. */
  dir: string;
  /** Configured default mount point ("" = none). */
  mountpoint: string;
}

export function drives(config: DiskConfig): Drive[] {
  const list = config.drives.length > 0 ? config.drives : [{ name: "default", mountpoint: "", dir: "" }];
  return list.map((d) => ({
    name: d.name,
    mountpoint: d.mountpoint,
    dir: d.dir || join(config.node.data_dir, "drives", d.name),
  }));
}

/** The drive named `name`, or the only/first one when no name is given. */
export function resolveDrive(config: DiskConfig, name?: string): Drive {
  const all = drives(config);
  if (!name) return all[0]!;
  const found = all.find((d) => d.name === name);
  if (!found)
    throw new UsageError(
      `no drive named "${name}" in the config`,
      `configured drives: ${all.map((d) => d.name).join(", ")}`,
    );
  return found;
}

/** The daemon's record in the drive dir: who serves it and where. */
export const daemonFile = (drive: Drive) => join(drive.dir, "daemon.json");
