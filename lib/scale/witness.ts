/**
 * A witness node (`[cluster] witness = true`, `wolf scale start --witness`): a voter that stores the
 * log durably (its copy counts for acknowledgements) but has no MariaDB — the third vote that makes
 * a 2-node cluster safe, like Galera's arbitrator. The cluster core keeps it from leading except for
 * a moment (it hands over as soon as a database node is caught up).
 *
 * Its state machine applies nothing: committed entries only move the applied position (so the WAL
 * can be pruned), and leader markers tell it where the leader's API is. The position is saved now
 * and then; after a crash it restarts from an older one and re-applies nothing again, which is safe.
 */
import { existsSync, readFileSync } from "node:fs";
import type { FSM, LogEntry, LogStore, Lsn } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import { logger } from "../common/log.ts";
import type { FsmStats } from "./fsm.ts";
import { decodeMarker, isMarker, type LeaderMarker } from "./marker.ts";

const log = logger("scale");

/** How often the applied position is saved at most (ms): losing it costs only a no-op re-apply. */
const SAVE_EVERY_MS = 1000;

export const WITNESS_ROLE =
  "witness: votes and stores the log (its copy counts for acknowledgements), has no database, never serves";

export class WitnessFsm implements FSM {
  readonly stats: FsmStats = { applied: 0, ownSkipped: 0, retries: 0, lastApplyMs: 0 };
  private applied: Lsn;
  private savedAt = 0;
  private saved: Lsn;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    store: LogStore,
    private readonly file: string,
    private readonly onMarker?: (m: LeaderMarker, lsn: Lsn) => void,
  ) {
    // Never below the log's base (earlier entries are gone), never past its end.
    this.applied = Math.min(Math.max(readApplied(file), store.base().lsn), store.lastLsn());
    this.saved = this.applied;
  }

  appliedLsn(): Lsn {
    return this.applied;
  }

  apply(entry: LogEntry): void {
    if (entry.kind === "data" && isMarker(entry.data)) {
      try {
        this.onMarker?.(decodeMarker(entry.data), entry.lsn);
      } catch (err) {
        log.warn(`entry ${entry.lsn}: unreadable leader marker (${(err as Error).message})`);
      }
    }
    this.applied = entry.lsn;
    this.stats.applied++;
    this.scheduleSave();
  }

  applyBatch(entries: LogEntry[]): void {
    for (const e of entries) this.apply(e);
  }

  private scheduleSave(): void {
    if (this.timer) return;
    const wait = Math.max(0, this.savedAt + SAVE_EVERY_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.save();
    }, wait);
    this.timer.unref?.();
  }

  private save(): void {
    if (this.applied === this.saved) return;
    try {
      writeFileAtomic(this.file, `${JSON.stringify({ lsn: this.applied })}\n`);
      this.saved = this.applied;
      this.savedAt = Date.now();
    } catch (err) {
      log.warn(`could not save the witness's applied position: ${(err as Error).message}`); // names the file
    }
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.save();
  }
}

function readApplied(file: string): Lsn {
  if (!existsSync(file)) return 0;
  try {
    const lsn = (JSON.parse(readFileSync(file, "utf8")) as { lsn?: unknown }).lsn;
    return typeof lsn === "number" && Number.isSafeInteger(lsn) && lsn >= 0 ? lsn : 0;
  } catch {
    return 0; // re-applying nothing from the start is always safe
  }
}

/** Why a witness refuses `what` (writes, reads, dumps, promote): it has no database. */
export function witnessRefusal(
  nodeId: number,
  what: string,
  leader: { id: number | null; api: string | undefined },
): WolfError {
  const where =
    leader.id === null
      ? "no leader is known right now"
      : leader.id === nodeId
        ? "this witness leads only until a database node has caught up"
        : `the leader is node ${leader.id}${leader.api ? ` at ${leader.api}` : ""}`;
  return new WolfError("state", `node ${nodeId} is a witness (no database): it does not serve ${what}; ${where}`, {
    hint:
      leader.id !== null && leader.id !== nodeId && leader.api
        ? `send it to the leader's API: ${leader.api}`
        : "retry shortly against a database node",
  });
}
