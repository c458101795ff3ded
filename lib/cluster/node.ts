/**
 * One cluster node, wired to a Transport, LogStore, StableStore, FSM, Clock and Rng (node-options.ts).
 * This file holds the term, vote and role, the public API and the role changes; the parts own their
 * state and reach back through a host interface declared on their side: elections in campaign.ts
 * (rules in election.ts), a leadership in leader.ts (with acks.ts and handover.ts; log shipping
 * rules in replication.ts; voter-set and preferred-leader changes in membership-changes.ts), the
 * follower's side in follower.ts, pings in pings.ts (membership.ts), the voter set in
 * configuration.ts, applying in apply-loop.ts. All runs from timers and messages on the injected clock.
 *
 * Use (wolf scale):
 *   const node = new ClusterNode(options, { transport, logStore, stableStore, fsm });
 *   node.start();                       // node.bootstrap([...]) once for a brand new cluster
 *   const entry = node.append(bytes);   // leader only; { lsn, term }; throws NotLeaderError elsewhere
 *   await node.waitFor(entry, "one");   // none | one | majority | all; node.status() for `wolf ctl`
 * Control, for applications with their own view of health (scale: MariaDB down, divergence):
 *   node.setEligible(false, "database down")  // keep this node from leading (peers see never_leader)
 *   node.stepDown("why")                      // leader: stop now; the best follower takes over at once
 *   node.transferLeadership(to?)              // leader: clean handover (drains via events.prepareHandover)
 *   await node.setPreferredLeader(id | null)  // leader: replicated preference (ranks first, handback to it)
 *   node.markNeedsMigration("why", keepLog?)  // stop applying (and storing, unless keepLog) until migrated()
 *   node.retryApply()                         // after an apply error's cause was fixed
 */
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { ApplyLoop, type ApplyHost } from "./apply-loop.ts";
import { Campaign, type CampaignHost } from "./campaign.ts";
import { Follower, type FollowerHost } from "./follower.ts";
import type { NodeDeps, NodeEvents, NodeOptions } from "./node-options.ts";
import { Pings, type PingHost } from "./pings.ts";
import { Recovery } from "./recovery.ts";
import { realClock } from "./clock.ts";
import { Configuration, encodeMembers } from "./configuration.ts";
import { quorumOn, timings, type Timings } from "./election.ts";
import { LeaderState, type LeaderHost } from "./leader.ts";
import { Membership, membershipThresholds } from "./membership.ts";
import { DEFAULT_LIMITS, lastTerm, type ReplicationLimits } from "./replication.ts";
import { type ClusterStatus, peerStatuses } from "./status.ts";
import {
  NotLeaderError,
  type AckLevel,
  type Clock,
  type ClusterMembers,
  type EntryRef,
  type LogEntry,
  type LogStore,
  type Lsn,
  type Message,
  type NodeId,
  type Rng,
  type Role,
  type StableStore,
  type Term,
  type TimerHandle,
  type Transport,
} from "./types.ts";

export { decodeMembers, encodeMembers } from "./configuration.ts";
export type { NodeDeps, NodeEvents, NodeOptions } from "./node-options.ts";

export class ClusterNode {
  readonly id: NodeId;
  readonly t: Timings;
  private readonly log = logger("cluster");
  private readonly transport: Transport;
  private readonly store: LogStore;
  private readonly stable: StableStore;
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly opts: Required<Omit<NodeOptions, "limits">>;
  /** Why this node must not lead right now (setEligible); empty = it may. */
  private readonly holds = new Set<string>();
  readonly membership: Membership;
  events: NodeEvents = {};
  private readonly config: Configuration;
  private readonly applier: ApplyLoop;
  private readonly campaign: Campaign;
  private readonly follower: Follower;
  private readonly pings: Pings;
  /** What the parts (leadership, elections, applying) read from and do to this node. */
  private readonly host: LeaderHost & CampaignHost & FollowerHost & PingHost & ApplyHost;
  /** This node's leadership: created in becomeLeader, dropped in becomeFollower (null: not leading). */
  private leading: LeaderState | null = null;

