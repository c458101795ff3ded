/** File-system helpers every subsystem needs, with errors that name the path and say why. */
import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { describeSystemError, errnoReason, WolfError } from "./errors.ts";

/**
 * Writes `text` to `path` through a temp file in the same directory and a rename, mode 0600, so a
 * crash never leaves half a file. Failures name `path` (never the temp file) and leave no temp file.
 */
export function writeFileAtomic(path: string, text: string, opts: { mode?: number } = {}): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, text, { mode: opts.mode ?? 0o600 });
    renameSync(tmp, path);
  } catch (err) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // nothing was created (e.g. a file is in the way of the directory)
    }
    throw new WolfError("io", `cannot write ${path}: ${errnoReason(err)}`, { hint: describeSystemError(err)?.hint, cause: err });
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
    throw new WolfError("io", `cannot use ${dir} as ${what}: ${reason}`, { hint: notDir ? "point it at a directory, or move the file away" : describeSystemError(err)?.hint, cause: err });
  }
}
