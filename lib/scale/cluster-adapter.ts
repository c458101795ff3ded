/**
 * What wolf scale needs from a ClusterNode that its public API does not offer (yet): step down,
 * refuse to lead while the local MariaDB is down, mark NeedsMigration on divergence found by
 * scale, retry applying after an operator fixed the cause, and hand leadership to a chosen node.
 *
 * It reaches into the node's private members, all named below, so a rename in lib/cluster breaks
 * loudly here (and in test/unit/scale/cluster-adapter.test.ts) rather than silently.
 * TODO(lib/cluster): public stepDown()/setEligible()/markNeedsMigration()/retryApply()/handOverTo().
 */
import type { ClusterNode } from "../cluster/node.ts";
import type { Progress } from "../cluster/replication.ts";
import type { NodeId, Term, Transport } from "../cluster/types.ts";
import { logger } from "../common/log.ts";

interface NodeInternals {
  role: string;
  term: Term;
  opts: { neverLeader: boolean };
  needsMigration: boolean;
  applyError: string | null;
  applying: boolean;
  handover: { target: NodeId; start: number } | null;
  nextHandoverAt: number;
  progress: Map<NodeId, Progress>;
  transport: Transport;
  clock: { now(): number };
  becomeFollower(term: Term, leader: NodeId | null): void;
  updateSelfState(): void;
  applyCommitted(): void;
  tryFinishHandover(): void;
  replicateTo(id: NodeId, heartbeat: boolean): void;
  commitLsn: number;
}

const log = logger("scale");

export class ClusterControl {
  private readonly n: NodeInternals;
  private readonly configuredNeverLeader: boolean;
  private readonly holds = new Set<string>();

  constructor(readonly node: ClusterNode) {
    this.n = node as unknown as NodeInternals;
    for (const m of ["becomeFollower", "updateSelfState", "applyCommitted", "tryFinishHandover", "replicateTo"] as const) {
      if (typeof this.n[m] !== "function") throw new Error(`lib/cluster changed: ClusterNode.${m} is gone (update lib/scale/cluster-adapter.ts)`);
    }
    if (typeof this.n.opts?.neverLeader !== "boolean" || !(this.n.progress instanceof Map) || typeof this.n.nextHandoverAt !== "number") {
      throw new Error("lib/cluster changed: ClusterNode internals differ (update lib/scale/cluster-adapter.ts)");
    }
    this.configuredNeverLeader = this.n.opts.neverLeader;
  }

  /**
   * Keep this node from leading while `reason` holds (MariaDB down, demoted, migrating). Peers see
   * it as never_leader in its pings, so nobody hands leadership to it either.
   */
  hold(reason: string, on: boolean): void {
    if (on) this.holds.add(reason);
    else this.holds.delete(reason);
    this.n.opts.neverLeader = this.configuredNeverLeader || this.holds.size > 0;
  }

  held(): string[] {
    return [...this.holds];
  }

  /**
   * Leader only: stop leading now. The most caught-up live follower is told to campaign at once
   * (TimeoutNow), so the cluster has a new leader in about one round trip instead of an election
   * timeout; this node steps down before that node can win (never two leaders).
   */
  stepDown(why: string): void {
    if (this.n.role !== "leader") return;
    const now = this.n.clock.now();
    let best: Progress | undefined;
    for (const pr of this.n.progress.values()) {
      if (pr.needsMigration || now - pr.repliedAt > 2000) continue;
      if (!best || pr.match > best.match) best = pr;
    }
    log.warn(`node ${this.node.id}: stepping down (${why})${best ? `; asking node ${best.id} to take over` : ""}`);
    if (best) this.n.transport.send(best.id, { type: "timeout_now", term: this.n.term });
    this.n.becomeFollower(this.n.term, null);
  }

  /**
   * Leader: no automatic handover to a lower ID. The cluster core's handover stops appends at
   * once, which would strand transactions committed in MariaDB but not yet captured; scale hands
   * over itself after draining writes (ScaleDaemon.preferLowerId). Call on every leadership start.
   */
  suppressAutoHandover(): void {
    this.n.nextHandoverAt = Number.POSITIVE_INFINITY;
  }

  /** Leader only: hand leadership to `target` once it holds every entry (the clean handover). */
  handOverTo(target: NodeId): boolean {
    if (this.n.role !== "leader" || !this.n.progress.has(target)) return false;
    this.n.handover = { target, start: this.n.clock.now() };
    this.n.tryFinishHandover();
    return true;
  }

  /**
   * Leader: tell followers the new commit LSN now instead of with the next heartbeat, so they
   * apply right away (coalesced: one empty append per follower per turn of the event loop).
   */
  pushCommit(): void {
    if (this.pushScheduled || this.n.role !== "leader") return;
    this.pushScheduled = true;
    setImmediate(() => {
      this.pushScheduled = false;
      if (this.n.role !== "leader" || this.n.commitLsn <= this.pushedCommit) return;
      this.pushedCommit = this.n.commitLsn;
      for (const id of this.n.progress.keys()) this.n.replicateTo(id, true);
    });
  }
  private pushScheduled = false;
  private pushedCommit = 0;

  /** Marks this node NeedsMigration: it stops applying and accepting entries, and cannot lead. */
  markNeedsMigration(): void {
    if (this.n.role === "leader") this.n.becomeFollower(this.n.term, null);
    this.n.needsMigration = true;
    this.n.updateSelfState();
  }

  needsMigration(): boolean {
    return this.n.needsMigration;
  }

  /** Whether the FSM is in the middle of applying an entry. */
  applying(): boolean {
    return this.n.applying;
  }

  /** After the cause of an apply error was fixed: clear it and apply again (the same entry first). */
  retryApply(): boolean {
    if (this.n.applyError === null) return false;
    this.n.applyError = null;
    this.n.applyCommitted();
    return true;
  }
}
