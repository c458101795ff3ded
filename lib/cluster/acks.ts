/**
 * Acknowledgements on the leader: ClusterNode.waitFor (a wait per entry and level, settled as
 * follower replies and commits come in) and ackedBy. One set per leadership; losing it rejects
 * every wait (the outcome is then unknown).
 */
import {
  AckTimeoutError,
  NotLeaderError,
  type AckLevel,
  type Clock,
  type EntryRef,
  type LogStore,
  type Lsn,
  type NodeId,
  type Term,
  type TimerHandle,
} from "./types.ts";
import { majority } from "./election.ts";

/** What acknowledgement counting reads from its leadership. */
export interface AckHost {
  readonly id: NodeId;
  readonly clock: Clock;
  readonly store: LogStore;
  term(): Term;
  leader(): NodeId | null;
  commitLsn(): Lsn;
  otherVoters(): NodeId[];
  /** Highest LSN follower `id` is known to store (0: none). */
  matchOf(id: NodeId): Lsn;
  /** The leadership ended. */
  ended(): boolean;
  /** Last LSN, appended entries not written yet included. */
  lastLsn(): Lsn;
  /** Term of the entry at `lsn`, pending ones included (undefined if the log does not hold it). */
  termOfEntry(lsn: Lsn): Term | undefined;
}

interface Waiter {
  lsn: Lsn;
  level: AckLevel;
  /** The leadership term the wait began in: losing it rejects the wait. */
  term: Term;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: TimerHandle | null;
}

export class AckWaiters {
  private waiters: Waiter[] = [];

  constructor(private readonly host: AckHost) {}

  /**
   * Highest LSN acknowledged by at least k voters other than the leader: stored durably on them
   * and committed, the same rule as waitFor. k = 0 is local durability.
   */
  ackedBy(k: number): Lsn {
    const { host } = this;
    if (k <= 0) return host.store.lastLsn();
    const matches = host
      .otherVoters()
      .map((id) => host.matchOf(id))
      .sort((a, b) => b - a);
    // Capped at the commit LSN: an entry from an earlier term can be stored on a majority and still
    // be overwritten by a later leader (Raft Figure 8) until an entry of this term commits above it.
    return Math.min(matches[k - 1] ?? 0, host.commitLsn());
  }

  /** ClusterNode.waitFor on the leader (see there). */
  waitFor(entry: EntryRef, level: AckLevel, timeoutMs?: number): Promise<void> {
    const { host } = this;
    return new Promise((resolve, reject) => {
      const { lsn } = entry;
      const term = host.term();
      // Within one term only this leader appends, and it never truncates its own log: an entry of
      // the current term is the one at its LSN. An older one must still be in the log.
      if (entry.term !== term && host.termOfEntry(lsn) !== entry.term) {
        return reject(
          new NotLeaderError(
            `entry ${lsn} of term ${entry.term} is no longer in the log (leadership changed); outcome unknown`,
            host.leader(),
          ),
        );
      }
      if (entry.term > term || lsn > host.lastLsn()) {
        return reject(
          new NotLeaderError(
            `entry ${lsn} of term ${entry.term} was never appended by this leader (term ${term})`,
            host.leader(),
          ),
        );
      }
      const w: Waiter = { lsn, level, term, resolve, reject, timer: null };
      if (timeoutMs !== undefined) {
        w.timer = host.clock.setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(this.shortfall(lsn, level, timeoutMs));
        }, timeoutMs);
      }
      this.waiters.push(w);
      this.check();
    });
  }

  /**
   * Followers that must store an entry for `level`. Counted against the configured voter set only,
   * never against the followers that happen to be alive: "one" answered while no follower holds
   * the entry would be a lie the next failover exposes. A single-voter cluster has no follower to
   * ask, so there every level is the leader's own durable copy (and there is no failover to lose it).
   */
  private followersNeeded(level: AckLevel, followers: number): number {
    const need =
      level === "none" ? 0 : level === "one" ? 1 : level === "majority" ? majority(followers + 1) - 1 : followers;
    return Math.min(need, followers);
  }

  /** Followers known to store `lsn` durably. */
  private holders(lsn: Lsn): number {
    const { host } = this;
    return host.otherVoters().filter((id) => host.matchOf(id) >= lsn).length;
  }

  /** Entry `lsn` reached `level`: durable here, and for a follower level committed and held by enough. */
  private met(lsn: Lsn, level: AckLevel): boolean {
    const { host } = this;
    if (lsn > host.store.lastLsn()) return false;
    if (level === "none") return true;
    if (host.commitLsn() < lsn) return false;
    return this.holders(lsn) >= this.followersNeeded(level, host.otherVoters().length);
  }

  /**
   * The highest level entry `lsn` has reached now (what a write that gives up waiting may report,
   * under replication.ack_fallback = "async"); undefined if not even the leader holds it durably.
   * A follower level is only named when a follower holds it (never for a single-voter cluster).
   */
  reached(lsn: Lsn): AckLevel | undefined {
    if (!this.met(lsn, "none")) return undefined;
    if (this.host.otherVoters().length > 0)
      for (const level of ["all", "majority", "one"] as const) if (this.met(lsn, level)) return level;
    return "none";
  }

  /** The error of a wait that timed out: what is known about the entry, and what that means. */
  private shortfall(lsn: Lsn, level: AckLevel, timeoutMs: number): AckTimeoutError {
    const followers = this.host.otherVoters().length;
    const need = this.followersNeeded(level, followers);
    const held = this.holders(lsn);
    const durable = lsn <= this.host.store.lastLsn();
    return new AckTimeoutError(
      `entry ${lsn} not acknowledged (ack = ${level}) within ${timeoutMs} ms: only ${Math.min(held, need)} of ${need} required ` +
        `follower${need === 1 ? "" : "s"} hold it; ${durable ? "nothing was lost on this node" : "it is not yet durable on this node either"}, ` +
        "but the write may or may not survive a failover",
      this.reached(lsn) ?? "none",
    );
  }

  /** Settles the waits: resolves those whose level was reached, rejects all if leadership changed. */
  check(): void {
    const { host } = this;
    if (this.waiters.length === 0) return;
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (host.ended() || w.term !== host.term()) {
        if (w.timer) host.clock.clearTimeout(w.timer);
        w.reject(
          new NotLeaderError(
            `node ${host.id} lost leadership before entry ${w.lsn} was acknowledged; outcome unknown`,
            host.leader(),
          ),
        );
      } else if (this.met(w.lsn, w.level)) {
        if (w.timer) host.clock.clearTimeout(w.timer);
        w.resolve();
      } else keep.push(w);
    }
    this.waiters = keep;
  }

  /** Rejects every wait (leadership lost, or the node stopped). */
  failAll(err: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      if (w.timer) this.host.clock.clearTimeout(w.timer);
      w.reject(err);
    }
  }
}
