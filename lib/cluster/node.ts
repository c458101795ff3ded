/**
 * One cluster node: election (election.ts), log shipping (replication.ts) and membership
 * (membership.ts) wired to a Transport, LogStore, StableStore, FSM, Clock and Rng. Everything runs
 * from timers and message callbacks on the injected clock, so a SimClock drives it deterministically.
 *
 * Use (scale and disk):
 *   const node = new ClusterNode(options, { transport, logStore, stableStore, fsm });
 *   node.start();                       // node.bootstrap([...]) once for a brand new cluster
 *   const entry = node.append(bytes);   // leader only; { lsn, term }; throws NotLeaderError elsewhere
 *   await node.waitFor(entry, "one");   // none | one | majority | all
 *   node.status();                      // plain object for `wolf ctl`
 *
 * Control, for applications with their own view of health (scale: MariaDB down, divergence):
 *   node.setEligible(false, "database down")  // keep this node from leading (peers see never_leader)
 *   node.stepDown("why")                      // leader: stop now; the best follower takes over at once
 *   node.transferLeadership(to?)              // leader: clean handover (drains via events.prepareHandover)
 *   node.markNeedsMigration("why")            // stop applying/accepting entries until migrated()
 *   node.retryApply()                         // after an apply error's cause was fixed
 *
 * Followers learn a new commit LSN at once, not at the next heartbeat: when it advances, the
 * leader tells every follower that would learn something, coalesced per turn of the event loop.
 * A new batch goes to followers before the leader's own log write, so both sync in parallel.
 */
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import {
  electionTimeoutMs,
  logUpToDate,
  majority,
  quorumOn,
  timings,
  votesNeeded,
  type QuorumMode,
  type Timings,
} from "./election.ts";
import { Membership, membershipThresholds, selfState } from "./membership.ts";
import {
  buildAppend,
  commitCandidate,
  DEFAULT_LIMITS,
  followerAppend,
  lastTerm,
  Progress,
  termAt,
  type ReplicationLimits,
} from "./replication.ts";
import { realClock } from "./clock.ts";
import {
  NotLeaderError,
  type AckLevel,
  type AppendReply,
  type AppendRequest,
  type Clock,
  type EntryRef,
  type ClusterMembers,
  type FSM,
  type LogEntry,
  type LogStore,
  type Lsn,
  type Message,
  type NodeId,
  type NodeState,
  type PeerInfo,
  type Ping,
  type Rng,
  type Role,
  type StableStore,
  type Term,
  type TimerHandle,
  type Transport,
  type VoteReply,
  type VoteRequest,
} from "./types.ts";
import type { ClusterStatus, PeerStatus } from "./status.ts";

export interface NodeOptions {
  id: NodeId;
  /** host:port other nodes use to reach this one (carried in pings and config entries). */
  addr?: string;
  heartbeatMs?: number;
  quorum?: QuorumMode;
  deadAfterMs?: number;
  neverLeader?: boolean;
  /** Form a new cluster once this many nodes with empty logs see each other (0 = never). */
  bootstrapExpect?: number;
  /** The leader adds discovered nodes as voters once they caught up (default true). */
  autoJoin?: boolean;
  /** A follower within this many entries of the leader is Active (default 1000). */
  lagEntries?: number;
  limits?: Partial<ReplicationLimits>;
  /** How long events.prepareHandover may take before the handover is abandoned (default 30 s). */
  handoverDrainTimeoutMs?: number;
}

export interface NodeDeps {
  transport: Transport;
  logStore: LogStore;
  stableStore: StableStore;
  fsm: FSM;
  clock?: Clock;
  rng?: Rng;
}

export interface NodeEvents {
  /** Called on every role or leader change (after the change). */
  onRoleChange?: (role: Role, term: Term, leader: NodeId | null) => void;
  /**
   * Called on the leader when it is about to hand leadership to `target` (the automatic handback
   * to a lower ID, or transferLeadership()). Appends are still accepted until the promise
   * resolves: the application stops taking new work and appends whatever must be in the log
   * before another node leads (scale: every transaction committed in the leader's MariaDB). Then
   * appends are refused, the target is brought up to date and told to take over. Resolve with a
   * function to resume normal work: it is called once the handover is over, whether leadership
   * moved or the handover was abandoned (target not caught up in time, leadership lost). A
   * rejection, or taking longer than handoverDrainTimeoutMs, abandons the handover.
   */
  prepareHandover?: (target: NodeId) => Promise<(() => void) | void>;
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

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeMembers(m: ClusterMembers): Uint8Array {
  return enc.encode(JSON.stringify(m));
}
export function decodeMembers(data: Uint8Array): ClusterMembers {
  return JSON.parse(dec.decode(data)) as ClusterMembers;
}

export class ClusterNode {
  readonly id: NodeId;
  readonly t: Timings;
  private readonly log = logger("cluster");
  private readonly transport: Transport;
  private readonly store: LogStore;
  private readonly stable: StableStore;
  private readonly fsm: FSM;
  private readonly clock: Clock;
  private readonly rng: Rng;
  /** Sent with every append reply; see AppendReply.epoch. */
  private logEpoch = 0;
  private readonly limits: ReplicationLimits;
  private readonly opts: Required<Omit<NodeOptions, "limits">>;
  /** Why this node must not lead right now (setEligible); empty = it may. */
  private readonly holds = new Set<string>();
  readonly membership: Membership;
  events: NodeEvents = {};

  // Persistent (mirrored in the StableStore).
  private term: Term = 0;
  private votedFor: NodeId | null = null;
  private committedConfig: { lsn: Lsn; members: ClusterMembers } | null = null;

  // Volatile.
  private role: Role = "follower";
  private leaderId: NodeId | null = null;
  private commitLsn: Lsn = 0;
  private appliedLsn: Lsn = 0;
  private applyInFlight = false;
  private applyError: string | null = null;
  /** Why this node needs a migration (null: it does not). */
  private migrationReason: string | null = null;
  /** Config entries in the log after committedConfig (latest = effective voter set). */
  private configs: { lsn: Lsn; members: ClusterMembers }[] = [];
  private state: NodeState = "Joining";
  private everActive = false;
  private lastLeaderContact = -Infinity;
  private leaderLastLsn: Lsn = 0;
  private followerMatch: Lsn = 0;
  private deferrals = 0;
  private started = false;
  private stopped = false;
  private tickTimer: TimerHandle | null = null;
  private electionTimer: TimerHandle | null = null;

  // Candidate.
  private votes = new Set<NodeId>();
  private preVotes = new Set<NodeId>();
  private preVoteTerm: Term = -1;

  // Leader.
  private progress = new Map<NodeId, Progress>();
  private leaderSince = 0;
  /** LSN of this leadership's first entry (its no-op): every entry from here on is of our term. */
  private termStartLsn = Infinity;
  private pending: LogEntry[] = [];
  private flushScheduled = false;
  private commitPushScheduled = false;
  private waiters: Waiter[] = [];
  private handover: Handover | null = null;
  private handoverBackoffMs = 0;
  private nextHandoverAt = 0;

