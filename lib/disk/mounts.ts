/**
 * Mount table helpers for wolf disk: what is mounted where (/proc/self/mountinfo, never a stat of
 * the mount itself, which would ask its daemon), unmounting — also a mount whose daemon died
 * ("Transport endpoint is not connected") — and the kernel read-ahead of a FUSE mount.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { ERRNO } from "../../native/errno.ts";
import { MNT_DETACH, unmount } from "../../native/fuse.ts";
import { WolfError } from "../common/errors.ts";
import { waitUntil } from "../common/wait.ts";

export interface MountEntry {
  /** major:minor of the mount's device (FUSE: the connection). */
  dev: string;
  mountpoint: string;
  fstype: string;
  source: string;
}

const unescapeOctal = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));

export function mountTable(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (!line) continue;
    const fields = line.split(" ");
    const sep = fields.indexOf("-");
    if (sep < 0) continue;
    out.push({
      dev: fields[2]!,
      mountpoint: unescapeOctal(fields[4]!),
      fstype: fields[sep + 1]!,
      source: unescapeOctal(fields[sep + 2]!),
    });
  }
  return out;
}

/** The wolf disk mount at `path`, if any (the last one mounted there wins, as in the kernel). */
export function findMount(path: string): MountEntry | undefined {
  const target = resolve(path);
  return mountTable()
    .filter((m) => m.mountpoint === target)
    .pop();
}

export function isWolfMount(m: MountEntry | undefined): m is MountEntry {
  return m !== undefined && m.fstype === "fuse.wolf";
}

/** True when the FUSE mount at `path` has lost its daemon. Only stats `path`: call from another process than the daemon. */
export function isDeadMount(path: string): boolean {
  try {
    statSync(path);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ENOTCONN";
  }
}

/** Sets the read-ahead of the FUSE connection behind `mountpoint` (best effort). */
export function setReadAhead(mountpoint: string, kib: number): boolean {
  return kib > 0 && setBdiKnob(mountpoint, "read_ahead_kb", kib);
}

/** Writes /sys/class/bdi/<dev>/<knob> of the mount at `mountpoint` (best effort: needs root). */
export function setBdiKnob(mountpoint: string, knob: "read_ahead_kb" | "max_ratio", value: number): boolean {
  const m = findMount(mountpoint);
  if (!m) return false;
  try {
    writeFileSync(`/sys/class/bdi/${m.dev}/${knob}`, String(value));
    return true;
  } catch {
    return false;
  }
}

/**
 * `wolf disk unmount`: unmounts a wolf disk mount. A mount whose daemon died is detached
 * (MNT_DETACH); a busy mount is an error unless `lazy` (then it is detached and goes away when
 * the last user lets go). Returns what was done.
 */
export async function unmountDrive(
  path: string,
  opts: { lazy?: boolean; timeoutMs?: number } = {},
): Promise<"unmounted" | "detached-dead" | "detached-busy"> {
  const target = resolve(path);
  const m = findMount(target);
  if (!m) {
    if (!existsSync(target))
      throw new WolfError("usage", `${target} does not exist`, {
        hint: "check the mount point path (wolf disk status lists mounted drives)",
      });
    throw new WolfError("state", `${target} is not mounted`);
  }
  if (m.fstype !== "fuse.wolf")
    throw new WolfError("state", `${target} is a ${m.fstype} mount, not a wolf disk`, {
      hint: "use umount(8) for other filesystems",
    });
  if (isDeadMount(target)) {
    const rc = unmount(target, MNT_DETACH);
    if (rc !== 0 && rc !== ERRNO.EINVAL) throw new WolfError("io", `detaching ${target} failed (errno ${rc})`);
    return "detached-dead";
  }
  const rc = unmount(target, 0);
  if (rc === ERRNO.EBUSY) {
    if (!opts.lazy)
      throw new WolfError("state", `${target} is busy (open files or a process inside it)`, {
        hint: "close them, or use --lazy to detach it now",
      });
    const rc2 = unmount(target, MNT_DETACH);
    if (rc2 !== 0) throw new WolfError("io", `detaching ${target} failed (errno ${rc2})`);
    return "detached-busy";
  }
  if (rc !== 0 && rc !== ERRNO.EINVAL) throw new WolfError("io", `umount ${target} failed (errno ${rc})`);
  await waitUntil(() => findMount(target)?.dev !== m.dev, {
    timeoutMs: opts.timeoutMs ?? 10_000,
    what: `${target} to disappear from the mount table`,
  });
  return "unmounted";
}
