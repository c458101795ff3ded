/**
 * Election rules: Raft's safety with a deterministic preference for the operator's preferred
 * leader, else the lowest node ID.
 *
 * Terms. Every leadership has a term, persisted (with the vote) in the StableStore before any
 * message that depends on it is sent. Every message carries the sender's term. A node that sees a
 * higher term adopts it and steps down at once; a message with a lower term is refused. A leader
 * counts an acknowledgement only from a reply in its own term, so a deposed leader (one that has
 * not yet heard of the newer term) can never get anything acknowledged: the followers that acked
 * the new leader's election now refuse its term. That is the fencing.
 *
 * Quorum. `cluster.quorum = auto | always | never`. auto and always are the same rule, on: it is a
 * property of the configured mode alone and never changes with the size of the voter set (it once
 * followed the voter count, so removing a dead voter from 3 turned it off and let a lone node lead:
 * two leaders, lost acknowledged writes). With quorum on, a candidate needs votes from a majority of
 * the voters, an entry is committed once a majority of the voters store it (and it is from the
 * leader's current term; earlier entries commit with it), and a leader that has not heard from a
 * majority for 3 heartbeats steps down (check-quorum), so a minority side never has a working
 * leader. A 2-node cluster therefore stops when either node is gone; a witness (a voter that never
 * leads) is the third vote that keeps it going. Automatic removal of dead voters never takes the
 * voter set below `min_voters` (see LeaderState.manageMembers).
 * `never` is the explicit opt-in to "one survivor keeps serving": a candidate needs the votes of
 * every voter it has heard from in the last 3 heartbeats, and entries commit once every such live
 * voter stores them. A true partition then yields one leader per side (in different terms); after
 * healing the higher term wins (acknowledged writes of the other side can be lost) and a node whose
 * *applied* entries were overwritten is marked NeedsMigration instead of silently diverging.
 * Acknowledgements stay truthful in every mode: `one` means a follower holds the entry, never
 * "every follower that happens to be alive" (AckWaiters).
 *
 * Eligibility. A node may campaign only if it is a voter in its current config, `never_leader` is
 * off, it is not NeedsMigration and its FSM has not failed. A voter grants its vote only to a
 * candidate whose log is at least as up to date as its own (higher last term, or equal last term
 * and last LSN >= its own), at most once per term. Because an entry is acknowledged only when a
 * majority stores it, every majority of voters contains a node holding it, so a node that lacks an
 * acknowledged entry cannot win: "holds every acknowledged entry" is enforced by the votes.
 *
 * Pre-vote and leader lease. Before bumping its term a node asks for pre-votes (same checks, no
 * state change). A voter that heard from a live leader within 2 heartbeats refuses (pre-)votes,
 * so a node returning from a partition cannot depose a healthy leader or inflate terms.
 *
 * Leadership order. The voters in order of preference: the preferred leader (ClusterMembers.preferred,
 * set by an operator in a config entry, so every node holding the log agrees and it survives
 * restarts), then the others by ascending ID; without a preference, simply lowest ID first
 * (handover.ts leadershipOrder). A follower's election timeout is 2 heartbeats + rank × ½ heartbeat
 * + jitter (0..½ heartbeat), where rank = how many voters ahead of it in that order, other than the
 * current leader, are alive and eligible with a log at least as up to date as ours (from their
 * pings). When its timer fires while such a node is alive it defers (at most twice in a row, so an
 * unreachable "alive" node cannot block elections). Hence after a leader failure the first eligible
 * survivor in the order normally wins in 2–2.5 heartbeats; a preferred node that is gone, never
 * leads, or lags simply does not count, and the lowest-ID rule applies among the rest. The order
 * only shapes timing: it never changes who may vote or be voted for, so it cannot affect safety
 * (nodes briefly disagreeing about the preference, one holding a newer config entry than another,
 * at worst campaign at the same time, which terms and votes already resolve).
 *
 * Handover (`[cluster] failback = auto`, the default). A leader that sees a voter ahead of it in
 * the order that has been caught up (within `lag_entries`) and reachable for 2 heartbeats starts a
 * handover. With failback = manual no leader hands over by itself (a witness still does): leadership
 * moves only on a failure or an operator's action. ClusterNode.transferLeadership hands over to any
 * eligible voter in either mode. First the application drains (NodeEvents.prepareHandover; appends are still
 * accepted: scale captures what its database already committed), then the leader refuses new
 * appends, waits until the target holds its last entry, sends it TimeoutNow and steps down *before*
 * the other node can win (so there is never a window with two leaders). The target campaigns at
 * once in term + 1 with the handover flag, which lets voters skip the lease check. If the target is
 * not caught up within 2 heartbeats (or the drain fails or takes too long) the leader resumes and
 * retries later with exponential backoff (up to 64 heartbeats).
 */
import type { Lsn, Term } from "./types.ts";

export type QuorumMode = "auto" | "always" | "never";

/** Timings derived from the heartbeat interval (ms). */
export function timings(heartbeatMs: number) {
  return {
    heartbeatMs,
    /** Followers wait this long without a leader before (pre-)voting; also the leader lease voters honour. */
    electionBaseMs: 2 * heartbeatMs,
    rankStepMs: heartbeatMs / 2,
    jitterMs: heartbeatMs / 2,
    /** A peer not heard from for this long is Dropped (suspected) and not "alive". */
    suspectAfterMs: 3 * heartbeatMs,
    /** A leader without a majority of acks for this long steps down. */
    checkQuorumMs: 3 * heartbeatMs,
    /** RPC timeout for append and vote requests. */
    requestTimeoutMs: 2 * heartbeatMs,
    /** A caught-up lower ID must stay so for this long before a handover starts. */
    handoverStableMs: 2 * heartbeatMs,
    handoverTimeoutMs: 2 * heartbeatMs,
    handoverBackoffMinMs: 4 * heartbeatMs,
    handoverBackoffMaxMs: 64 * heartbeatMs,
  };
}
export type Timings = ReturnType<typeof timings>;

/** Majority rule on or off: only `never` turns it off, whatever the size of the voter set. */
export function quorumOn(mode: QuorumMode): boolean {
  return mode !== "never";
}

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/** Raft's up-to-date check: is the candidate's log at least as complete as the voter's? */
export function logUpToDate(
  candidate: { lastTerm: Term; lastLsn: Lsn },
  voter: { lastTerm: Term; lastLsn: Lsn },
): boolean {
  return (
    candidate.lastTerm > voter.lastTerm || (candidate.lastTerm === voter.lastTerm && candidate.lastLsn >= voter.lastLsn)
  );
}

/**
 * Votes a candidate needs. Quorum on: a majority of the voters. Quorum off: every voter that is
 * alive from the candidate's point of view (at least itself).
 */
export function votesNeeded(quorum: boolean, voterCount: number, aliveVoters: number): number {
  return quorum ? majority(voterCount) : Math.max(1, aliveVoters);
}

export function electionTimeoutMs(t: Timings, rank: number, random: number): number {
  return t.electionBaseMs + rank * t.rankStepMs + random * t.jitterMs;
}
