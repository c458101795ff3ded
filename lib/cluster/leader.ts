/**
 * One leadership: created when this node becomes leader, dropped when it steps down, so nothing of
 * it outlives its term. It holds each follower's progress (replication.ts has the rules), the
 * entries appended but not yet written, the acknowledgements (acks.ts) and the handover (handover.ts);
 * it ships entries, advances the commit LSN and manages the voter set.
 *
 * Group commit: every append of one turn of the event loop shares one log write. A new batch goes
 * to followers before the leader's own log write, so both sync in parallel. Followers learn a new
 * commit LSN at once, not at the next heartbeat: when it advances, the leader tells every follower
 * that would learn something, coalesced per turn of the event loop.
 */
import type { ConsolaInstance as Logger } from "consola";
import { WolfError } from "../common/errors.ts";
import type { Configuration } from "./configuration.ts";
import { encodeMembers } from "./configuration.ts";
import { MembershipChanges, replicationTargets } from "./membership-changes.ts";
import { majority, type Timings } from "./election.ts";
import { AckWaiters } from "./acks.ts";
import { Handovers } from "./handover.ts";
import type { Membership } from "./membership.ts";
import { buildAppend, commitCandidate, lastTerm, Progress, termAt, type ReplicationLimits } from "./replication.ts";
import {
  NotLeaderError,
  type AppendReply,
  type AppendRequest,
  type Clock,
  type ClusterMembers,
  type EntryRef,
  type LogEntry,
  type LogStore,
  type Lsn,
  type NodeId,
  type Term,
  type Transport,
} from "./types.ts";

/** What a leadership reads from and does to its node. */
export interface LeaderHost {
  readonly id: NodeId;
  readonly store: LogStore;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly membership: Membership;
  readonly config: Configuration;
  readonly limits: ReplicationLimits;
  readonly t: Timings;
  readonly log: Logger;
  /** ClusterNode.isStandIn: leading only to hand over. */
  standIn(): boolean;
  readonly opts: {
    lagEntries: number;
    autoJoin: boolean;
    deadAfterMs: number;
    minVoters: number;
    handoverDrainTimeoutMs: number;
    failback: "auto" | "manual";
  };
  term(): Term;
  leader(): NodeId | null;
  commitLsn(): Lsn;
  /** The commit LSN advanced to `lsn` (committed config and applying follow). */
  commitTo(lsn: Lsn): void;
  quorum(): boolean;
  stopped(): boolean;
  becomeFollower(term: Term, leader: NodeId | null): void;
  /** Steps down; `successor` is told to campaign at once (TimeoutNow). */
  resign(successor?: NodeId): void;
  /** NodeEvents.prepareHandover, read when a handover starts. */
  prepareHandover(): ((target: NodeId) => Promise<(() => void) | void>) | undefined;
}

export class LeaderState {
  /** Set when the leadership ended: late timers and replies of this leadership do nothing. */
  private dropped = false;
  private readonly progress = new Map<NodeId, Progress>();
  private readonly since: number;
  /** LSN of this leadership's first entry (its no-op): every entry from here on is of our term. */
  private readonly termStartLsn: Lsn;
  private pending: LogEntry[] = [];
  private flushScheduled = false;
  private commitPushScheduled = false;
  private readonly handovers: Handovers;
  /** Voter-set and preferred-leader changes (membership-changes.ts). */
  private readonly changes: MembershipChanges;
  /** The acknowledgements waited for (waitFor) and counted (ackedBy) in this leadership. */
  readonly acks: AckWaiters;

