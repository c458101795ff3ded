/**
 * Handing leadership over (election.ts, "Handover"), on the leader: automatically (failback =
 * auto) to a voter ahead of this one in the leadership order (the preferred leader, then lower IDs)
 * that stayed caught up, or on request (ClusterNode.transferLeadership). One per leadership:
 * created with it, ended when it ends.
 */
import type { ConsolaInstance as Logger } from "consola";
import type { Timings } from "./election.ts";
import type { Progress } from "./replication.ts";
import type { Clock, NodeId } from "./types.ts";

/**
 * The order in which voters are preferred as leader: the preferred one first (if it is among
 * `ids`), then the others by ascending ID. Eligibility (alive, may lead, caught up) is checked by
 * the caller; an ineligible preferred node is simply skipped, so the lowest-ID rule applies among
 * the rest.
 */
export function leadershipOrder(ids: readonly NodeId[], preferred: NodeId | null): NodeId[] {
  const rest = ids.filter((id) => id !== preferred).sort((a, b) => a - b);
  return preferred !== null && ids.includes(preferred) ? [preferred, ...rest] : rest;
}

/** What a handover reads from and does to the leadership it belongs to. */
export interface HandoverHost {
  readonly id: NodeId;
  readonly clock: Clock;
  readonly log: Logger;
  readonly t: Timings;
  /** How long the application may take to drain (NodeOptions.handoverDrainTimeoutMs). */
  readonly drainTimeoutMs: number;
  /** Still the leader (this handover's leadership has not ended). */
  leading(): boolean;
  stopped(): boolean;
  /** Leading only to hand over (ClusterNode.isStandIn): to any voter that may lead, once caught up. */
  standIn(): boolean;
  /** NodeOptions.failback: manual = no automatic handover (a witness still hands over). */
  readonly failback: "auto" | "manual";
  /** The preferred leader of the current config (null: none, the lowest ID is preferred). */
  preferred(): NodeId | null;
  /** This node is a voter (a learner never hands leadership to anyone). */
  isVoter(): boolean;
  otherVoters(): NodeId[];
  progressOf(id: NodeId): Progress | undefined;
  /** May voter `id` lead (by its own pings and our log shipping)? */
  mayLead(id: NodeId): boolean;
  /** NodeEvents.prepareHandover, read when a handover starts. */
  prepareHandover(): ((target: NodeId) => Promise<(() => void) | void>) | undefined;
  /** Writes pending entries and ships them. */
  flush(): void;
  /** Last LSN in the leader's log. */
  lastLsn(): number;
  replicateTo(id: NodeId): void;
  /** Steps down and tells `target` to campaign at once (TimeoutNow). */
  resign(target: NodeId): void;
}

/** A handover in progress: the application drains first, then the target is caught up and takes over. */
interface Handover {
  target: NodeId;
  phase: "drain" | "transfer";
  /** When the current phase started. */
  start: number;
  /** From prepareHandover: resumes the application's work. */
  resume: (() => void) | null;
  over: boolean;
}

export class Handovers {
  private current: Handover | null = null;
  private backoffMs: number;
  private nextAt: number;

  constructor(
    private readonly host: HandoverHost,
    leaderSince: number,
  ) {
    this.backoffMs = host.t.handoverBackoffMinMs;
    this.nextAt = host.standIn() ? leaderSince : leaderSince + host.t.handoverStableMs;
  }

  /** The node the leadership is being handed to (null: none). */
  target(): NodeId | null {
    return this.current?.target ?? null;
  }

  /** Appends are refused: the target is being caught up to take over. */
  transferring(): boolean {
    return this.current?.phase === "transfer";
  }

