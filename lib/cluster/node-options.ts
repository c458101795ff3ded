/**
 * What a ClusterNode is built from: its options, the parts it is wired to, and the events it
 * reports to the application.
 */
import type { QuorumMode } from "./election.ts";
import type { ReplicationLimits } from "./replication.ts";
import type { Clock, FSM, LogStore, NodeId, Rng, Role, StableStore, Term, Transport } from "./types.ts";

export interface NodeOptions {
  id: NodeId;
  /** host:port other nodes use to reach this one (carried in pings and config entries). */
  addr?: string;
  heartbeatMs?: number;
  quorum?: QuorumMode;
  deadAfterMs?: number;
  /**
   * The leader removes a voter silent for deadAfterMs only while at least this many voters remain
   * (default 3, like Consul autopilot's min_quorum): a 3-voter cluster never shrinks by itself.
   */
  minVoters?: number;
  neverLeader?: boolean;
  /**
   * A witness: a voter that stores the log (its durable copy counts for commits and acks) but has
   * no application state to serve, like Galera's arbitrator. It campaigns only when no voter that
   * may lead has a log as complete as its own (otherwise such a voter could never win), and as
   * leader it only brings one of them up to date and hands over at once.
   */
  witness?: boolean;
  /** Form a new cluster once this many nodes with empty logs see each other (0 = never). */
  bootstrapExpect?: number;
  /** The leader adds discovered nodes as voters once they caught up (default true). */
  autoJoin?: boolean;
  /** A follower within this many entries of the leader is Active (default 1000). */
  lagEntries?: number;
  limits?: Partial<ReplicationLimits>;
  /** How long events.prepareHandover may take before the handover is abandoned (default 30 s). */
  handoverDrainTimeoutMs?: number;
  /**
   * auto (default): a leader hands over by itself to the preferred leader (ClusterMembers.preferred,
   * else the lowest eligible ID) once that one is caught up. manual: no automatic handover;
   * leadership moves only on failure or an operator's action (transferLeadership, stepDown).
   */
  failback?: "auto" | "manual";
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