  constructor(private readonly host: LeaderHost) {
    this.since = host.clock.now();
    const last = host.store.lastLsn();
    this.termStartLsn = last + 1;
    for (const id of replicationTargets(host.id, host.config, host.membership))
      this.progress.set(id, new Progress(id, last, this.since));
    this.acks = new AckWaiters({
      id: host.id,
      clock: host.clock,
      store: host.store,
      term: () => host.term(),
      leader: () => host.leader(),
      commitLsn: () => host.commitLsn(),
      otherVoters: () => host.config.otherVoters(),
      matchOf: (id) => this.durableMatch(id),
      ended: () => this.dropped,
      lastLsn: () => this.lastLsn(),
      termOfEntry: (lsn) => this.termOfEntry(lsn),
    });
    this.handovers = new Handovers(
      {
        id: host.id,
        clock: host.clock,
        log: host.log,
        t: host.t,
        drainTimeoutMs: host.opts.handoverDrainTimeoutMs,
        standIn: () => host.standIn(),
        failback: host.opts.failback,
        preferred: () => host.config.members().preferred ?? null,
        leading: () => !this.dropped,
        stopped: () => host.stopped(),
        isVoter: () => host.config.isVoter(),
        otherVoters: () => host.config.otherVoters(),
        progressOf: (id) => this.progress.get(id),
        mayLead: (id) => this.mayLead(id),
        prepareHandover: () => host.prepareHandover(),
        flush: () => this.flush(),
        lastLsn: () => host.store.lastLsn(),
        replicateTo: (id) => this.replicateTo(id, "data"),
        resign: (target) => host.resign(target),
      },
      this.since,
    );
    this.changes = new MembershipChanges({
      id: host.id,
      config: host.config,
      membership: host.membership,
      t: host.t,
      log: host.log,
      opts: host.opts,
      since: this.since,
      termStartLsn: this.termStartLsn,
      commitLsn: () => host.commitLsn(),
      progress: () => this.progress.values(),
      progressOf: (id) => this.progress.get(id),
      appendConfig: (members) => this.appendConfig(members),
    });
  }

  /** A no-op in our own term lets everything before it commit (Raft §5.4.2). */
  begin(): void {
    this.pending.push({ lsn: this.termStartLsn, term: this.host.term(), kind: "noop", data: new Uint8Array(0) });
    this.flush();
  }

  /** The leadership ended: forget progress and unwritten entries, end the handover, reject the waits. */
  drop(err: Error): void {
    this.dropped = true;
    this.progress.clear();
    this.pending = [];
    this.handovers.end(false);
    this.changes.drop(err);
    this.acks.failAll(err);
  }

  /** Entries appended but not written to the log yet. */
  pendingCount(): number {
    return this.pending.length;
  }

  private lastLsn(): Lsn {
    return this.host.store.lastLsn() + this.pending.length;
  }

  /** Term of the entry at `lsn`, pending ones included (undefined if the log does not hold it). */
  private termOfEntry(lsn: Lsn): Term | undefined {
    const stored = this.host.store.lastLsn();
    if (lsn > stored) return this.pending[lsn - stored - 1]?.term;
    return termAt(this.host.store, lsn);
  }

  /** Appends are refused: leadership is being handed over (target is being caught up). */
  transferring(): boolean {
    return this.handovers.transferring();
  }

  handoverTarget(): NodeId | null {
    return this.handovers.target();
  }

  progressOf(id: NodeId): Progress | undefined {
    return this.progress.get(id);
  }

