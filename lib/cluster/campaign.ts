/**
 * Elections as one node runs them (the rules are in election.ts): the election timer ranked by
 * the eligible voters ahead of this node (the preferred leader, then lower IDs), pre-vote then vote rounds, the voter's answer to a (pre-)vote request, and
 * TimeoutNow from a leader handing over.
 */
import type { ConsolaInstance as Logger } from "consola";
import type { Configuration } from "./configuration.ts";
import { electionTimeoutMs, logUpToDate, majority, votesNeeded, type Timings } from "./election.ts";
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
  /** A voter, not never_leader, and not needing a migration of its log (a stand-in may campaign). */
  mayCampaign(): boolean;
  /** May lead only to hand over (ClusterNode.isStandIn): campaigns only as a last resort. */
  standIn(): boolean;
  /** Started with an empty data directory and not caught up yet (HardState.recovering). */
  recovering(): boolean;
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
  /** Voters that answered this round as recovering (their grants need backing, see won()). */
  private recoveringVoters = new Set<NodeId>();
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

  /**
   * Rank: voters ahead of this one (the preferred leader of the current config, then lower IDs:
   * handover.ts leadershipOrder) that are alive, may lead, and have a log at least as up to date as
   * ours. A stand-in (a witness, or a voter held back or needing a migration of its application
   * state) counts such voters of any ID: it only campaigns when none of them could win.
   */
  private lowerEligible(now: number): number {
    const { host } = this;
    const mine = { lastTerm: lastTerm(host.store), lastLsn: host.store.lastLsn() };
    const preferred = host.config.members().preferred ?? null;
    const preferredVoter = preferred !== null && host.config.isVoter(preferred);
    // Ahead of this node: the preferred voter (unless that is this node), then lower IDs (unless
    // this node is the preferred one).
    const standIn = host.standIn();
    const ahead = (id: NodeId) =>
      standIn || (preferredVoter && preferred === id) || (id < host.id && !(preferredVoter && preferred === host.id));
    let rank = 0;
    for (const id of host.config.otherVoters()) {
      // The leader we follow does not count: the timer only fires once it went silent, and
      // counting it would add half a heartbeat to every failover.
      if (!ahead(id) || id === host.leader() || !host.membership.alive(id, now, host.t.electionBaseMs)) continue;
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
    // A stand-in waits as long as some voter that may lead could win; others defer at most twice
    // in a row, so an unreachable "alive" node cannot block elections.
    if ((host.standIn() || this.deferrals < 2) && this.lowerEligible(now) > 0) {
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

  /**
   * Enough votes to win. A recovering voter (its data directory was wiped; it has not caught up)
   * may have lost a copy of an acknowledged entry, so its grant alone must not decide: besides a
   * majority of all voters, the grants of the voters that are not recovering must be a majority of
   * those voters. If an entry the candidate lacks was committed on a majority S, every voter in S
   * that still holds it refuses the candidate; with one recovering voter B, the others that grant
   * number more than half of the n - 1 others, which leaves too few of them to make up S with B.
   * (Two wiped disks can lose an entry only they held; no vote rule brings that back.) A brand-new
   * cluster still forms: its bootstrapping node counts as the majority of the non-recovering voters.
   */
  private won(votes: Set<NodeId>): boolean {
    if (votes.size < this.needed()) return false;
    if (!this.host.quorum() || this.recoveringVoters.size === 0) return true;
    const voters = this.host.config.voterIds().all.length;
    let solid = 0;
    for (const id of votes) if (!this.recoveringVoters.has(id)) solid++;
    return solid >= majority(voters - this.recoveringVoters.size);
  }

  private startPreVote(): void {
    const { host } = this;
    this.preVotes = new Set([host.id]);
    this.preVoteTerm = host.term() + 1;
    this.recoveringVoters = new Set(host.recovering() ? [host.id] : []);
    if (this.won(this.preVotes)) return this.startElection(false);
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
        if (!host.config.isVoter(id)) return;
        if (reply.recovering) this.recoveringVoters.add(id);
        if (!reply.granted) return;
        this.preVotes.add(id);
        if (this.won(this.preVotes)) {
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
    this.recoveringVoters = new Set(host.recovering() ? [host.id] : []);
    host.log.debug(`node ${host.id}: campaigning in term ${host.term()}${handover ? " (handover)" : ""}`);
    this.resetTimer();
    if (this.won(this.votes)) return host.becomeLeader();
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
        if (host.role() !== "candidate" || host.term() !== electionTerm || !host.config.isVoter(id)) return;
        if (reply.recovering) this.recoveringVoters.add(id);
        if (!reply.granted) return;
        this.votes.add(id);
        if (this.won(this.votes)) host.becomeLeader();
      });
    }
  }

  /** The voter's side: a (pre-)vote request from candidate `from`. */
  onVote(from: NodeId, req: VoteRequest, reply: (m: Message) => void): void {
    const { host } = this;
    const mine = { lastTerm: lastTerm(host.store), lastLsn: host.store.lastLsn() };
    const answer = (granted: boolean): VoteReply =>
      host.recovering()
        ? { type: "vote_reply", term: host.term(), granted, recovering: true }
        : { type: "vote_reply", term: host.term(), granted };
    const refuse = () => reply(answer(false));
    if (req.term < host.term()) return refuse();
    if (!req.handover && host.inLease(from)) return refuse();
    if (req.pre) {
      return reply(answer(req.term > host.term() && logUpToDate(req, mine)));
    }
    if (req.term > host.term()) host.becomeFollower(req.term, null);
    const votedFor = host.votedFor();
    const granted = (votedFor === null || votedFor === from) && logUpToDate(req, mine);
    if (granted) {
      host.vote(from);
      this.resetTimer();
    }
    reply(answer(granted));
  }

  /** A leader handing over to this node: campaign now, in the leader's term + 1. */
  onTimeoutNow(from: NodeId, term: Term): void {
    const { host } = this;
    if (term !== host.term() || host.role() === "leader" || !host.mayCampaign()) return;
    host.log.info(`node ${host.id}: taking over leadership from node ${from}`);
    this.startElection(true);
  }
}
