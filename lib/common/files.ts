/** File-system helpers every subsystem needs, with errors that name the path and say why. */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { describeSystemError, errnoReason, WolfError } from "./errors.ts";

/**
 * Writes `data` to `path` through a temp file in the same directory, fsync and a rename (then an
 * fsync of the directory), mode 0600: a crash leaves the old file or the new one, never half of
 * one, and a returned call is durable. Failures name `path` (never the temp file) and leave no
 * temp file. Used for configs, keys, invites, the cluster's term/vote and log metadata, and scale's
 * origin baseline and node directory.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, opts: { mode?: number } = {}): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    const fd = openSync(tmp, "w", opts.mode ?? 0o600);
    try {
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncDir(dirname(path));
  } catch (err) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing was created (e.g. a file is in the way of the directory)
    }
    throw new WolfError("io", `cannot write ${path}: ${errnoReason(err)}`, {
      hint: describeSystemError(err)?.hint,
      cause: err,
    });
  }
}

/** Makes a rename or create in `dir` durable (fsync of the directory itself). */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Creates `dir` (and its parents) unless it exists; `what` names it in errors ("node.data_dir"). */
export function ensureDir(dir: string, what: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    const notDir = (() => {
      try {
        return !statSync(dir).isDirectory();
      } catch {
        return false;
      }
    })();
    const reason = notDir ? "a file with that name is in the way" : errnoReason(err);
    throw new WolfError("io", `cannot use ${dir} as ${what}: ${reason}`, {
      hint: notDir ? "point it at a directory, or move the file away" : describeSystemError(err)?.hint,
      cause: err,
    });
  }
}