  constructor(options: NodeOptions, deps: NodeDeps) {
    this.id = options.id;
    this.opts = {
      id: options.id,
      addr: options.addr ?? "",
      heartbeatMs: options.heartbeatMs ?? 500,
      quorum: options.quorum ?? "auto",
      deadAfterMs: options.deadAfterMs ?? 30_000,
      neverLeader: options.neverLeader ?? false,
      bootstrapExpect: options.bootstrapExpect ?? 0,
      autoJoin: options.autoJoin ?? true,
      lagEntries: options.lagEntries ?? 1000,
      handoverDrainTimeoutMs: options.handoverDrainTimeoutMs ?? 30_000,
    };
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.t = timings(this.opts.heartbeatMs);
    this.transport = deps.transport;
    this.store = deps.logStore;
    this.stable = deps.stableStore;
    this.fsm = deps.fsm;
    this.clock = deps.clock ?? realClock;
    this.rng = deps.rng ?? Math.random;
    this.logEpoch = this.newEpoch();
    this.membership = new Membership(this.id, membershipThresholds(this.opts.heartbeatMs, this.opts.deadAfterMs));
    this.handoverBackoffMs = this.t.handoverBackoffMinMs;

    const hs = this.stable.get();
    this.term = hs.term;
    this.votedFor = hs.votedFor;
    this.committedConfig = hs.committedConfig;
    this.loadConfigs();
    this.appliedLsn = Math.min(this.fsm.appliedLsn(), this.store.lastLsn());
    this.commitLsn = Math.max(this.appliedLsn, this.store.base().lsn);
    this.state = this.isVoter() ? "Syncing" : "Joining";
    for (const v of this.members().voters) if (v.id !== this.id) this.knowPeer(v.id, v.addr);
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  start(): void {
    if (this.started) return;
    this.started = true;
    this.transport.setHandler((from, msg, reply) => this.onMessage(from, msg, reply));
    // A sole voter has nobody to wait for.
    this.resetElectionTimer(this.isVoter() && this.voterIds().all.length === 1);
    this.tickTimer = this.clock.setTimeout(() => this.tick(), 0);
    this.applyCommitted();
  }

  stop(): void {
    this.stopped = true;
    if (this.tickTimer) this.clock.clearTimeout(this.tickTimer);
    if (this.electionTimer) this.clock.clearTimeout(this.electionTimer);
    this.tickTimer = this.electionTimer = null;
    this.transport.setHandler(() => {});
    this.failWaiters(new NotLeaderError("node stopped", null));
  }

  /**
   * Writes the initial voter set as entry 1 on a node with an empty log (a brand new cluster).
   * Identical on every node it is called on; returns false if the log is not empty.
   */
  bootstrap(voters: { id: NodeId; addr: string }[]): boolean {
    if (this.store.lastLsn() !== 0 || this.store.base().lsn !== 0 || this.term > 1) return false;
    const members: ClusterMembers = { voters: [...voters].sort((a, b) => a.id - b.id) };
    this.term = Math.max(this.term, 1);
    this.persist();
    const entry: LogEntry = { lsn: 1, term: 1, kind: "config", data: encodeMembers(members) };
    this.store.append([entry]);
    this.configs.push({ lsn: 1, members });
    for (const v of members.voters) if (v.id !== this.id) this.knowPeer(v.id, v.addr);
    if (this.state === "Joining" && this.isVoter()) this.state = "Syncing";
    this.log.info(`bootstrapped a new cluster with voters ${members.voters.map((v) => v.id).join(", ")}`);
    if (this.started) this.resetElectionTimer(true);
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

  // ---------------------------------------------------------------------------------------------
  // Public API

  getRole(): Role {
    return this.role;
  }
  /** Leader and accepting appends (not handing leadership over, or still draining for it). */
  isLeader(): boolean {
    return this.role === "leader" && (this.handover === null || this.handover.phase === "drain");
  }
  leader(): NodeId | null {
    return this.leaderId;
  }
  currentTerm(): Term {
    return this.term;
  }
  lastLsn(): Lsn {
    return this.store.lastLsn() + this.pending.length;
  }
  committed(): Lsn {
    return this.commitLsn;
  }
  applied(): Lsn {
    return this.appliedLsn;
  }
  voters(): NodeId[] {
    return [...this.voterIds().all];
  }

  /**
   * Appends an entry (leader only) and returns its LSN and term. Durable locally soon after (group
   * commit: every append of one turn of the event loop shares one write).
   */
  append(data: Uint8Array): EntryRef {
    if (this.role !== "leader") throw new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId);
    if (this.handover?.phase === "transfer") {
      throw new NotLeaderError(
        `node ${this.id} is handing leadership over to node ${this.handover.target}`,
        this.handover.target,
      );
    }
    const lsn = this.lastLsn() + 1;
    this.pending.push({ lsn, term: this.term, kind: "data", data });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.clock.setTimeout(() => {
        this.flushScheduled = false;
        this.flush();
      }, 0);
    }
    return { lsn, term: this.term };
  }

