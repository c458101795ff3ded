/**
 * Acknowledgements on the leader: ClusterNode.waitFor (a wait per entry and level, settled as
 * follower replies and commits come in) and ackedBy. One set per leadership; losing it rejects
 * every wait (the outcome is then unknown).
 */
import {
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
  quorum(): boolean;
  otherVoters(): NodeId[];
  /** Highest LSN follower `id` is known to store (0: none). */
  matchOf(id: NodeId): Lsn;
  /** Followers that count as alive for quorum-off ack capping. */
  aliveFollowers(now: number): NodeId[];
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
          reject(new Error(`entry ${lsn} not acknowledged (${level}) within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.waiters.push(w);
      this.check();
    });
  }

  private ackSatisfied(w: Waiter, now: number): boolean {
    const { host } = this;
    if (w.lsn > host.store.lastLsn()) return false;
    if (w.level === "none") return true;
    if (host.commitLsn() < w.lsn) return false;
    const others = host.otherVoters();
    const acks = others.filter((id) => host.matchOf(id) >= w.lsn).length;
    let need = w.level === "one" ? 1 : w.level === "majority" ? majority(others.length + 1) - 1 : others.length;
    need = Math.min(need, others.length);
    if (!host.quorum()) need = Math.min(need, host.aliveFollowers(now).length);
    return acks >= need;
  }

  /** Settles the waits: resolves those whose level was reached, rejects all if leadership changed. */
  check(): void {
    const { host } = this;
    if (this.waiters.length === 0) return;
    const now = host.clock.now();
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
      } else if (this.ackSatisfied(w, now)) {
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