  // Persistent (mirrored in the StableStore, with config.committed).
  private term: Term = 0;
  private votedFor: NodeId | null = null;

  // Volatile.
  private role: Role = "follower";
  private leaderId: NodeId | null = null;
  private commitLsn: Lsn = 0;
  /** Why this node needs a migration (null: it does not). */
  private migrationReason: string | null = null;
  private readonly recovery: Recovery;
  /** markNeedsMigration(…, keepLog): the log is sound, only the application's state is not. */
  private migrationKeepsLog = false;
  private started = false;
  private stopped = false;
  private tickTimer: TimerHandle | null = null;

  constructor(options: NodeOptions, deps: NodeDeps) {
    this.id = options.id;
    this.opts = {
      id: options.id,
      addr: options.addr ?? "",
      heartbeatMs: options.heartbeatMs ?? 500,
      quorum: options.quorum ?? "auto",
      deadAfterMs: options.deadAfterMs ?? 30_000,
      minVoters: options.minVoters ?? 3,
      neverLeader: options.neverLeader ?? false,
      witness: options.witness ?? false,
      bootstrapExpect: options.bootstrapExpect ?? 0,
      autoJoin: options.autoJoin ?? true,
      lagEntries: options.lagEntries ?? 1000,
      handoverDrainTimeoutMs: options.handoverDrainTimeoutMs ?? 30_000,
      failback: options.failback ?? "auto",
    };
    const limits: ReplicationLimits = { ...DEFAULT_LIMITS, ...options.limits };
    this.t = timings(this.opts.heartbeatMs);
    this.transport = deps.transport;
    this.store = deps.logStore;
    this.stable = deps.stableStore;
    this.clock = deps.clock ?? realClock;
    this.rng = deps.rng ?? Math.random;
    this.membership = new Membership(this.id, membershipThresholds(this.opts.heartbeatMs, this.opts.deadAfterMs));

    const hs = this.stable.get();
    this.term = hs.term;
    this.votedFor = hs.votedFor;
    this.recovery = new Recovery(this.id, hs, this.store, this.log, () => this.persist());
    this.config = new Configuration(this.id, hs.committedConfig, this.store, (m) => this.knowVoters(m));
    this.host = {
      id: this.id,
      store: this.store,
      transport: this.transport,
      clock: this.clock,
      rng: this.rng,
      membership: this.membership,
      config: this.config,
      limits,
      t: this.t,
      log: this.log,
      opts: this.opts,
      term: () => this.term,
      role: () => this.role,
      leader: () => this.leaderId,
      votedFor: () => this.votedFor,
      lastLeaderContact: () => this.follower.lastLeaderContact,
      applied: () => this.applier.applied,
      migrationReason: () => this.migrationReason,
      storesWhileMigrating: () => this.migrationKeepsLog,
      requireMigration: (reason) => {
        this.migrationKeepsLog = false;
        this.migrationReason = reason;
        this.log.warn(`node ${this.id}: ${reason}; it needs a migration`);
      },
      updateSelfState: () => this.pings.update(),
      addr: this.opts.addr,
      lagEntries: this.opts.lagEntries,
      bootstrapExpect: this.opts.bootstrapExpect,
      neverLeader: () => this.opts.neverLeader || this.opts.witness || this.holds.size > 0,
      followerLag: () => this.follower.lag(),
      onPeerSeen: (id, now) => this.leading?.onPeerSeen(id, now),
      bootstrap: (voters) => this.bootstrap(voters),
      commitLsn: () => this.commitLsn,
      commitTo: (lsn) => this.commitTo(lsn),
      quorum: () => this.quorum(),
      stopped: () => this.stopped,
      mayApply: () => !this.stopped && this.migrationReason === null,
      mayCampaign: () => this.canCampaign(),
      inLease: (from) => this.inLease(from),
      recovering: () => this.recovery.active,
      standIn: () => this.isStandIn(),
      caughtUp: () => this.recovery.caughtUp(),
      vote: (id) => {
        this.votedFor = id;
        this.persist();
      },
      becomeCandidate: () => this.becomeCandidate(),
      becomeLeader: () => this.becomeLeader(),
      becomeFollower: (term, leader) => this.becomeFollower(term, leader),
      forgetLeader: () => this.setLeader(null),
      resign: (successor) => this.resign(successor),
      prepareHandover: () => this.events.prepareHandover,
    };
    this.campaign = new Campaign(this.host);
    this.follower = new Follower(this.host);
    this.applier = new ApplyLoop(this.host, this.store, deps.fsm, this.log);
    this.commitLsn = Math.max(this.applier.applied, this.store.base().lsn);
    this.pings = new Pings(this.host);
    this.knowVoters(this.config.members());
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  start(): void {
    if (this.started) return;
    this.started = true;
    this.recovery.start();
    this.transport.setHandler((from, msg, reply) => this.onMessage(from, msg, reply));
    // A sole voter has nobody to wait for.
    this.campaign.resetTimer(this.config.isVoter() && this.config.voterIds().all.length === 1);
    this.tickTimer = this.clock.setTimeout(() => this.tick(), 0);
    this.applier.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.tickTimer) this.clock.clearTimeout(this.tickTimer);
    this.tickTimer = null;
    this.campaign.stopTimer();
    this.transport.setHandler(() => {});
    this.leading?.acks.failAll(new NotLeaderError("node stopped", null));
  }