  /**
   * Each leader tick: times a handover out, or starts one to a voter ahead of this one in the
   * leadership order (leadershipOrder) that stayed caught up.
   */
  manage(now: number): void {
    const { host } = this;
    const h = this.current;
    if (h) {
      const limit = h.phase === "drain" ? host.drainTimeoutMs : host.t.handoverTimeoutMs;
      if (now - h.start > limit) {
        host.log.info(
          `node ${host.id}: handover to node ${h.target} timed out (${h.phase === "drain" ? "draining the application" : "target not caught up"}); keeping leadership`,
        );
        this.end(true);
      } else if (h.phase === "transfer") this.tryFinish();
      return;
    }
    if (now < this.nextAt || !host.isVoter()) return;
    const standIn = host.standIn();
    if (host.failback === "manual" && !standIn) return;
    const order = leadershipOrder(host.otherVoters(), host.preferred());
    const mine = leadershipOrder([...host.otherVoters(), host.id], host.preferred()).indexOf(host.id);
    for (const [i, id] of order.entries()) {
      if (!standIn && i >= mine) break;
      const pr = host.progressOf(id);
      if (!pr || !host.mayLead(id)) continue;
      const stableMs = standIn ? 0 : host.t.handoverStableMs;
      if (pr.caughtUpSince === null || now - pr.caughtUpSince < stableMs) continue;
      if (now - pr.lastReplyAt > host.t.heartbeatMs * 2) continue;
      host.log.info(
        `node ${host.id}: handing leadership over to node ${id} (${standIn ? "this node only stands in" : id === host.preferred() ? "preferred leader" : "lower ID"}, caught up)`,
      );
      this.start(id);
      return;
    }
  }

  /** A handover to `target` on request (transferLeadership); one to another target is ended first. */
  request(target: NodeId): void {
    if (this.current) {
      if (this.current.target === target) return;
      this.end(false);
    }
    this.host.log.info(`node ${this.host.id}: handing leadership over to node ${target} (requested)`);
    this.start(target);
  }

  /**
   * Starts a handover: first the application drains (events.prepareHandover, appends still
   * accepted), then the transfer phase refuses appends and finishes in tryFinish.
   */
  private start(target: NodeId): void {
    const { host } = this;
    const h: Handover = { target, phase: "drain", start: host.clock.now(), resume: null, over: false };
    this.current = h;
    const prepare = host.prepareHandover();
    if (!prepare) return this.beginTransfer(h);
    let drained: Promise<(() => void) | void>;
    try {
      drained = Promise.resolve(prepare(target));
    } catch (err) {
      drained = Promise.reject(err);
    }
    drained.then(
      (resume) => {
        if (typeof resume === "function") {
          if (h.over) resume();
          else h.resume = resume;
        }
        if (this.current === h && host.leading() && !host.stopped()) this.beginTransfer(h);
      },
      (err: unknown) => {
        if (this.current !== h) return;
        host.log.warn(
          `node ${host.id}: handover to node ${target} abandoned: the application could not drain (${err instanceof Error ? err.message : String(err)})`,
        );
        this.end(true);
      },
    );
  }

  private beginTransfer(h: Handover): void {
    h.phase = "transfer";
    h.start = this.host.clock.now();
    this.tryFinish();
  }

  /**
   * The handover is over (done, abandoned or leadership lost): the application resumes. `backoff`:
   * it failed, so the next automatic one waits longer.
   */
  end(backoff: boolean): void {
    const h = this.current;
    if (!h) return;
    this.current = null;
    h.over = true;
    if (backoff) {
      this.nextAt = this.host.clock.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.host.t.handoverBackoffMaxMs);
    }
    const resume = h.resume;
    h.resume = null;
    resume?.();
  }

  /** In the transfer phase: once the target holds our last entry, step down and let it take over. */
  tryFinish(): void {
    const { host } = this;
    const h = this.current;
    if (h?.phase !== "transfer" || !host.leading()) return;
    host.flush();
    const pr = host.progressOf(h.target);
    if (!pr) return;
    if (pr.match < host.lastLsn()) return host.replicateTo(h.target);
    // Step down before the target can win: there is never a moment with two leaders.
    host.resign(h.target);
  }
}
