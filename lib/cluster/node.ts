/**
 * One cluster node: election (election.ts), log shipping (replication.ts) and membership
 * (membership.ts) wired to a Transport, LogStore, StableStore, FSM, Clock and Rng. Everything runs
 * from timers and message callbacks on the injected clock, so a SimClock drives it deterministically.
 *
 * Use (scale and disk):
 *   const node = new ClusterNode(options, { transport, logStore, stableStore, fsm });
 *   node.start();                       // node.bootstrap([...]) once for a brand new cluster
 *   const lsn = node.append(bytes);     // leader only; throws NotLeaderError elsewhere
 *   await node.waitFor(lsn, "one");     // none | one | majority | all
 *   node.status();                      // plain object for `wolf ctl`
 */
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
}

interface Waiter {
  lsn: Lsn;
  level: AckLevel;
  term: Term;
  resolve: () => void;
  reject: (err: Error) => void;
  timer: TimerHandle | null;
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
  private readonly limits: ReplicationLimits;
  private readonly opts: Required<Omit<NodeOptions, "limits">>;
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
  private applying = false;
  private applyError: string | null = null;
  private needsMigration = false;
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
  private pending: LogEntry[] = [];
  private flushScheduled = false;
  private waiters: Waiter[] = [];
  private handover: { target: NodeId; start: number } | null = null;
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
    };
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.t = timings(this.opts.heartbeatMs);
    this.transport = deps.transport;
    this.store = deps.logStore;
    this.stable = deps.stableStore;
    this.fsm = deps.fsm;
    this.clock = deps.clock ?? realClock;
    this.rng = deps.rng ?? Math.random;
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
  /** Leader and accepting appends (not in the middle of a handover). */
  isLeader(): boolean {
    return this.role === "leader" && this.handover === null;
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

  /** Appends an entry (leader only) and returns its LSN. Durable locally soon after (group commit). */
  append(data: Uint8Array): Lsn {
    if (this.role !== "leader") throw new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId);
    if (this.handover) throw new NotLeaderError(`node ${this.id} is handing leadership over to node ${this.handover.target}`, this.handover.target);
    const lsn = this.lastLsn() + 1;
    this.pending.push({ lsn, term: this.term, kind: "data", data });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      this.clock.setTimeout(() => {
        this.flushScheduled = false;
        this.flush();
      }, 0);
    }
    return lsn;
  }

  /**
   * Resolves when entry `lsn` reached the acknowledgement level:
   *   none      durable in the leader's log
   *   one       durable on at least one follower (and, with quorum on, committed on a majority)
   *   majority  committed: durable on a majority of the voters
   *   all       committed and durable on every voter
   * With quorum off, follower counts are capped at the followers that are alive (one survivor keeps
   * serving). Rejects with NotLeaderError if leadership is lost first: the outcome is then unknown.
   */
  waitFor(lsn: Lsn, level: AckLevel, timeoutMs?: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.role !== "leader") return reject(new NotLeaderError(`node ${this.id} is not the leader`, this.leaderId));
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
    this.committedConfig = { lsn, members };
    this.persist();
    this.configs = [this.committedConfig];
    this.appliedLsn = lsn;
    this.commitLsn = lsn;
    this.needsMigration = false;
    this.applyError = null;
    this.everActive = false;
    this.state = this.isVoter() ? "Syncing" : "Joining";
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
      neverLeader: this.opts.neverLeader,
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
      for (const id of this.progress.keys()) this.replicateTo(id, true);
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
      if (id >= this.id || !this.membership.alive(id, now, this.t.electionBaseMs)) continue;
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
    return this.isVoter() && !this.opts.neverLeader && !this.needsMigration && this.applyError === null;
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
    if (this.role === "leader") return this.handover === null && this.hasQuorumContact(this.clock.now(), this.t.electionBaseMs);
    return this.leaderId !== null && this.leaderId !== from && this.clock.now() - this.lastLeaderContact < this.t.electionBaseMs;
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
    this.handover = null;
    this.handoverBackoffMs = this.t.handoverBackoffMinMs;
    this.nextHandoverAt = this.leaderSince + this.t.handoverStableMs;
    this.deferrals = 0;
    if (this.electionTimer) this.clock.clearTimeout(this.electionTimer);
    this.electionTimer = null;
    this.progress.clear();
    const last = this.store.lastLsn();
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
      this.handover = null;
      this.failWaiters(new NotLeaderError(`node ${this.id} lost leadership (term ${this.term}); outcome unknown`, leader));
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
    this.store.append(batch);
    this.onEntriesAppended(batch);
    for (const id of this.replicationTargets()) {
      if (!this.progress.has(id)) this.progress.set(id, new Progress(id, this.store.lastLsn(), this.clock.now()));
    }
    for (const id of this.progress.keys()) this.replicateTo(id, false);
    this.advanceCommit();
  }

  /** Sends what `id` is missing (pipelined); with `heartbeat`, something even if nothing is missing. */
  private replicateTo(id: NodeId, heartbeat: boolean): void {
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
        return this.replicateTo(id, heartbeat);
      }
      if (!pr.probing) pr.next += req.entries.length;
      this.sendAppend(pr, req);
      sent = true;
      if (pr.probing) break;
    }
    if (!sent && heartbeat) {
      // An empty append keeps the lease and carries the commit LSN. With nothing in flight it
      // probes at next - 1 (finds where a new follower's log ends); with appends in flight it
      // checks the known match point, which cannot fail because of those in-flight entries.
      const prev = pr.inflight === 0 ? pr.next - 1 : Math.max(pr.match, this.store.base().lsn);
      const req = buildAppend(this.store, this.term, this.commitLsn, prev + 1, { ...this.limits, maxBatchEntries: 0 });
      if (req) this.sendAppend(pr, { ...req, entries: [] });
      else if (!pr.needsMigration) {
        pr.needsMigration = true;
        this.replicateTo(id, heartbeat);
      }
    }
  }

  private sendAppend(pr: Progress, req: AppendRequest): void {
    pr.inflight++;
    const term = this.term;
    this.transport.request(pr.id, req, this.t.requestTimeoutMs, (reply) => {
      if (this.stopped || this.role !== "leader" || this.term !== term || this.progress.get(pr.id) !== pr) {
        if (reply && reply.term > this.term) this.becomeFollower(reply.term, null);
        return;
      }
      pr.inflight = Math.max(0, pr.inflight - 1);
      if (!reply || reply.type !== "append_reply") {
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
      if (this.role === "leader") this.replicateTo(pr.id, false);
    } else {
      if (reply.hintLsn < pr.match) return; // stale: sent before a later append succeeded
      pr.probing = true;
      pr.next = Math.max(pr.match + 1, Math.min(pr.next, reply.hintLsn + 1));
      this.replicateTo(pr.id, false);
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
    if (candidate > this.commitLsn && termAt(this.store, candidate) === this.term) {
      this.commitLsn = candidate;
      this.noteCommittedConfig();
      this.applyCommitted();
    }
    this.checkWaiters();
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
        w.reject(new NotLeaderError(`node ${this.id} lost leadership before entry ${w.lsn} was acknowledged; outcome unknown`, this.leaderId));
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
    if (termAt(this.store, this.commitLsn) !== this.term) return;
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
      const heard = Math.max(pr?.lastReplyAt ?? this.leaderSince, this.membership.peers.get(id)?.lastHeard ?? -Infinity);
      if (now - heard > this.opts.deadAfterMs) {
        this.log.warn(`node ${this.id}: removing node ${id} from the voters (silent for ${Math.round(now - heard)} ms)`);
        return this.appendConfig({ voters: members.voters.filter((v) => v.id !== id) });
      }
    }
  }

  private appendConfig(members: ClusterMembers): void {
    this.pending.push({ lsn: this.lastLsn() + 1, term: this.term, kind: "config", data: encodeMembers(members) });
    this.flush();
  }

  private manageHandover(now: number): void {
    if (this.handover) {
      if (now - this.handover.start > this.t.handoverTimeoutMs) {
        this.log.info(`node ${this.id}: handover to node ${this.handover.target} timed out; keeping leadership`);
        this.handover = null;
        this.nextHandoverAt = now + this.handoverBackoffMs;
        this.handoverBackoffMs = Math.min(this.handoverBackoffMs * 2, this.t.handoverBackoffMaxMs);
      } else this.tryFinishHandover();
      return;
    }
    if (now < this.nextHandoverAt || !this.isVoter()) return;
    for (const id of this.otherVoters()) {
      if (id >= this.id) break;
      const pr = this.progress.get(id);
      const info = this.membership.peers.get(id)?.info;
      if (!pr || !info || info.neverLeader || info.state === "NeedsMigration" || pr.needsMigration) continue;
      if (pr.caughtUpSince === null || now - pr.caughtUpSince < this.t.handoverStableMs) continue;
      if (now - pr.lastReplyAt > this.t.heartbeatMs * 2) continue;
      this.log.info(`node ${this.id}: handing leadership over to node ${id} (lower ID, caught up)`);
      this.handover = { target: id, start: now };
      this.tryFinishHandover();
      return;
    }
  }

  private tryFinishHandover(): void {
    const h = this.handover;
    if (!h || this.role !== "leader") return;
    this.flush();
    const pr = this.progress.get(h.target);
    if (!pr) return;
    if (pr.match < this.store.lastLsn()) return this.replicateTo(h.target, false);
    this.transport.send(h.target, { type: "timeout_now", term: this.term });
    // Step down before the target can win: there is never a moment with two leaders.
    this.becomeFollower(this.term, null);
  }

  // ---------------------------------------------------------------------------------------------
  // Follower

  private onAppend(from: NodeId, req: AppendRequest, reply: (m: Message) => void): void {
    const fail = (hintLsn: Lsn, needsMigration?: boolean) =>
      reply({ type: "append_reply", term: this.term, ok: false, matchLsn: 0, hintLsn, needsMigration } satisfies AppendReply);
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
    if (this.needsMigration) {
      this.updateSelfState();
      return fail(this.store.lastLsn(), true);
    }
    const result = followerAppend(this.store, req, Math.max(this.commitLsn, this.appliedLsn));
    if (!result.ok) {
      if (req.migrate && result.hintLsn < req.prevLsn) {
        this.needsMigration = true;
        this.log.warn(`node ${this.id}: the leader no longer has the entries this node needs (from ${result.hintLsn + 1}); it needs a migration`);
      } else if (result.needsMigration) {
        this.needsMigration = true;
        this.log.warn(`node ${this.id}: entries this node already committed conflict with leader ${from}; it needs a migration`);
      }
      this.updateSelfState();
      return fail(result.hintLsn, this.needsMigration);
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
    reply({ type: "append_reply", term: this.term, ok: true, matchLsn: result.matchLsn, hintLsn: 0 } satisfies AppendReply);
  }

  // ---------------------------------------------------------------------------------------------
  // Applying

  private applyCommitted(): void {
    while (!this.applying && this.applyError === null && !this.needsMigration && this.appliedLsn < this.commitLsn && !this.stopped) {
      const entry = this.store.get(this.appliedLsn + 1);
      if (!entry) {
        this.applyError = `entry ${this.appliedLsn + 1} is missing from the log`;
        return;
      }
      let result: void | Promise<void>;
      try {
        result = this.fsm.apply(entry);
      } catch (err) {
        return this.onApplyError(entry, err);
      }
      if (result instanceof Promise) {
        this.applying = true;
        result.then(
          () => {
            this.applying = false;
            this.appliedLsn = entry.lsn;
            this.applyCommitted();
          },
          (err) => {
            this.applying = false;
            this.onApplyError(entry, err);
          },
        );
        return;
      }
      this.appliedLsn = entry.lsn;
    }
  }

  private onApplyError(entry: LogEntry, err: unknown): void {
    this.applyError = `applying entry ${entry.lsn} failed: ${err instanceof Error ? err.message : String(err)}`;
    this.log.error(`node ${this.id}: ${this.applyError}; this node stops applying until fixed`);
  }

  // ---------------------------------------------------------------------------------------------
  // Membership and messages

  private updateSelfState(): void {
    const lag = this.role === "leader" ? 0 : this.leaderId === null ? null : Math.max(0, this.leaderLastLsn - this.followerMatch);
    const s = selfState({
      needsMigration: this.needsMigration,
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
      neverLeader: this.opts.neverLeader,
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
      this.replicateTo(from, true);
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
    const voters = fresh.slice(0, n).map((id) => ({ id, addr: id === this.id ? this.opts.addr : (this.membership.peers.get(id)?.addr ?? "") }));
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
