/** The plain status object `node.status()` returns (JSON-safe; `wolf ctl` prints it). */
import type { Membership } from "./membership.ts";
import type { Lsn, NodeId, NodeState, Role, Term } from "./types.ts";

export interface PeerStatus {
  id: NodeId;
  addr: string;
  /** As this node sees it (liveness thresholds applied to what the peer reports). */
  state: NodeState;
  role: Role | null;
  voter: boolean;
  /** On the leader: the LSN the peer is known to hold; elsewhere: what the peer last reported. */
  lsn: Lsn;
  /** Entries behind the leader's last LSN. */
  lag: number;
  lastSeenMsAgo: number | null;
}

export interface ClusterStatus {
  id: NodeId;
  role: Role;
  term: Term;
  state: NodeState;
  leader: NodeId | null;
  lastLsn: Lsn;
  lastTerm: Term;
  commitLsn: Lsn;
  appliedLsn: Lsn;
  /** Whether majority rules are in force right now. */
  quorum: boolean;
  voters: NodeId[];
  /** Configured never_leader, or held back right now (heldBack). */
  neverLeader: boolean;
  /** Why this node may not lead right now (ClusterNode.setEligible), e.g. "database down". */
  heldBack: string[];
  /** Set while this leader is handing leadership over (to the preferred or a lower ID, or as asked). */
  handoverTo: NodeId | null;
  /** The operator's preferred leader from the replicated config (null: the lowest eligible ID). */
  preferredLeader: NodeId | null;
  /** [cluster] failback of this node: auto = handback to the preferred leader, manual = none. */
  failback: "auto" | "manual";
  /** Why this node stopped applying, if it did. */
  applyError: string | null;
  peers: PeerStatus[];
  /** Transport counters: frames dropped for bad authentication, oversize, etc. */
  transport: Record<string, number>;
}

/**
 * Every peer this node knows or has as a voter, by ID. `refLsn` is what lag is counted from;
 * `progressOf` gives the leader's replication progress (then the LSN is the known match).
 */
export function peerStatuses(
  self: NodeId,
  membership: Membership,
  voterIds: Set<NodeId>,
  now: number,
  refLsn: Lsn,
  progressOf: (id: NodeId) => { match: Lsn } | undefined,
): PeerStatus[] {
  const ids = new Set<NodeId>([...membership.peers.keys(), ...voterIds]);
  ids.delete(self);
  return [...ids]
    .sort((a, b) => a - b)
    .map((id) => {
      const p = membership.peers.get(id);
      const pr = progressOf(id);
      const lsn = pr ? pr.match : (p?.info?.lastLsn ?? 0);
      return {
        id,
        addr: p?.addr ?? "",
        state: membership.stateOf(id, now),
        role: p?.info?.role ?? null,
        voter: voterIds.has(id),
        lsn,
        lag: Math.max(0, refLsn - lsn),
        lastSeenMsAgo: p && p.lastHeard !== -Infinity ? Math.round(now - p.lastHeard) : null,
      };
    });
}

/** One line per node for logs and `wolf ctl … status`. */
export function formatStatus(s: ClusterStatus): string {
  const head = `node ${s.id}: ${s.role} ${s.state} term ${s.term} leader ${s.leader ?? "-"} preferred ${s.preferredLeader ?? "lowest ID"} lsn ${s.lastLsn} commit ${s.commitLsn} applied ${s.appliedLsn}`;
  const peers = s.peers.map(
    (p) => `  node ${p.id} ${p.addr || "?"} ${p.state}${p.voter ? "" : " (learner)"} lsn ${p.lsn} lag ${p.lag}`,
  );
  return [head, ...peers].join("\n");
}