  /**
   * Writes the initial voter set as entry 1 on a node with an empty log (a brand new cluster).
   * Identical on every node it is called on; returns false if the log is not empty.
   */
  bootstrap(voters: { id: NodeId; addr: string }[]): boolean {
    if (this.store.lastLsn() !== 0 || this.store.base().lsn !== 0 || this.term > 1) return false;
    const members: ClusterMembers = { voters: [...voters].sort((a, b) => a.id - b.id) };
    this.recovery.end();
    this.term = Math.max(this.term, 1);
    this.persist();
    const entry: LogEntry = { lsn: 1, term: 1, kind: "config", data: encodeMembers(members) };
    this.store.append([entry]);
    this.config.addBootstrap({ lsn: 1, members });
    this.knowVoters(members);
    if (this.pings.state === "Joining" && this.config.isVoter()) this.pings.state = "Syncing";
    this.log.info(`bootstrapped a new cluster with voters ${members.voters.map((v) => v.id).join(", ")}`);
    if (this.started) this.campaign.resetTimer(true);
    return true;
  }

  /** Tell the node about a peer (from discovery or static config). */
  addPeer(id: NodeId, addr: string): void {
    if (id === this.id) return;
    this.knowPeer(id, addr);
  }

  private knowPeer(id: NodeId, addr: string): void {
    this.membership.know(id, addr);
    if (addr) this.transport.setPeerAddress(id, addr);
  }

  private knowVoters(members: ClusterMembers): void {
    for (const v of members.voters) if (v.id !== this.id) this.knowPeer(v.id, v.addr);
  }

  // ---------------------------------------------------------------------------------------------
  // Public API

  getRole(): Role {
    return this.role;
  }
  /** Leader and accepting appends (not handing leadership over, or still draining for it). */
  isLeader(): boolean {
    return this.role === "leader" && !this.leading?.transferring();
  }
  leader(): NodeId | null {
    return this.leaderId;
  }
  currentTerm(): Term {
    return this.term;
  }
  lastLsn(): Lsn {
    return this.store.lastLsn() + (this.leading?.pendingCount() ?? 0);
  }
  committed(): Lsn {
    return this.commitLsn;
  }
  applied(): Lsn {
    return this.applier.applied;
  }
  voters(): NodeId[] {
    return [...this.config.voterIds().all];
  }

