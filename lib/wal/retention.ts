/**
 * Which segments retention removes. Pure: the WAL applies the answer (and runs it after every
 * segment rotation and on a timer, so the policy is actually enforced, not just configured).
 *
 * Only whole, closed segments go; the active (last) one always stays. A segment goes when its
 * newest entry is older than maxAgeHours, or while the WAL is bigger than maxBytes (oldest first).
 * `protectFromLsn` keeps every segment holding that LSN or later (e.g. the lowest LSN a live
 * follower still needs) — pass undefined to let followers fall behind into NeedsMigration.
 */
export interface RetentionPolicy {
  /** 0 or undefined: no age limit. */
  maxAgeHours?: number;
  /** 0 or undefined: no size limit. */
  maxBytes?: number;
}

export interface SegmentInfo {
  firstLsn: number;
  lastLsn: number;
  bytes: number;
  lastTimeMs: number;
}

export function segmentsToRemove(
  segments: readonly SegmentInfo[],
  policy: RetentionPolicy,
  nowMs: number,
  protectFromLsn?: number,
): number {
  const maxAgeMs = policy.maxAgeHours ? policy.maxAgeHours * 3600_000 : 0;
  const maxBytes = policy.maxBytes ?? 0;
  let total = segments.reduce((sum, s) => sum + s.bytes, 0);
  let remove = 0;
  // Oldest first; never the last (active) segment.
  for (let i = 0; i < segments.length - 1; i++) {
    const seg = segments[i]!;
    if (protectFromLsn !== undefined && seg.lastLsn >= protectFromLsn) break;
    const tooOld = maxAgeMs > 0 && nowMs - seg.lastTimeMs > maxAgeMs;
    const tooBig = maxBytes > 0 && total > maxBytes;
    if (!tooOld && !tooBig) break;
    total -= seg.bytes;
    remove++;
  }
  return remove;
}