  /**
   * Resolves when `entry` (as append returned it) reached the acknowledgement level:
   *   none      durable in the leader's log
   *   one       durable on at least one follower (and, with quorum on, committed on a majority)
   *   majority  committed: durable on a majority of the voters
   *   all       committed and durable on every voter
   * With quorum off, follower counts are capped at the followers that are alive (one survivor keeps
   * serving). Rejects with NotLeaderError if this node is not the leader, if leadership is lost
   * before the level is reached (the outcome is then unknown), or if the log no longer holds that
   * entry (leadership was lost and regained, and another entry took its LSN).
   */
  waitFor(entry: EntryRef, level: AckLevel, timeoutMs?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const { lsn } = entry;
      if (this.role !== "leader") return reject(new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId));
      // Within one term only this leader appends, and it never truncates its own log: an entry of
      // the current term is the one at its LSN. An older one must still be in the log.
      if (entry.term !== this.term && this.termOfEntry(lsn) !== entry.term) {
        return reject(
          new NotLeaderError(
            `entry ${lsn} of term ${entry.term} is no longer in the log (leadership changed); outcome unknown`,
            this.leaderId,
          ),
        );
      }
      if (entry.term > this.term || lsn > this.lastLsn()) {
        return reject(
          new NotLeaderError(
            `entry ${lsn} of term ${entry.term} was never appended by this leader (term ${this.term})`,
            this.leaderId,
          ),
        );
      }
      const w: Waiter = { lsn, level, term: this.term, resolve, reject, timer: null };
      if (timeoutMs !== undefined) {
        w.timer = this.clock.setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error(`entry ${lsn} not acknowledged (${level}) within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.waiters.push(w);
      this.checkWaiters();
    });
  }

  /** Term of the entry at `lsn`, pending ones included (undefined if the log does not hold it). */
  private termOfEntry(lsn: Lsn): Term | undefined {
    const stored = this.store.lastLsn();
    if (lsn > stored) return this.pending[lsn - stored - 1]?.term;
    return termAt(this.store, lsn);
  }

  /**
   * Keeps this node from leading while any reason holds (`eligible` false adds `reason`, true
   * removes it): it does not campaign, ignores TimeoutNow, and its pings say never_leader, so no
   * leader hands over to it and lower-ID ranking skips it. A leader that becomes ineligible keeps
   * leading (it may have work to finish); call stepDown() or transferLeadership() as well.
   */
  setEligible(eligible: boolean, reason: string): void {
    if (eligible) this.holds.delete(reason);
    else this.holds.add(reason);
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
    if (this.role !== "leader") return;
    const best = this.bestSuccessor();
    this.log.warn(
      `node ${this.id}: stepping down in term ${this.term} (${reason})${best ? `; asking node ${best.id} to take over` : ""}`,
    );
    const term = this.term;
    this.becomeFollower(term, null);
    if (best) this.transport.send(best.id, { type: "timeout_now", term });
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
    if (this.role !== "leader") throw new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId);
    let target = to;
    if (target === undefined) {
      const best = this.bestSuccessor();
      if (!best)
        throw new WolfError("state", `node ${this.id} has no live follower that may lead to hand leadership to`);
      target = best.id;
    } else if (target === this.id) {
      throw new WolfError("state", `node ${this.id} already leads`);
    } else if (!this.isVoter(target) || !this.progress.has(target)) {
      throw new WolfError("state", `node ${target} is not a voter this leader replicates to`);
    } else if (!this.mayLead(target)) {
      throw new WolfError(
        "state",
        `node ${target} may not lead right now (never_leader, held back or needs a migration)`,
      );
    }
    if (this.handover) {
      if (this.handover.target === target) return target;
      this.endHandover(false);
    }
    this.log.info(`node ${this.id}: handing leadership over to node ${target} (requested)`);
    this.startHandover(target);
    return target;
  }

  /** Leader: the most caught-up voter that answered recently and may lead. */
  private bestSuccessor(): Progress | undefined {
    const now = this.clock.now();
    let best: Progress | undefined;
    for (const id of this.otherVoters()) {
      const pr = this.progress.get(id);
      if (!pr || !this.mayLead(id) || now - pr.repliedAt > this.t.electionBaseMs) continue;
      if (!best || pr.match > best.match) best = pr;
    }
    return best;
  }

  /**
   * This node's applied state cannot continue from the log (the application found divergence):
   * it stops applying and accepting entries and cannot lead until migrated() is called. A leader
   * steps down first (stepDown).
   */
  markNeedsMigration(reason: string): void {
    if (this.role === "leader") this.stepDown(`it needs a migration: ${reason}`);
    if (this.migrationReason === null) this.log.warn(`node ${this.id}: needs a migration (${reason})`);
    this.migrationReason = reason;
    this.updateSelfState();
  }

  /** Whether this node needs a migration (markNeedsMigration, or found by log shipping). */
  needsMigration(): boolean {
    return this.migrationReason !== null;
  }

  /** Whether the FSM is applying an entry right now (its apply promise has not settled). */
  isApplying(): boolean {
    return this.applyInFlight;
  }

  /**
   * After the cause of an apply error was fixed: clears the error and applies again, starting with
   * the entry that failed. Returns false if there was no apply error.
   */
  retryApply(): boolean {
    if (this.applyError === null) return false;
    this.log.info(`node ${this.id}: retrying to apply entry ${this.appliedLsn + 1}`);
    this.applyError = null;
    this.applyCommitted();
    return true;
  }

  /**
   * Highest LSN acknowledged by at least k voters other than the leader (leader only; 0 otherwise):
   * stored durably on them and committed, the same rule as waitFor. k = 0 is local durability.
   */
  ackedBy(k: number): Lsn {
    if (this.role !== "leader") return 0;
    if (k <= 0) return this.store.lastLsn();
    const matches = this.otherVoters()
      .map((id) => this.progress.get(id)?.match ?? 0)
      .sort((a, b) => b - a);
    // Capped at the commit LSN: an entry from an earlier term can be stored on a majority and still
    // be overwritten by a later leader (Raft Figure 8) until an entry of this term commits above it.
    return Math.min(matches[k - 1] ?? 0, this.commitLsn);
  }

  /** Drops entries before `lsn` (retention). Only applied entries may go. */
  prune(lsn: Lsn): void {
    this.store.pruneBefore(Math.min(lsn, this.appliedLsn + 1));
  }

  /**
   * After a NeedsMigration node was restored from a dump taken at `lsn` (term `term`): empties
   * the log, sets the new base and resumes as a follower. The FSM must report appliedLsn() = lsn;
   * `members` is the voter set of the dump's source (its status().voters with addresses).
   */
  migrated(lsn: Lsn, term: Term, members: ClusterMembers = this.members()): void {
    this.store.resetTo({ lsn, term });
    this.logEpoch = this.newEpoch();
    this.committedConfig = { lsn, members };
    this.persist();
    this.configs = [this.committedConfig];
    this.appliedLsn = lsn;
    this.commitLsn = lsn;
    this.migrationReason = null;
    this.applyError = null;
    this.everActive = false;
    this.state = this.isVoter() ? "Syncing" : "Joining";
  }

  private newEpoch(): number {
    let e: number;
    do e = Math.floor(this.rng() * 2 ** 31);
    while (e === this.logEpoch);
    return e;
  }

  quorum(): boolean {
    return quorumOn(this.opts.quorum, this.voterIds().all.length);
  }

  status(): ClusterStatus {
    const now = this.clock.now();
    const peers: PeerStatus[] = [];
    const voterIds = new Set(this.voters());
    const ids = new Set<NodeId>([...this.membership.peers.keys(), ...voterIds]);
    ids.delete(this.id);
    const refLsn = this.role === "leader" ? this.store.lastLsn() : Math.max(this.leaderLastLsn, this.store.lastLsn());
    for (const id of [...ids].sort((a, b) => a - b)) {
      const p = this.membership.peers.get(id);
      const pr = this.progress.get(id);
      const lsn = pr ? pr.match : (p?.info?.lastLsn ?? 0);
      peers.push({
        id,
        addr: p?.addr ?? "",
        state: this.membership.stateOf(id, now),
        role: p?.info?.role ?? null,
        voter: voterIds.has(id),
        lsn,
        lag: Math.max(0, refLsn - lsn),
        lastSeenMsAgo: p && p.lastHeard !== -Infinity ? Math.round(now - p.lastHeard) : null,
      });
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      state: this.state,
      leader: this.leaderId,
      lastLsn: this.store.lastLsn(),
      lastTerm: lastTerm(this.store),
      commitLsn: this.commitLsn,
      appliedLsn: this.appliedLsn,
      quorum: this.quorum(),
      voters: [...voterIds].sort((a, b) => a - b),
      neverLeader: this.opts.neverLeader || this.holds.size > 0,
      heldBack: [...this.holds],
      handoverTo: this.handover?.target ?? null,
      applyError: this.applyError,
      peers,
      transport: this.transport.counters(),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Config (voter set)

  private loadConfigs(): void {
    const cc = this.committedConfig;
    if (cc) this.configs.push(cc);
    const base = this.store.base().lsn;
    const from = Math.max(base + 1, cc ? cc.lsn + 1 : 1);
    for (let lsn = from; lsn <= this.store.lastLsn(); lsn++) {
      const e = this.store.get(lsn);
      if (e?.kind === "config") this.configs.push({ lsn, members: decodeMembers(e.data) });
    }
  }

  private static readonly NO_MEMBERS: ClusterMembers = { voters: [] };
  private voterCache: { of: ClusterMembers; all: NodeId[]; others: NodeId[]; set: Set<NodeId> } | null = null;

  private members(): ClusterMembers {
    return this.configs[this.configs.length - 1]?.members ?? ClusterNode.NO_MEMBERS;
  }

  /** Voter ids of the current config, cached per config (hot path). */
  private voterIds() {
    const m = this.members();
    if (this.voterCache?.of !== m) {
      const all = m.voters.map((v) => v.id).sort((a, b) => a - b);
      this.voterCache = { of: m, all, others: all.filter((id) => id !== this.id), set: new Set(all) };
    }
    return this.voterCache;
  }

  private isVoter(id: NodeId = this.id): boolean {
    return this.voterIds().set.has(id);
  }

  private otherVoters(): NodeId[] {
    return this.voterIds().others;
  }

  private onEntriesAppended(entries: LogEntry[]): void {
    for (const e of entries) {
      if (e.kind !== "config") continue;
      const members = decodeMembers(e.data);
      this.configs.push({ lsn: e.lsn, members });
      for (const v of members.voters) if (v.id !== this.id) this.knowPeer(v.id, v.addr);
    }
  }

  private onTruncated(after: Lsn): void {
    this.configs = this.configs.filter((c) => c.lsn <= after || c === this.committedConfig);
  }

  /** Keeps the latest committed config in the StableStore and forgets superseded ones. */
  private noteCommittedConfig(): void {
    let latest: { lsn: Lsn; members: ClusterMembers } | null = null;
    for (const c of this.configs) if (c.lsn <= this.commitLsn) latest = c;
    if (latest && latest.lsn !== this.committedConfig?.lsn) {
      this.committedConfig = latest;
      this.persist();
      this.configs = this.configs.filter((c) => c.lsn >= latest!.lsn);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Timers

  private tick(): void {
    if (this.stopped) return;
    const now = this.clock.now();
    this.maybeBootstrap();
    this.updateSelfState();
    this.sendPings();
    if (this.role === "leader") {
      this.flush();
      for (const id of this.progress.keys()) this.replicateTo(id, "heartbeat");
      if (this.checkQuorum(now)) {
        this.manageMembers(now);
        this.manageHandover(now);
      }
      this.checkWaiters();
    }
    for (const id of this.membership.prune(now, this.voterIds().set)) this.progress.delete(id);
    this.tickTimer = this.clock.setTimeout(() => this.tick(), this.t.heartbeatMs);
  }

  /** Rank: lower-ID voters that are alive, may lead, and have a log at least as up to date as ours. */
  private lowerEligible(now: number): number {
    const mine = { lastTerm: lastTerm(this.store), lastLsn: this.store.lastLsn() };
    let rank = 0;
    for (const id of this.otherVoters()) {
      // The leader we follow does not count: the timer only fires once it went silent, and
      // counting it would add half a heartbeat to every failover.
      if (id >= this.id || id === this.leaderId || !this.membership.alive(id, now, this.t.electionBaseMs)) continue;
      const info = this.membership.peers.get(id)?.info;
      if (!info || info.neverLeader || info.state === "NeedsMigration" || info.state === "Joining") continue;
      if (logUpToDate(info, mine)) rank++;
    }
    return rank;
  }

  private resetElectionTimer(immediate = false, from?: number): void {
    if (this.stopped) return;
    if (this.electionTimer) this.clock.clearTimeout(this.electionTimer);
    const now = this.clock.now();
    let ms = immediate ? this.rng() * this.t.jitterMs : electionTimeoutMs(this.t, this.lowerEligible(now), this.rng());
    if (from !== undefined) ms = Math.max(1, from + ms - now);
    this.electionTimer = this.clock.setTimeout(() => this.onElectionTimeout(), ms);
  }

  private canCampaign(): boolean {
    return (
      this.isVoter() &&
      !this.opts.neverLeader &&
      this.holds.size === 0 &&
      this.migrationReason === null &&
      this.applyError === null
    );
  }

  /** Leader's view: may voter `id` lead (by its own pings and our log shipping)? */
  private mayLead(id: NodeId): boolean {
    const info = this.membership.peers.get(id)?.info;
    const pr = this.progress.get(id);
    return this.isVoter(id) && !!info && !info.neverLeader && info.state !== "NeedsMigration" && !pr?.needsMigration;
  }

  private onElectionTimeout(): void {
    this.electionTimer = null;
    if (this.stopped || this.role === "leader") return;
    const now = this.clock.now();
    if (this.leaderId !== null && now - this.lastLeaderContact < this.t.electionBaseMs) {
      // Heartbeats do not re-arm the timer (that would be a timer per message); re-arm it here
      // so the deadline counts from the last contact with the leader.
      this.resetElectionTimer(false, this.lastLeaderContact);
      return;
    }
    if (this.leaderId !== null) this.setLeader(null);
    if (this.role === "candidate") this.becomeFollower(this.term, null);
    if (!this.canCampaign()) {
      this.resetElectionTimer();
      return;
    }
    if (this.deferrals < 2 && this.lowerEligible(now) > 0) {
      this.deferrals++;
      this.resetElectionTimer();
      return;
    }
    this.deferrals = 0;
    this.startPreVote();
    this.resetElectionTimer();
  }

  // ---------------------------------------------------------------------------------------------
  // Election

  /** Quorum off: voters heard from within the election timeout (a dead leader drops out in time). */
  private aliveVoterCount(): number {
    const now = this.clock.now();
    return this.voterIds().all.filter((id) => this.membership.alive(id, now, this.t.electionBaseMs)).length;
  }

  private needed(): number {
    return votesNeeded(this.quorum(), this.voterIds().all.length, this.aliveVoterCount());
  }

  private startPreVote(): void {
    this.preVotes = new Set([this.id]);
    this.preVoteTerm = this.term + 1;
    if (this.preVotes.size >= this.needed()) return this.startElection(false);
    const req: VoteRequest = {
      type: "vote",
      term: this.term + 1,
      lastLsn: this.store.lastLsn(),
      lastTerm: lastTerm(this.store),
      pre: true,
      handover: false,
    };
    const roundTerm = this.term;
    for (const id of this.otherVoters()) {
      this.transport.request(id, req, this.t.requestTimeoutMs, (reply) => {
        if (this.stopped || !reply || reply.type !== "vote_reply") return;
        if (reply.term > this.term && !reply.granted) return this.becomeFollower(reply.term, null);
        if (this.term !== roundTerm || this.role !== "follower" || this.preVoteTerm !== roundTerm + 1) return;
        if (!reply.granted || !this.isVoter(id)) return;
        this.preVotes.add(id);
        if (this.preVotes.size >= this.needed()) {
          this.preVoteTerm = -1;
          this.startElection(false);
        }
      });
    }
  }

  private startElection(handover: boolean): void {
    if (!this.canCampaign()) return;
    this.term++;
    this.votedFor = this.id;
    this.persist();
    this.role = "candidate";
    this.setLeader(null);
    this.votes = new Set([this.id]);
    this.log.debug(`node ${this.id}: campaigning in term ${this.term}${handover ? " (handover)" : ""}`);
    this.resetElectionTimer();
    if (this.votes.size >= this.needed()) return this.becomeLeader();
    const req: VoteRequest = {
      type: "vote",
      term: this.term,
      lastLsn: this.store.lastLsn(),
      lastTerm: lastTerm(this.store),
      pre: false,
      handover,
    };
    const electionTerm = this.term;
    for (const id of this.otherVoters()) {
      this.transport.request(id, req, this.t.requestTimeoutMs, (reply) => {
        if (this.stopped || !reply || reply.type !== "vote_reply") return;
        if (reply.term > this.term) return this.becomeFollower(reply.term, null);
        if (this.role !== "candidate" || this.term !== electionTerm || !reply.granted || !this.isVoter(id)) return;
        this.votes.add(id);
        if (this.votes.size >= this.needed()) this.becomeLeader();
      });
    }
  }

  /** Within the lease of a live leader we refuse to help anyone else become leader. */
  private inLease(from: NodeId): boolean {
    if (this.role === "leader")
      return this.handover?.phase !== "transfer" && this.hasQuorumContact(this.clock.now(), this.t.electionBaseMs);
    return (
      this.leaderId !== null &&
      this.leaderId !== from &&
      this.clock.now() - this.lastLeaderContact < this.t.electionBaseMs
    );
  }

  private onVote(from: NodeId, req: VoteRequest, reply: (m: Message) => void): void {
    const mine = { lastTerm: lastTerm(this.store), lastLsn: this.store.lastLsn() };
    const refuse = () => reply({ type: "vote_reply", term: this.term, granted: false } satisfies VoteReply);
    if (req.term < this.term) return refuse();
    if (!req.handover && this.inLease(from)) return refuse();
    if (req.pre) {
      const granted = req.term > this.term && logUpToDate(req, mine);
      return reply({ type: "vote_reply", term: this.term, granted } satisfies VoteReply);
    }
    if (req.term > this.term) this.becomeFollower(req.term, null);
    const granted = (this.votedFor === null || this.votedFor === from) && logUpToDate(req, mine);
    if (granted) {
      this.votedFor = from;
      this.persist();
      this.resetElectionTimer();
    }
    reply({ type: "vote_reply", term: this.term, granted } satisfies VoteReply);
  }

  private becomeLeader(): void {
    this.role = "leader";
    this.leaderSince = this.clock.now();
    this.endHandover(false);
    this.handoverBackoffMs = this.t.handoverBackoffMinMs;
    this.nextHandoverAt = this.leaderSince + this.t.handoverStableMs;
    this.deferrals = 0;
    if (this.electionTimer) this.clock.clearTimeout(this.electionTimer);
    this.electionTimer = null;
    this.progress.clear();
    const last = this.store.lastLsn();
    this.termStartLsn = last + 1;
    for (const id of this.replicationTargets()) this.progress.set(id, new Progress(id, last, this.leaderSince));
    this.log.info(`node ${this.id}: leader in term ${this.term} (voters ${this.voters().join(", ")})`);
    this.setLeader(this.id);
    // A no-op in our own term lets everything before it commit (Raft §5.4.2).
    this.pending.push({ lsn: last + 1, term: this.term, kind: "noop", data: new Uint8Array(0) });
    this.flush();
    this.updateSelfState();
  }

  /** Voters plus known nodes that are not voters yet (learners being caught up). */
  private replicationTargets(): NodeId[] {
    const ids = new Set(this.otherVoters());
    for (const [id, p] of this.membership.peers) if (id !== this.id && p.info && p.lastHeard !== -Infinity) ids.add(id);
    return [...ids];
  }

  private becomeFollower(term: Term, leader: NodeId | null): void {
    if (term > this.term) {
      this.term = term;
      this.votedFor = null;
      this.persist();
    }
    const was = this.role;
    this.role = "follower";
    this.preVoteTerm = -1;
    if (was === "leader") {
      this.progress.clear();
      this.pending = [];
      this.endHandover(false);
      this.failWaiters(
        new NotLeaderError(`node ${this.id} lost leadership (term ${this.term}); outcome unknown`, leader),
      );
      this.log.info(`node ${this.id}: stepped down in term ${this.term}`);
    }
    this.setLeader(leader, was !== "follower");
    this.resetElectionTimer();
  }

  private setLeader(leader: NodeId | null, roleChanged = false): void {
    if (leader === this.leaderId && !roleChanged) return;
    this.leaderId = leader;
    if (leader !== null && leader !== this.id) this.lastLeaderContact = this.clock.now();
    this.events.onRoleChange?.(this.role, this.term, leader);
  }

  private onTimeoutNow(from: NodeId, term: Term): void {
    if (term !== this.term || this.role === "leader" || !this.canCampaign()) return;
    this.log.info(`node ${this.id}: taking over leadership from node ${from}`);
    this.startElection(true);
  }

  // ---------------------------------------------------------------------------------------------
  // Leader: replication, commit, acks

  private flush(): void {
    if (this.role !== "leader" || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.shipAhead(batch);
    this.store.append(batch);
    this.onEntriesAppended(batch);
    for (const id of this.replicationTargets()) {
      if (!this.progress.has(id)) this.progress.set(id, new Progress(id, this.store.lastLsn(), this.clock.now()));
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
    const first = batch[0]!.lsn;
    if (first !== this.store.lastLsn() + 1) return;
    const prevTerm = lastTerm(this.store);
    const leaderLastLsn = batch[batch.length - 1]!.lsn;
    for (const pr of this.progress.values()) {
      if (pr.needsMigration || pr.probing || pr.next !== first) continue;
      for (let i = 0; i < batch.length && pr.inflight < this.limits.maxInflight; ) {
        let j = i;
        let bytes = 0;
        while (
          j < batch.length &&
          j - i < this.limits.maxBatchEntries &&
          (j === i || bytes + batch[j]!.data.length <= this.limits.maxBatchBytes)
        ) {
          bytes += batch[j]!.data.length;
          j++;
        }
        const entries = batch.slice(i, j);
        const prev = i === 0 ? { lsn: first - 1, term: prevTerm } : batch[i - 1]!;
        this.sendAppend(pr, {
          type: "append",
          term: this.term,
          prevLsn: prev.lsn,
          prevTerm: prev.term,
          entries,
          commitLsn: this.commitLsn,
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
    const heartbeat = mode === "heartbeat";
    const pr = this.progress.get(id);
    if (!pr) return;
    const now = this.clock.now();
    if (pr.needsMigration) {
      // Probe at our pruned base: a follower that lacks it needs a migration; one that has it
      // (it was migrated meanwhile) answers ok and normal replication resumes.
      if (now - pr.migrateNoticeAt >= this.t.heartbeatMs) {
        pr.migrateNoticeAt = now;
        const base = this.store.base();
        this.sendAppend(pr, {
          type: "append",
          term: this.term,
          prevLsn: base.lsn,
          prevTerm: base.term,
          entries: [],
          commitLsn: this.commitLsn,
          leaderLastLsn: this.store.lastLsn(),
          migrate: true,
        });
      }
      return;
    }
    let sent = false;
    const last = this.store.lastLsn();
    while (pr.next <= last && pr.inflight < (pr.probing ? 1 : this.limits.maxInflight)) {
      const req = buildAppend(this.store, this.term, this.commitLsn, pr.next, this.limits);
      if (!req) {
        pr.needsMigration = true;
        this.log.warn(`node ${id} needs entries from ${pr.next}, which were pruned: it needs a migration`);
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
      const prev = pr.inflight === 0 ? pr.next - 1 : Math.max(pr.match, this.store.base().lsn);
      const req = buildAppend(this.store, this.term, this.commitLsn, prev + 1, { ...this.limits, maxBatchEntries: 0 });
      if (req) this.sendAppend(pr, { ...req, entries: [] });
      else if (!pr.needsMigration) {
        pr.needsMigration = true;
        this.replicateTo(id, mode);
      }
    }
  }

  private sendAppend(pr: Progress, req: AppendRequest): void {
    pr.inflight++;
    pr.commitSent = Math.max(pr.commitSent, Math.min(req.commitLsn, req.prevLsn + req.entries.length));
    const term = this.term;
    this.transport.request(pr.id, req, this.t.requestTimeoutMs, (reply) => {
      if (this.stopped || this.role !== "leader" || this.term !== term || this.progress.get(pr.id) !== pr) {
        if (reply && reply.term > this.term) this.becomeFollower(reply.term, null);
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
    if (reply.term > this.term) return this.becomeFollower(reply.term, null);
    if (reply.term < this.term) return;
    const now = this.clock.now();
    pr.lastReplyAt = pr.repliedAt = now;
    this.membership.heard(pr.id, now);
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
    if (reply.ok) {
      if (pr.needsMigration) {
        pr.needsMigration = false;
        pr.probing = true;
      }
      if (reply.matchLsn > pr.match) pr.match = reply.matchLsn;
      if (pr.next <= pr.match) pr.next = pr.match + 1;
      if (reply.matchLsn >= pr.next - 1) pr.probing = false;
      const caughtUp = this.store.lastLsn() - pr.match <= this.opts.lagEntries;
      if (!caughtUp) pr.caughtUpSince = null;
      else if (pr.caughtUpSince === null) pr.caughtUpSince = now;
      this.advanceCommit();
      if (this.handover?.target === pr.id) this.tryFinishHandover();
      if (this.role === "leader") {
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

  private hasQuorumContact(now: number, withinMs: number): boolean {
    if (!this.quorum()) return true;
    let alive = this.isVoter() ? 1 : 0;
    for (const id of this.otherVoters()) {
      const pr = this.progress.get(id);
      if (pr && now - pr.lastReplyAt <= withinMs) alive++;
    }
    return alive >= majority(this.voterIds().all.length);
  }

  /** Steps down if a majority has not answered for checkQuorumMs. Returns whether still leader. */
  private checkQuorum(now: number): boolean {
    if (now - this.leaderSince < this.t.checkQuorumMs) return true;
    if (this.hasQuorumContact(now, this.t.checkQuorumMs)) return true;
    this.log.warn(`node ${this.id}: lost contact with a majority; stepping down (term ${this.term})`);
    this.becomeFollower(this.term, null);
    return false;
  }

  /** Followers that count as alive for quorum-off commit and ack capping. */
  private aliveFollowers(now: number): NodeId[] {
    return this.otherVoters().filter((id) => {
      const pr = this.progress.get(id);
      if (!pr || pr.needsMigration) return false;
      const heard = Math.max(pr.repliedAt, this.membership.peers.get(id)?.lastHeard ?? -Infinity);
      return now - heard <= this.t.electionBaseMs;
    });
  }

  private advanceCommit(): void {
    if (this.role !== "leader") return;
    const quorum = this.quorum();
    const now = this.clock.now();
    const voters = quorum ? this.otherVoters() : this.aliveFollowers(now);
    const matches = voters.map((id) => this.progress.get(id)?.match ?? 0);
    if (this.isVoter()) matches.push(this.store.lastLsn());
    const candidate = commitCandidate(matches, quorum, this.voterIds().all.length);
    // Only an entry of our own term commits by counting (Raft §5.4.2); ours start at termStartLsn.
    if (candidate > this.commitLsn && candidate >= this.termStartLsn) {
      this.commitLsn = candidate;
      this.noteCommittedConfig();
      this.applyCommitted();
      this.scheduleCommitPush();
    }
    this.checkWaiters();
  }

  /**
   * Would an empty append now tell this follower a higher commit LSN than it has been sent? It
   * learns min(commit, the append's match point): next - 1 with nothing in flight (what a heartbeat
   * probes), else the known match (see replicateTo).
   */
  private commitNews(pr: Progress): boolean {
    if (pr.needsMigration) return false;
    return (
      Math.min(this.commitLsn, pr.inflight === 0 ? pr.next - 1 : Math.max(pr.match, this.store.base().lsn)) >
      pr.commitSent
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
    this.clock.setTimeout(() => {
      this.commitPushScheduled = false;
      if (this.role !== "leader" || this.stopped) return;
      for (const id of this.progress.keys()) this.replicateTo(id, "commit");
    }, 0);
  }

  private ackSatisfied(w: Waiter, now: number): boolean {
    if (w.lsn > this.store.lastLsn()) return false;
    if (w.level === "none") return true;
    if (this.commitLsn < w.lsn) return false;
    const others = this.otherVoters();
    const acks = others.filter((id) => (this.progress.get(id)?.match ?? 0) >= w.lsn).length;
    let need = w.level === "one" ? 1 : w.level === "majority" ? majority(others.length + 1) - 1 : others.length;
    need = Math.min(need, others.length);
    if (!this.quorum()) need = Math.min(need, this.aliveFollowers(now).length);
    return acks >= need;
  }

  private checkWaiters(): void {
    if (this.waiters.length === 0) return;
    const now = this.clock.now();
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.role !== "leader" || w.term !== this.term) {
        if (w.timer) this.clock.clearTimeout(w.timer);
        w.reject(
          new NotLeaderError(
            `node ${this.id} lost leadership before entry ${w.lsn} was acknowledged; outcome unknown`,
            this.leaderId,
          ),
        );
      } else if (this.ackSatisfied(w, now)) {
        if (w.timer) this.clock.clearTimeout(w.timer);
        w.resolve();
      } else keep.push(w);
    }
    this.waiters = keep;
  }

  private failWaiters(err: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) {
      if (w.timer) this.clock.clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** Leader: add caught-up learners as voters, remove voters dead for dead_after_ms. One change at a time. */
  private manageMembers(now: number): void {
    const latest = this.configs[this.configs.length - 1];
    if (latest && latest.lsn > this.commitLsn) return; // a change is still in flight
    // Not before an entry of our own term committed: a config entry a previous leader left
    // uncommitted could otherwise still win later, and two single-node changes from different
    // terms would overlap into voter sets without a common majority (Raft single-server change bug).
    if (this.commitLsn < this.termStartLsn) return;
    const members = this.members();
    if (this.opts.autoJoin) {
      for (const pr of this.progress.values()) {
        if (this.isVoter(pr.id) || pr.needsMigration || pr.caughtUpSince === null) continue;
        if (pr.match < this.commitLsn || now - pr.lastReplyAt > this.t.suspectAfterMs) continue;
        const addr = this.membership.peers.get(pr.id)?.addr ?? "";
        this.log.info(`node ${this.id}: adding node ${pr.id} as a voter`);
        return this.appendConfig({ voters: [...members.voters, { id: pr.id, addr }].sort((a, b) => a.id - b.id) });
      }
    }
    for (const id of this.otherVoters()) {
      const pr = this.progress.get(id);
      const heard = Math.max(
        pr?.lastReplyAt ?? this.leaderSince,
        this.membership.peers.get(id)?.lastHeard ?? -Infinity,
      );
      if (now - heard > this.opts.deadAfterMs) {
        this.log.warn(
          `node ${this.id}: removing node ${id} from the voters (silent for ${Math.round(now - heard)} ms)`,
        );
        return this.appendConfig({ voters: members.voters.filter((v) => v.id !== id) });
      }
    }
  }

  private appendConfig(members: ClusterMembers): void {
    this.pending.push({ lsn: this.lastLsn() + 1, term: this.term, kind: "config", data: encodeMembers(members) });
    this.flush();
  }

  private manageHandover(now: number): void {
    const h = this.handover;
    if (h) {
      const limit = h.phase === "drain" ? this.opts.handoverDrainTimeoutMs : this.t.handoverTimeoutMs;
      if (now - h.start > limit) {
        this.log.info(
          `node ${this.id}: handover to node ${h.target} timed out (${h.phase === "drain" ? "draining the application" : "target not caught up"}); keeping leadership`,
        );
        this.endHandover(true);
      } else if (h.phase === "transfer") this.tryFinishHandover();
      return;
    }
    if (now < this.nextHandoverAt || !this.isVoter()) return;
    for (const id of this.otherVoters()) {
      if (id >= this.id) break;
      const pr = this.progress.get(id);
      if (!pr || !this.mayLead(id)) continue;
      if (pr.caughtUpSince === null || now - pr.caughtUpSince < this.t.handoverStableMs) continue;
      if (now - pr.lastReplyAt > this.t.heartbeatMs * 2) continue;
      this.log.info(`node ${this.id}: handing leadership over to node ${id} (lower ID, caught up)`);
      this.startHandover(id);
      return;
    }
  }

  /**
   * Starts a handover: first the application drains (events.prepareHandover, appends still
   * accepted), then the transfer phase refuses appends and finishes in tryFinishHandover.
   */
  private startHandover(target: NodeId): void {
    const h: Handover = { target, phase: "drain", start: this.clock.now(), resume: null, over: false };
    this.handover = h;
    const prepare = this.events.prepareHandover;
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
        if (this.handover === h && this.role === "leader" && !this.stopped) this.beginTransfer(h);
      },
      (err: unknown) => {
        if (this.handover !== h) return;
        this.log.warn(
          `node ${this.id}: handover to node ${target} abandoned: the application could not drain (${err instanceof Error ? err.message : String(err)})`,
        );
        this.endHandover(true);
      },
    );
  }

  private beginTransfer(h: Handover): void {
    h.phase = "transfer";
    h.start = this.clock.now();
    this.tryFinishHandover();
  }

  /** The handover is over (done, abandoned or leadership lost): the application resumes. */
  private endHandover(backoff: boolean): void {
    const h = this.handover;
    if (!h) return;
    this.handover = null;
    h.over = true;
    if (backoff) {
      this.nextHandoverAt = this.clock.now() + this.handoverBackoffMs;
      this.handoverBackoffMs = Math.min(this.handoverBackoffMs * 2, this.t.handoverBackoffMaxMs);
    }
    const resume = h.resume;
    h.resume = null;
    resume?.();
  }

  private tryFinishHandover(): void {
    const h = this.handover;
    if (h?.phase !== "transfer" || this.role !== "leader") return;
    this.flush();
    const pr = this.progress.get(h.target);
    if (!pr) return;
    if (pr.match < this.store.lastLsn()) return this.replicateTo(h.target, "data");
    const term = this.term;
    // Step down before the target can win: there is never a moment with two leaders.
    this.becomeFollower(term, null);
    this.transport.send(h.target, { type: "timeout_now", term });
  }

  // ---------------------------------------------------------------------------------------------
  // Follower

  private onAppend(from: NodeId, req: AppendRequest, reply: (m: Message) => void): void {
    const fail = (hintLsn: Lsn, needsMigration?: boolean) =>
      reply({
        type: "append_reply",
        term: this.term,
        ok: false,
        matchLsn: 0,
        hintLsn,
        needsMigration,
        epoch: this.logEpoch,
      } satisfies AppendReply);
    if (req.term < this.term) return fail(this.store.lastLsn());
    if (req.term === this.term && this.role === "leader") {
      // Two leaders in one term can only happen with quorum off (both sides elected alone).
      // Move both to a fresh term and let a normal election decide.
      this.log.warn(`node ${this.id}: another leader (node ${from}) in term ${this.term}; stepping down`);
      this.becomeFollower(this.term + 1, null);
      return fail(this.store.lastLsn());
    }
    if (req.term > this.term || this.role !== "follower" || this.leaderId !== from) this.becomeFollower(req.term, from);
    this.lastLeaderContact = this.clock.now();
    this.leaderLastLsn = req.leaderLastLsn;
    if (this.migrationReason !== null) {
      this.updateSelfState();
      return fail(this.store.lastLsn(), true);
    }
    const result = followerAppend(this.store, req, Math.max(this.commitLsn, this.appliedLsn));
    if (!result.ok) {
      if (req.migrate && result.hintLsn < req.prevLsn) {
        this.migrationReason = `the leader no longer has the entries this node needs (from ${result.hintLsn + 1})`;
        this.log.warn(`node ${this.id}: ${this.migrationReason}; it needs a migration`);
      } else if (result.needsMigration) {
        this.migrationReason = `entries this node already committed conflict with leader ${from}`;
        this.log.warn(`node ${this.id}: ${this.migrationReason}; it needs a migration`);
      }
      this.updateSelfState();
      return fail(result.hintLsn, this.migrationReason !== null);
    }
    if (result.truncatedAfter !== null) this.onTruncated(result.truncatedAfter);
    this.onEntriesAppended(result.appended);
    this.followerMatch = result.matchLsn;
    const commit = Math.min(req.commitLsn, result.matchLsn);
    if (commit > this.commitLsn) {
      this.commitLsn = commit;
      this.noteCommittedConfig();
      this.applyCommitted();
    }
    this.updateSelfState();
    reply({
      type: "append_reply",
      term: this.term,
      ok: true,
      matchLsn: result.matchLsn,
      hintLsn: 0,
      epoch: this.logEpoch,
    } satisfies AppendReply);
  }

  // ---------------------------------------------------------------------------------------------
  // Applying

  private applyCommitted(): void {
    while (
      !this.applyInFlight &&
      this.applyError === null &&
      this.migrationReason === null &&
      this.appliedLsn < this.commitLsn &&
      !this.stopped
    ) {
      const from = this.appliedLsn + 1;
      const batch =
        this.fsm.applyBatch && this.commitLsn > from
          ? this.store.range(
              from,
              Math.min(this.commitLsn, from + ClusterNode.APPLY_BATCH - 1),
              ClusterNode.APPLY_BATCH_BYTES,
            )
          : undefined;
      const entry = batch ? batch[0] : this.store.get(from);
      if (!entry || entry.lsn !== from) {
        this.applyError = `entry ${from} is missing from the log`;
        return;
      }
      const last = batch ? batch[batch.length - 1]!.lsn : from;
      let result: void | Promise<void>;
      try {
        result = batch && batch.length > 1 ? this.fsm.applyBatch!(batch) : this.fsm.apply(entry);
      } catch (err) {
        return this.onApplyFailed(from, last, err);
      }
      if (result instanceof Promise) {
        this.applyInFlight = true;
        result.then(
          () => {
            this.applyInFlight = false;
            this.appliedLsn = last;
            this.applyCommitted();
          },
          (err) => {
            this.applyInFlight = false;
            this.onApplyFailed(from, last, err);
          },
        );
        return;
      }
      this.appliedLsn = last;
    }
  }

  /** Entries per applyBatch call, and their data bytes (at least one entry). */
  private static readonly APPLY_BATCH = 64;
  private static readonly APPLY_BATCH_BYTES = 4 << 20;

  /** A (batch) apply of from..last failed: what the FSM reports applied counts, the next one failed. */
  private onApplyFailed(from: Lsn, last: Lsn, err: unknown): void {
    if (last > from) this.appliedLsn = Math.max(this.appliedLsn, Math.min(last, this.fsm.appliedLsn()));
    const failed = this.store.get(this.appliedLsn + 1) ?? {
      lsn: this.appliedLsn + 1,
      term: 0,
      kind: "data",
      data: new Uint8Array(0),
    };
    this.onApplyError(failed, err);
  }

  private onApplyError(entry: LogEntry, err: unknown): void {
    this.applyError = `applying entry ${entry.lsn} failed: ${err instanceof Error ? err.message : String(err)}`;
    this.log.error(`node ${this.id}: ${this.applyError}; this node stops applying until fixed`);
  }

  // ---------------------------------------------------------------------------------------------
  // Membership and messages

  private updateSelfState(): void {
    const lag =
      this.role === "leader" ? 0 : this.leaderId === null ? null : Math.max(0, this.leaderLastLsn - this.followerMatch);
    const s = selfState({
      needsMigration: this.migrationReason !== null,
      isLeader: this.role === "leader",
      isVoter: this.isVoter(),
      lag,
      lagEntries: this.opts.lagEntries,
      everActive: this.everActive,
      previous: this.state,
    });
    if (s === "Active") this.everActive = true;
    this.state = s;
  }

  private selfInfo(): PeerInfo {
    return {
      id: this.id,
      addr: this.opts.addr,
      state: this.state,
      role: this.role,
      leader: this.leaderId,
      lastLsn: this.store.lastLsn(),
      lastTerm: lastTerm(this.store),
      commitLsn: this.commitLsn,
      appliedLsn: this.appliedLsn,
      neverLeader: this.opts.neverLeader || this.holds.size > 0,
      voter: this.isVoter(),
    };
  }

  private sendPings(): void {
    const ping: Ping = { type: "ping", term: this.term, info: this.selfInfo() };
    const ids = new Set<NodeId>([...this.membership.peers.keys(), ...this.otherVoters()]);
    ids.delete(this.id);
    for (const id of ids) this.transport.send(id, ping);
  }

  private onPing(from: NodeId, ping: Ping): void {
    if (ping.info.id !== from) return;
    const now = this.clock.now();
    const known = this.membership.peers.has(from);
    this.membership.update(ping.info, now);
    if (ping.info.addr) this.transport.setPeerAddress(from, ping.info.addr);
    if (ping.term > this.term && !this.inLease(from)) {
      this.becomeFollower(ping.term, ping.info.role === "leader" ? from : null);
    }
    if (this.role === "leader" && !this.progress.has(from)) {
      this.progress.set(from, new Progress(from, this.store.lastLsn(), now));
      this.replicateTo(from, "heartbeat");
    }
    if (!known) this.log.debug(`node ${this.id}: discovered node ${from}`);
  }

  private maybeBootstrap(): void {
    const n = this.opts.bootstrapExpect;
    if (n <= 0 || this.store.lastLsn() !== 0 || this.store.base().lsn !== 0 || this.configs.length > 0) return;
    const now = this.clock.now();
    const fresh = [this.id];
    for (const [id, p] of this.membership.peers) {
      if (!this.membership.alive(id, now) || !p.info) continue;
      if (p.info.lastLsn > 0 || p.info.voter) return; // an existing cluster: wait to be added instead
      fresh.push(id);
    }
    if (fresh.length < n) return;
    fresh.sort((a, b) => a - b);
    if (fresh[0] !== this.id) return; // the lowest ID bootstraps; the others receive it by replication
    const voters = fresh
      .slice(0, n)
      .map((id) => ({ id, addr: id === this.id ? this.opts.addr : (this.membership.peers.get(id)?.addr ?? "") }));
    this.bootstrap(voters);
  }

  private onMessage(from: NodeId, msg: Message, reply: ((m: Message) => void) | undefined): void {
    if (this.stopped) return;
    this.membership.heard(from, this.clock.now());
    switch (msg.type) {
      case "vote":
        if (reply) this.onVote(from, msg, reply);
        break;
      case "append":
        if (reply) this.onAppend(from, msg, reply);
        break;
      case "timeout_now":
        this.onTimeoutNow(from, msg.term);
        break;
      case "ping":
        this.onPing(from, msg);
        break;
      default:
        break;
    }
  }

  private persist(): void {
    this.stable.set({ term: this.term, votedFor: this.votedFor, committedConfig: this.committedConfig });
  }
}