  /**
   * Appends an entry (leader only) and returns its LSN and term. Durable locally soon after (group
   * commit: every append of one turn of the event loop shares one write).
   */
  append(data: Uint8Array): EntryRef {
    if (!this.leading) throw new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId);
    if (this.opts.witness) throw new NotLeaderError(`node ${this.id} is a witness, handing leadership over`, null);
    return this.leading.append(data);
  }

  /**
   * Resolves when `entry` (as append returned it) reached the acknowledgement level:
   *   none      durable in the leader's log
   *   one       durable on at least one follower (and, with quorum on, committed on a majority)
   *   majority  committed: durable on a majority of the voters
   *   all       committed and durable on every voter
   * Follower counts are of the configured voters, in every quorum mode: a level that cannot be met
   * because followers are down is not met (a single-voter cluster has no followers: every level is
   * the leader's own durable copy). Rejects with NotLeaderError if this node is not the leader, if
   * leadership is lost before the level is reached (the outcome is then unknown), or if the log no
   * longer holds that entry (leadership was lost and regained, and another entry took its LSN); with
   * AckTimeoutError (carrying the level reached) once `timeoutMs` passed.
   */
  waitFor(entry: EntryRef, level: AckLevel, timeoutMs?: number): Promise<void> {
    if (!this.leading) return Promise.reject(new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId));
    return this.leading.acks.waitFor(entry, level, timeoutMs);
  }

  /**
   * Keeps this node from leading while any reason holds (false adds `reason`, true removes it): it
   * does not campaign, ignores TimeoutNow, and its pings (one at once) say never_leader, so no leader
   * hands over to it. A leader that becomes ineligible keeps leading; call stepDown() as well.
   */
  setEligible(eligible: boolean, reason: string): void {
    const before = this.holds.size;
    if (eligible) this.holds.delete(reason);
    else this.holds.add(reason);
    if (this.holds.size !== before && this.started && !this.stopped) this.pings.announce();
  }

  /** The reasons that currently keep this node from leading (setEligible). */
  heldBack(): string[] {
    return [...this.holds];
  }

  /**
   * Leader: stop leading now (no drain). The most caught-up follower that is alive and may lead is
   * told to campaign at once (TimeoutNow), so a new leader exists about one round trip later
   * instead of after an election timeout; this node steps down before that one can win (never two
   * leaders in one term), so nothing more can be acknowledged here. Its election timer restarts:
   * combine with setEligible(false) if it must not win the next election. No-op on a follower.
   */
  stepDown(reason: string): void {
    if (!this.leading) return;
    const best = this.leading.bestSuccessor();
    this.log.warn(
      `node ${this.id}: stepping down in term ${this.term} (${reason})${best ? `; asking node ${best.id} to take over` : ""}`,
    );
    this.resign(best?.id);
  }

  /**
   * Leader: hands leadership to `to` (default: the most caught-up voter that is alive and may lead)
   * the clean way: events.prepareHandover drains the application, appends stop, the target gets
   * every entry and is told to take over; this node steps down first. Returns the target; throws
   * NotLeaderError on a follower and a WolfError when no suitable target exists. Completion shows
   * as a role change; if the target does not catch up in time the handover is abandoned and this
   * node keeps leading.
   */
  transferLeadership(to?: NodeId): NodeId {
    if (!this.leading) throw new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId);
    return this.leading.transfer(to);
  }

  /**
   * Leader: makes `id` the preferred leader (null: none, the lowest eligible ID) in a config entry
   * (ClusterMembers.preferred: replicated, survives restarts) under the rules of voter changes
   * (membership-changes.ts). Resolves once committed; rejects with NotLeaderError on a follower or
   * if leadership ends first, a WolfError if `id` is no voter. Moving now: transferLeadership.
   */
  setPreferredLeader(id: NodeId | null): Promise<void> {
    if (!this.leading) return Promise.reject(new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId));
    if (id !== null && !this.config.isVoter(id))
      return Promise.reject(
        new WolfError("state", `node ${id} is not a voter (voters: ${this.voters().join(", ")})`, {
          hint: "only a voter can be the preferred leader; wolf ctl scale list servers shows them",
        }),
      );
    return this.leading.prefer(id);
  }

  /** The preferred leader of the current config (null: none, the lowest eligible ID is preferred). */
  preferredLeader(): NodeId | null {
    return this.config.members().preferred ?? null;
  }

  /**
   * This node's applied state cannot continue from the log (the application found divergence):
   * it stops applying and cannot lead until migrated() is called (a leader steps down first). With
   * `keepLog` (the log itself is sound: scale's MariaDB diverged) it goes on storing and
   * acknowledging entries, so the leader can still commit, and the dump this node will be restored
   * from can be taken, even when most followers need a migration at once; without, it refuses them.
   */
  markNeedsMigration(reason: string, keepLog = false): void {
    if (this.role === "leader") this.stepDown(`it needs a migration: ${reason}`);
    if (this.migrationReason === null) this.log.warn(`node ${this.id}: needs a migration (${reason})`);
    this.migrationKeepsLog = keepLog && (this.migrationReason === null || this.migrationKeepsLog);
    this.migrationReason = reason;
    this.pings.update();
  }

  /** Whether this node needs a migration (markNeedsMigration, or found by log shipping). */
  needsMigration(): boolean {
    return this.migrationReason !== null;
  }

  /** Whether the FSM is applying an entry right now (its apply promise has not settled). */
  isApplying(): boolean {
    return this.applier.inFlight;
  }

  /**
   * After the cause of an apply error was fixed: clears the error and applies again, starting with
   * the entry that failed. Returns false if there was no apply error.
   */
  retryApply(): boolean {
    return this.applier.retry();
  }

  /**
   * Highest LSN acknowledged by at least k voters other than the leader (leader only; 0 otherwise):
   * stored durably on them and committed, the same rule as waitFor. k = 0 is local durability.
   */
  ackedBy(k: number): Lsn {
    return this.leading?.acks.ackedBy(k) ?? 0;
  }

  /** Drops entries before `lsn` (retention). Only applied entries may go. */
  prune(lsn: Lsn): void {
    this.store.pruneBefore(Math.min(lsn, this.applier.applied + 1));
  }

  /**
   * After a NeedsMigration node was restored from a dump taken at `lsn` (term `term`): empties
   * the log, sets the new base and resumes as a follower. The FSM must report appliedLsn() = lsn;
   * `members` is the voter set of the dump's source (its status().voters with addresses).
   */
  migrated(lsn: Lsn, term: Term, members: ClusterMembers = this.config.members()): void {
    this.store.resetTo({ lsn, term });
    this.follower.newEpoch();
    this.config.resetTo({ lsn, members });
    this.persist();
    this.applier.resetTo(lsn);
    this.commitLsn = lsn;
    this.migrationReason = null;
    this.migrationKeepsLog = false;
    this.pings.reset();
  }

  quorum(): boolean {
    return quorumOn(this.opts.quorum);
  }

  status(): ClusterStatus {
    const voterIds = new Set(this.voters());
    const refLsn =
      this.role === "leader" ? this.store.lastLsn() : Math.max(this.follower.leaderLastLsn, this.store.lastLsn());
    const peers = peerStatuses(this.id, this.membership, voterIds, this.clock.now(), refLsn, (id) =>
      this.leading?.progressOf(id),
    );
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      state: this.pings.state,
      leader: this.leaderId,
      lastLsn: this.store.lastLsn(),
      lastTerm: lastTerm(this.store),
      commitLsn: this.commitLsn,
      appliedLsn: this.applier.applied,
      quorum: this.quorum(),
      voters: [...voterIds].sort((a, b) => a - b),
      neverLeader: this.opts.neverLeader || this.opts.witness || this.holds.size > 0,
      heldBack: [...this.holds],
      handoverTo: this.leading?.handoverTarget() ?? null,
      preferredLeader: this.preferredLeader(),
      failback: this.opts.failback,
      applyError: this.applier.error,
      peers,
      transport: this.transport.counters(),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Term and role

  private tick(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    this.pings.maybeBootstrap();
    this.pings.update();
    this.pings.send();
    this.leading?.tick(now);
    for (const id of this.membership.prune(now, this.config.voterIds().set)) this.leading?.forget(id);
    this.tickTimer = this.clock.setTimeout(() => this.tick(), this.t.heartbeatMs);
  }

  /**
   * Leads only to bring a voter that may lead up to date, then hands over: a witness, or a voter held
   * back, failing to apply or needing a migration of its application state (its log is sound).
   */
  isStandIn(): boolean {
    return this.opts.witness || this.holds.size > 0 || this.migrationReason !== null || this.applier.error !== null;
  }

  /** never_leader and a log that needs a migration rule a node out; anything else may stand in. */
  private canCampaign(): boolean {
    return this.config.isVoter() && !this.opts.neverLeader && (this.migrationReason === null || this.migrationKeepsLog);
  }

  /** Within the lease of a live leader we refuse to help anyone else become leader. */
  private inLease(from: NodeId): boolean {
    if (this.leading) return this.leading.inLease(this.clock.now());
    return (
      this.leaderId !== null &&
      this.leaderId !== from &&
      this.clock.now() - this.follower.lastLeaderContact < this.t.electionBaseMs
    );
  }

  private becomeCandidate(): void {
    this.term++;
    this.votedFor = this.id;
    this.persist();
    this.role = "candidate";
    this.setLeader(null);
  }

  private becomeLeader(): void {
    this.role = "leader";
    this.campaign.onLeader();
    this.leading = new LeaderState(this.host);
    this.log.info(`node ${this.id}: leader in term ${this.term} (voters ${this.voters().join(", ")})`);
    this.setLeader(this.id);
    this.leading.begin();
    this.pings.update();
  }

  private becomeFollower(term: Term, leader: NodeId | null): void {
    if (term > this.term) {
      this.term = term;
      this.votedFor = null;
      this.persist();
    }
    const was = this.role;
    this.role = "follower";
    this.campaign.onFollower();
    const leadership = this.leading;
    if (leadership) {
      this.leading = null;
      leadership.drop(
        new NotLeaderError(`node ${this.id} lost leadership (term ${this.term}); outcome unknown`, leader),
      );
      this.log.info(`node ${this.id}: stepped down in term ${this.term}`);
    }
    this.setLeader(leader, was !== "follower");
    this.campaign.resetTimer();
  }

  /** Leader: step down now; `successor` is told to campaign at once (TimeoutNow). */
  private resign(successor?: NodeId): void {
    const term = this.term;
    this.becomeFollower(term, null);
    if (successor !== undefined) this.transport.send(successor, { type: "timeout_now", term });
  }

  private setLeader(leader: NodeId | null, roleChanged = false): void {
    if (leader === this.leaderId && !roleChanged) return;
    this.leaderId = leader;
    if (leader !== null && leader !== this.id) this.follower.lastLeaderContact = this.clock.now();
    this.events.onRoleChange?.(this.role, this.term, leader);
  }

  private commitTo(lsn: Lsn): void {
    this.commitLsn = lsn;
    if (this.config.noteCommitted(lsn)) this.persist();
    this.applier.run();
  }

  private persist(): void {
    this.stable.set({
      term: this.term,
      votedFor: this.votedFor,
      committedConfig: this.config.committed,
      ...this.recovery.hardState(),
    });
  }

  private onMessage(from: NodeId, msg: Message, reply: ((m: Message) => void) | undefined): void {
    if (this.stopped) return;
    this.membership.heard(from, this.clock.now());
    switch (msg.type) {
      case "vote":
        if (reply) this.campaign.onVote(from, msg, reply);
        break;
      case "append":
        if (reply) this.follower.onAppend(from, msg, reply);
        break;
      case "timeout_now":
        this.campaign.onTimeoutNow(from, msg.term);
        break;
      case "ping":
        this.pings.onPing(from, msg);
        break;
      default:
        break;
    }
  }
}
