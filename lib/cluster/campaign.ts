/**
 * Elections as one node runs them (the rules are in election.ts): the election timer ranked by
 * lower eligible IDs, pre-vote then vote rounds, the voter's answer to a (pre-)vote request, and
 * TimeoutNow from a leader handing over.
 */
import type { ConsolaInstance as Logger } from "consola";
import type { Configuration } from "./configuration.ts";
import { electionTimeoutMs, logUpToDate, votesNeeded, type Timings } from "./election.ts";
import type { Membership } from "./membership.ts";
import { lastTerm } from "./replication.ts";
import type {
  Clock,
  LogStore,
  Message,
  NodeId,
  Rng,
  Role,
  Term,
  TimerHandle,
  Transport,
  VoteReply,
  VoteRequest,
} from "./types.ts";

/** What elections read from and do to their node (which owns term, vote and role). */
export interface CampaignHost {
  readonly id: NodeId;
  readonly store: LogStore;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly membership: Membership;
  readonly config: Configuration;
  readonly t: Timings;
  readonly log: Logger;
  term(): Term;
  role(): Role;
  leader(): NodeId | null;
  votedFor(): NodeId | null;
  /** When the leader this node follows was last heard from. */
  lastLeaderContact(): number;
  stopped(): boolean;
  quorum(): boolean;
  /** Voter, not never_leader or held back, no migration needed, no apply error. */
  mayCampaign(): boolean;
  /** Within the lease of a live leader (this one, or the one it follows, if not `from`). */
  inLease(from: NodeId): boolean;
  /** Records (durably) this node's vote for `id` in the current term. */
  vote(id: NodeId): void;
  /** Starts the next term as candidate, voting for itself (durably), with no leader. */
  becomeCandidate(): void;
  becomeLeader(): void;
  becomeFollower(term: Term, leader: NodeId | null): void;
  /** The leader went silent: this node no longer follows it. */
  forgetLeader(): void;
}

export class Campaign {
  private timer: TimerHandle | null = null;
  private deferrals = 0;
  private votes = new Set<NodeId>();
  private preVotes = new Set<NodeId>();
  private preVoteTerm: Term = -1;

  constructor(private readonly host: CampaignHost) {}

  /** (Re)arms the election timer; `immediate`: only jitter (a sole voter); `from`: counted from then. */
  resetTimer(immediate = false, from?: number): void {
    const { host } = this;
    if (host.stopped()) return;
    if (this.timer) host.clock.clearTimeout(this.timer);
    const now = host.clock.now();
    let ms = immediate ? host.rng() * host.t.jitterMs : electionTimeoutMs(host.t, this.lowerEligible(now), host.rng());
    if (from !== undefined) ms = Math.max(1, from + ms - now);
    this.timer = host.clock.setTimeout(() => this.onElectionTimeout(), ms);
  }

