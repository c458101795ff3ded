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
