/**
 * Opening a WAL directory: finds the segment files, finishes a reset that crashed half-way, checks
 * that the segments continue one another, and lets each segment cut its own torn tail.
 */
import fs from "node:fs";
import { join } from "node:path";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { fsyncDir } from "../common/files.ts";
import { parseSegmentName, type RecoveryNote, Segment, segmentName } from "./segment.ts";

/** The staged segment of a reset(); present on open only when a reset was interrupted. */
export const RESET_NAME = "reset.wal.tmp";

const log = logger("wal");

/**
 * Opens (creating if needed) the segments in `dir`, verifying every one; an empty directory gets a
 * first segment starting at `initialLsn`. `trustOrder`: the WAL was written with fsync, so a later
 * batch proves an earlier one durable.
 */
export function recoverSegments(
  dir: string,
  trustOrder: boolean,
  initialLsn: number,
): { segments: Segment[]; notes: RecoveryNote[] } {
  fs.mkdirSync(dir, { recursive: true, mode: 0o750 });
  let names = segmentNames(dir);
  const notes: RecoveryNote[] = [];
  const segments: Segment[] = [];
  if (fs.existsSync(join(dir, RESET_NAME))) {
    finishReset(dir, names);
    names = segmentNames(dir);
  }
  try {
    for (let i = 0; i < names.length; i++) {
      const { name, lsn } = names[i]!;
      const prev = segments[segments.length - 1];
      if (prev && lsn !== prev.lastLsn + 1) {
        throw new WolfError(
          "io",
          `WAL ${dir}: segment ${name} starts at LSN ${lsn} but the previous one ends at ${prev.lastLsn}`,
          { hint: "a segment is missing or damaged; rebuild this node from a peer (wolf ctl scale migrate)" },
        );
      }
      const seg = Segment.open(join(dir, name), lsn, i === names.length - 1, trustOrder, notes);
      if (seg) segments.push(seg);
    }
    if (segments.length === 0) {
      segments.push(Segment.create(dir, initialLsn, 0));
    } else if (segments.length < names.length) {
      // The last file was a torn, header-only segment: its predecessor is active again.
      segments[segments.length - 1]!.makeWritable();
    }
  } catch (err) {
    for (const s of segments) s.close();
    throw err;
  }
  for (const n of notes) {
    if (n.removed) log.warn(`WAL recovery: removed ${n.file}, a segment whose header was never completely written`);
    else log.warn(`WAL recovery: cut a torn tail of ${n.truncatedBytes} bytes from ${n.file} (from LSN ${n.fromLsn})`);
  }
  return { segments, notes };
}

/** Segment files in `dir`, in LSN order. */
function segmentNames(dir: string): Array<{ name: string; lsn: number }> {
  return fs
    .readdirSync(dir)
    .map((name) => ({ name, lsn: parseSegmentName(name) }))
    .filter((s): s is { name: string; lsn: number } => s.lsn !== undefined)
    .sort((a, b) => a.lsn - b.lsn);
}

/** A reset() that crashed after staging its new segment: drop the old ones, install the new. */
function finishReset(dir: string, names: Array<{ name: string; lsn: number }>): void {
  const staged = Segment.open(join(dir, RESET_NAME), undefined, true, true, []);
  if (!staged) return; // the staged header never made it: the old log is still whole
  for (const { name } of names) fs.unlinkSync(join(dir, name));
  staged.renameTo(segmentName(staged.firstLsn)).close();
  fsyncDir(dir);
  log.warn(`WAL: finished an interrupted reset; log continues at LSN ${staged.firstLsn}`);
}