  stopTimer(): void {
    if (this.timer) this.host.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  /** Became leader: no election timer, no deferrals carried into the next election. */
  onLeader(): void {
    this.deferrals = 0;
    this.stopTimer();
  }

  /** Became (or stayed) follower: a pre-vote round in flight no longer counts. */
  onFollower(): void {
    this.preVoteTerm = -1;
  }

  /** Rank: lower-ID voters that are alive, may lead, and have a log at least as up to date as ours. */
  private lowerEligible(now: number): number {
    const { host } = this;
    const mine = { lastTerm: lastTerm(host.store), lastLsn: host.store.lastLsn() };
    let rank = 0;
    for (const id of host.config.otherVoters()) {
      // The leader we follow does not count: the timer only fires once it went silent, and
      // counting it would add half a heartbeat to every failover.
      if (id >= host.id || id === host.leader() || !host.membership.alive(id, now, host.t.electionBaseMs)) continue;
      const info = host.membership.peers.get(id)?.info;
      if (!info || info.neverLeader || info.state === "NeedsMigration" || info.state === "Joining") continue;
      if (logUpToDate(info, mine)) rank++;
    }
    return rank;
  }

  private onElectionTimeout(): void {
    const { host } = this;
    this.timer = null;
    if (host.stopped() || host.role() === "leader") return;
    const now = host.clock.now();
    if (host.leader() !== null && now - host.lastLeaderContact() < host.t.electionBaseMs) {
      // Heartbeats do not re-arm the timer (that would be a timer per message); re-arm it here
      // so the deadline counts from the last contact with the leader.
      this.resetTimer(false, host.lastLeaderContact());
      return;
    }
    if (host.leader() !== null) host.forgetLeader();
    if (host.role() === "candidate") host.becomeFollower(host.term(), null);
    if (!host.mayCampaign()) {
      this.resetTimer();
      return;
    }
    if (this.deferrals < 2 && this.lowerEligible(now) > 0) {
      this.deferrals++;
      this.resetTimer();
      return;
    }
    this.deferrals = 0;
    this.startPreVote();
    this.resetTimer();
  }

  /** Quorum off: voters heard from within the election timeout (a dead leader drops out in time). */
  private aliveVoterCount(): number {
    const { host } = this;
    const now = host.clock.now();
    return host.config.voterIds().all.filter((id) => host.membership.alive(id, now, host.t.electionBaseMs)).length;
  }

  private needed(): number {
    return votesNeeded(this.host.quorum(), this.host.config.voterIds().all.length, this.aliveVoterCount());
  }

  private startPreVote(): void {
    const { host } = this;
    this.preVotes = new Set([host.id]);
    this.preVoteTerm = host.term() + 1;
    if (this.preVotes.size >= this.needed()) return this.startElection(false);
    const req: VoteRequest = {
      type: "vote",
      term: host.term() + 1,
      lastLsn: host.store.lastLsn(),
      lastTerm: lastTerm(host.store),
      pre: true,
      handover: false,
    };
    const roundTerm = host.term();
    for (const id of host.config.otherVoters()) {
      host.transport.request(id, req, host.t.requestTimeoutMs, (reply) => {
        if (host.stopped() || !reply || reply.type !== "vote_reply") return;
        if (reply.term > host.term() && !reply.granted) return host.becomeFollower(reply.term, null);
        if (host.term() !== roundTerm || host.role() !== "follower" || this.preVoteTerm !== roundTerm + 1) return;
        if (!reply.granted || !host.config.isVoter(id)) return;
        this.preVotes.add(id);
        if (this.preVotes.size >= this.needed()) {
          this.preVoteTerm = -1;
          this.startElection(false);
        }
      });
    }
  }

  private startElection(handover: boolean): void {
    const { host } = this;
    if (!host.mayCampaign()) return;
    host.becomeCandidate();
    this.votes = new Set([host.id]);
    host.log.debug(`node ${host.id}: campaigning in term ${host.term()}${handover ? " (handover)" : ""}`);
    this.resetTimer();
    if (this.votes.size >= this.needed()) return host.becomeLeader();
    const req: VoteRequest = {
      type: "vote",
      term: host.term(),
      lastLsn: host.store.lastLsn(),
      lastTerm: lastTerm(host.store),
      pre: false,
      handover,
    };
    const electionTerm = host.term();
    for (const id of host.config.otherVoters()) {
      host.transport.request(id, req, host.t.requestTimeoutMs, (reply) => {
        if (host.stopped() || !reply || reply.type !== "vote_reply") return;
        if (reply.term > host.term()) return host.becomeFollower(reply.term, null);
        if (host.role() !== "candidate" || host.term() !== electionTerm || !reply.granted || !host.config.isVoter(id))
          return;
        this.votes.add(id);
        if (this.votes.size >= this.needed()) host.becomeLeader();
      });
    }
  }

  /** The voter's side: a (pre-)vote request from candidate `from`. */
  onVote(from: NodeId, req: VoteRequest, reply: (m: Message) => void): void {
    const { host } = this;
    const mine = { lastTerm: lastTerm(host.store), lastLsn: host.store.lastLsn() };
    const refuse = () => reply({ type: "vote_reply", term: host.term(), granted: false } satisfies VoteReply);
    if (req.term < host.term()) return refuse();
    if (!req.handover && host.inLease(from)) return refuse();
    if (req.pre) {
      const granted = req.term > host.term() && logUpToDate(req, mine);
      return reply({ type: "vote_reply", term: host.term(), granted } satisfies VoteReply);
    }
    if (req.term > host.term()) host.becomeFollower(req.term, null);
    const votedFor = host.votedFor();
    const granted = (votedFor === null || votedFor === from) && logUpToDate(req, mine);
    if (granted) {
      host.vote(from);
      this.resetTimer();
    }
    reply({ type: "vote_reply", term: host.term(), granted } satisfies VoteReply);
  }

  /** A leader handing over to this node: campaign now, in the leader's term + 1. */
  onTimeoutNow(from: NodeId, term: Term): void {
    const { host } = this;
    if (term !== host.term() || host.role() === "leader" || !host.mayCampaign()) return;
    host.log.info(`node ${host.id}: taking over leadership from node ${from}`);
    this.startElection(true);
  }
}