  /** ClusterNode.append on the leader. */
  append(data: Uint8Array): EntryRef {
    const { host } = this;
    const target = this.handovers.target();
    if (target !== null && this.handovers.transferring()) {
      throw new NotLeaderError(`node ${host.id} is handing leadership over to node ${target}`, target);
    }
    const lsn = this.lastLsn() + 1;
    const term = host.term();
    this.pending.push({ lsn, term, kind: "data", data });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      host.clock.setTimeout(() => {
        this.flushScheduled = false;
        this.flush();
      }, 0);
    }
    return { lsn, term };
  }

  /** Each heartbeat: write, heartbeat every follower, check quorum, manage voters and handover, check waits. */
  tick(now: number): void {
    this.flush();
    for (const id of this.progress.keys()) this.replicateTo(id, "heartbeat");
    if (this.checkQuorum(now)) {
      this.changes.manage(now);
      this.handovers.manage(now);
    }
    this.acks.check();
  }

  /** A ping from `id`: a node we do not replicate to yet becomes a target (a learner until added). */
  onPeerSeen(id: NodeId, now: number): void {
    if (this.progress.has(id)) return;
    this.progress.set(id, new Progress(id, this.host.store.lastLsn(), now));
    this.replicateTo(id, "heartbeat");
  }

  /** `id` was forgotten (silent for dead_after_ms). */
  forget(id: NodeId): void {
    this.progress.delete(id);
  }

  /** Within the lease: a majority answered recently and no handover is transferring leadership. */
  inLease(now: number): boolean {
    return !this.handovers.transferring() && this.hasQuorumContact(now, this.host.t.electionBaseMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Handing leadership on

  /** The most caught-up voter that answered recently and may lead. */
  bestSuccessor(): Progress | undefined {
    const now = this.host.clock.now();
    let best: Progress | undefined;
    for (const id of this.host.config.otherVoters()) {
      const pr = this.progress.get(id);
      if (!pr || !this.mayLead(id) || now - pr.repliedAt > this.host.t.electionBaseMs) continue;
      if (!best || pr.match > best.match) best = pr;
    }
    return best;
  }

  /** ClusterNode.transferLeadership on the leader: checks the target and starts the handover. */
  transfer(to?: NodeId): NodeId {
    const { host } = this;
    let target = to;
    if (target === undefined) {
      const best = this.bestSuccessor();
      if (!best)
        throw new WolfError("state", `node ${host.id} has no live follower that may lead to hand leadership to`);
      target = best.id;
    } else if (target === host.id) {
      throw new WolfError("state", `node ${host.id} already leads`);
    } else if (!host.config.isVoter(target) || !this.progress.has(target)) {
      throw new WolfError("state", `node ${target} is not a voter this leader replicates to`);
    } else if (!this.mayLead(target)) {
      throw new WolfError(
        "state",
        `node ${target} may not lead right now (never_leader, held back or needs a migration)`,
      );
    }
    this.handovers.request(target);
    return target;
  }

  /** Leader's view: may voter `id` lead (by its own pings and our log shipping)? */
  private mayLead(id: NodeId): boolean {
    const info = this.host.membership.peers.get(id)?.info;
    const pr = this.progress.get(id);
    return (
      this.host.config.isVoter(id) &&
      !!info &&
      !info.neverLeader &&
      info.state !== "NeedsMigration" &&
      !pr?.needsMigration
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Voter set and preferred leader (membership-changes.ts)

  /** ClusterNode.setPreferredLeader on the leader: resolves once the config entry carrying it committed. */
  prefer(id: NodeId | null): Promise<void> {
    return this.changes.prefer(id, this.host.clock.now());
  }

  private appendConfig(members: ClusterMembers): void {
    this.pending.push({
      lsn: this.lastLsn() + 1,
      term: this.host.term(),
      kind: "config",
      data: encodeMembers(members),
    });
    this.flush();
  }

  // ---------------------------------------------------------------------------------------------
  // Replication

  flush(): void {
    const { host } = this;
    if (this.dropped || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.shipAhead(batch);
    host.store.append(batch);
    host.config.onEntriesAppended(batch);
    for (const id of replicationTargets(host.id, host.config, host.membership)) {
      if (!this.progress.has(id)) this.progress.set(id, new Progress(id, host.store.lastLsn(), host.clock.now()));
    }
    for (const id of this.progress.keys()) this.replicateTo(id, "data");
    this.advanceCommit();
  }

  /**
   * Sends a batch that is about to be written to every follower waiting for exactly it, before the
   * leader's own write: followers store it while the leader syncs its log instead of after. Safe
   * (Raft lets the leader persist in parallel): the leader counts itself toward commit and "none"
   * acknowledgements only with what its log holds durably.
   */
  private shipAhead(batch: LogEntry[]): void {
    const { store, limits } = this.host;
    const first = batch[0]!.lsn;
    if (first !== store.lastLsn() + 1) return;
    const prevTerm = lastTerm(store);
    const leaderLastLsn = batch[batch.length - 1]!.lsn;
    for (const pr of this.progress.values()) {
      if (pr.needsMigration || pr.probing || pr.next !== first) continue;
      for (let i = 0; i < batch.length && pr.inflight < limits.maxInflight; ) {
        let j = i;
        let bytes = 0;
        while (
          j < batch.length &&
          j - i < limits.maxBatchEntries &&
          (j === i || bytes + batch[j]!.data.length <= limits.maxBatchBytes)
        ) {
          bytes += batch[j]!.data.length;
          j++;
        }
        const entries = batch.slice(i, j);
        const prev = i === 0 ? { lsn: first - 1, term: prevTerm } : batch[i - 1]!;
        this.sendAppend(pr, {
          type: "append",
          term: this.host.term(),
          prevLsn: prev.lsn,
          prevTerm: prev.term,
          entries,
          commitLsn: this.host.commitLsn(),
          leaderLastLsn,
        });
        pr.next += entries.length;
        i = j;
      }
    }
  }

  /**
   * Sends what `id` is missing (pipelined). `heartbeat`: something even if nothing is missing.
   * `commit`: also an empty append if that is the only way the follower learns a newer commit LSN.
   */
  private replicateTo(id: NodeId, mode: "data" | "commit" | "heartbeat"): void {
    const { host } = this;
    const { store, limits } = host;
    const heartbeat = mode === "heartbeat";
    const pr = this.progress.get(id);
    if (!pr) return;
    const now = host.clock.now();
    if (pr.needsMigration) {
      // Probe at our pruned base: a follower that lacks it needs a migration; one that has it
      // (it was migrated meanwhile) answers ok and normal replication resumes.
      if (now - pr.migrateNoticeAt >= host.t.heartbeatMs) {
        pr.migrateNoticeAt = now;
        const base = store.base();
        this.sendAppend(pr, {
          type: "append",
          term: host.term(),
          prevLsn: base.lsn,
          prevTerm: base.term,
          entries: [],
          commitLsn: host.commitLsn(),
          leaderLastLsn: store.lastLsn(),
          migrate: true,
        });
      }
      return;
    }
    let sent = false;
    const last = store.lastLsn();
    while (pr.next <= last && pr.inflight < (pr.probing ? 1 : limits.maxInflight)) {
      const req = buildAppend(store, host.term(), host.commitLsn(), pr.next, limits);
      if (!req) {
        pr.needsMigration = true;
        host.log.warn(`node ${id} needs entries from ${pr.next}, which were pruned: it needs a migration`);
        return this.replicateTo(id, mode);
      }
      if (!pr.probing) pr.next += req.entries.length;
      this.sendAppend(pr, req);
      sent = true;
      if (pr.probing) break;
    }
    if (!sent && (heartbeat || (mode === "commit" && this.commitNews(pr)))) {
      // An empty append keeps the lease and carries the commit LSN. With nothing in flight it
      // probes at next - 1 (finds where a new follower's log ends); with appends in flight it
      // checks the known match point, which cannot fail because of those in-flight entries.
      const prev = pr.inflight === 0 ? pr.next - 1 : Math.max(pr.match, store.base().lsn);
      const req = buildAppend(store, host.term(), host.commitLsn(), prev + 1, { ...limits, maxBatchEntries: 0 });
      if (req) this.sendAppend(pr, { ...req, entries: [] });
      else if (!pr.needsMigration) {
        pr.needsMigration = true;
        this.replicateTo(id, mode);
      }
    }
  }

  private sendAppend(pr: Progress, req: AppendRequest): void {
    const { host } = this;
    pr.inflight++;
    pr.commitSent = Math.max(pr.commitSent, Math.min(req.commitLsn, req.prevLsn + req.entries.length));
    const term = host.term();
    host.transport.request(pr.id, req, host.t.requestTimeoutMs, (reply) => {
      if (host.stopped() || this.dropped || host.term() !== term || this.progress.get(pr.id) !== pr) {
        if (reply && reply.term > host.term()) host.becomeFollower(reply.term, null);
        return;
      }
      pr.inflight = Math.max(0, pr.inflight - 1);
      if (reply?.type !== "append_reply") {
        if (req.entries.length > 0) {
          pr.probing = true;
          pr.next = pr.match + 1;
        }
        return;
      }
      this.onAppendReply(pr, req, reply);
    });
  }

  private onAppendReply(pr: Progress, req: AppendRequest, reply: AppendReply): void {
    const { host } = this;
    if (reply.term > host.term()) return host.becomeFollower(reply.term, null);
    if (reply.term < host.term()) return;
    const now = host.clock.now();
    pr.lastReplyAt = pr.repliedAt = now;
    host.membership.heard(pr.id, now);
    if (reply.epoch !== undefined && reply.epoch !== pr.epoch) {
      if (pr.epoch !== undefined) {
        // Another log than the one that acknowledged pr.match (restarted, or restored from a
        // dump below it): learn where it stands again instead of taking its refusals as stale.
        pr.match = 0;
        pr.commitSent = 0;
        pr.caughtUpSince = null;
        pr.probing = true;
      }
      pr.epoch = reply.epoch;
    }
    if (reply.needsMigration) {
      pr.needsMigration = true;
      return;
    }
    if ((reply.volatile === true) !== pr.volatile) {
      pr.volatile = reply.volatile === true;
      if (pr.volatile)
        host.log.warn(
          `node ${pr.id} does not fsync its log (wal.fsync = false): its copies count for no commit or ack`,
        );
    }
    if (reply.ok) {
      if (pr.needsMigration) {
        pr.needsMigration = false;
        pr.probing = true;
      }
      if (reply.matchLsn > pr.match) pr.match = reply.matchLsn;
      if (pr.next <= pr.match) pr.next = pr.match + 1;
      if (reply.matchLsn >= pr.next - 1) pr.probing = false;
      const caughtUp = host.store.lastLsn() - pr.match <= host.opts.lagEntries;
      if (!caughtUp) pr.caughtUpSince = null;
      else if (pr.caughtUpSince === null) pr.caughtUpSince = now;
      this.advanceCommit();
      if (this.handovers.target() === pr.id) this.handovers.tryFinish();
      if (!this.dropped) {
        this.replicateTo(pr.id, "data");
        if (this.commitNews(pr)) this.scheduleCommitPush();
      }
    } else {
      if (reply.hintLsn < pr.match) return; // stale: sent before a later append succeeded
      pr.probing = true;
      if (reply.hintLsn > req.prevLsn) {
        // The follower's log starts above what we sent (restored from a dump): continue after its
        // base, where the consistency check can run. It does not need a migration (any more).
        pr.needsMigration = false;
        pr.next = reply.hintLsn + 1;
      } else pr.next = Math.max(pr.match + 1, Math.min(pr.next, reply.hintLsn + 1));
      this.replicateTo(pr.id, "data");
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Quorum and commit

  private hasQuorumContact(now: number, withinMs: number): boolean {
    const { config } = this.host;
    if (!this.host.quorum()) return true;
    let alive = config.isVoter() ? 1 : 0;
    for (const id of config.otherVoters()) {
      const pr = this.progress.get(id);
      if (pr && now - pr.lastReplyAt <= withinMs) alive++;
    }
    return alive >= majority(config.voterIds().all.length);
  }

  /** Steps down if a majority has not answered for checkQuorumMs. Returns whether still leader. */
  private checkQuorum(now: number): boolean {
    const { host } = this;
    if (now - this.since < host.t.checkQuorumMs) return true;
    if (this.hasQuorumContact(now, host.t.checkQuorumMs)) return true;
    host.log.warn(`node ${host.id}: lost contact with a majority; stepping down (term ${host.term()})`);
    host.becomeFollower(host.term(), null);
    return false;
  }

  /** Highest LSN follower `id` stores durably (0 for a follower whose log does not fsync). */
  private durableMatch(id: NodeId): Lsn {
    const pr = this.progress.get(id);
    return pr && !pr.volatile ? pr.match : 0;
  }

  /** Followers that count as alive for quorum-off commit (never for acknowledgements). */
  private aliveFollowers(now: number): NodeId[] {
    return this.host.config.otherVoters().filter((id) => {
      const pr = this.progress.get(id);
      if (!pr || pr.needsMigration) return false;
      const heard = Math.max(pr.repliedAt, this.host.membership.peers.get(id)?.lastHeard ?? -Infinity);
      return now - heard <= this.host.t.electionBaseMs;
    });
  }

  private advanceCommit(): void {
    const { host } = this;
    if (this.dropped) return;
    const quorum = host.quorum();
    const now = host.clock.now();
    const voters = quorum ? host.config.otherVoters() : this.aliveFollowers(now);
    const matches = voters.map((id) => this.durableMatch(id));
    // The leader's own copy counts only if its log is durable (or there is nobody else to count).
    if (host.config.isVoter() && (host.store.durable !== false || voters.length === 0))
      matches.push(host.store.lastLsn());
    const candidate = commitCandidate(matches, quorum, host.config.voterIds().all.length);
    // Only an entry of our own term commits by counting (Raft §5.4.2); ours start at termStartLsn.
    if (candidate > host.commitLsn() && candidate >= this.termStartLsn) {
      host.commitTo(candidate);
      this.scheduleCommitPush();
    }
    this.acks.check();
  }

  /**
   * Would an empty append now tell this follower a higher commit LSN than it has been sent? It
   * learns min(commit, the append's match point): next - 1 with nothing in flight (what a heartbeat
   * probes), else the known match (see replicateTo).
   */
  private commitNews(pr: Progress): boolean {
    if (pr.needsMigration) return false;
    return (
      Math.min(
        this.host.commitLsn(),
        pr.inflight === 0 ? pr.next - 1 : Math.max(pr.match, this.host.store.base().lsn),
      ) > pr.commitSent
    );
  }

  /**
   * Followers learn the new commit LSN now rather than with the next heartbeat, so they apply
   * right away: once per turn of the event loop (after a commit advanced, or a follower's reply
   * made news deliverable), every follower that would learn something gets an append carrying it
   * (an empty one if nothing else is due).
   */
  private scheduleCommitPush(): void {
    if (this.commitPushScheduled) return;
    this.commitPushScheduled = true;
    this.host.clock.setTimeout(() => {
      this.commitPushScheduled = false;
      if (this.dropped || this.host.stopped()) return;
      for (const id of this.progress.keys()) this.replicateTo(id, "commit");
    }, 0);
  }
}
