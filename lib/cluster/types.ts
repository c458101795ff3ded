/**
 * The cluster core's vocabulary and its small interfaces (hashicorp/raft style): a node is wired
 * from a Transport, a LogStore, a StableStore, an FSM, a Clock and an Rng, so the same logic runs
 * over TCP in production and over a simulated network with simulated time in tests.
 */
import { WolfError } from "../common/errors.ts";

/** Positive integer, unique in a cluster. Lower IDs are preferred as leader (unless ClusterMembers.preferred). */
export type NodeId = number;
/** Log sequence number: 1, 2, 3, … (0 means "nothing"). */
export type Lsn = number;
/** Leadership term: increases with every election; 0 before the first. */
export type Term = number;

/**
 * data   an entry appended by the application (scale: a transaction)
 * noop   written by a new leader at the start of its term so earlier entries can commit
 * config the voter set (JSON `ClusterMembers`), effective as soon as it is in the log
 */
export type EntryKind = "data" | "noop" | "config";

export interface LogEntry {
  lsn: Lsn;
  term: Term;
  kind: EntryKind;
  data: Uint8Array;
}

/** The voter set carried by `config` entries, with the operator's preferred leader. */
export interface ClusterMembers {
  voters: { id: NodeId; addr: string }[];
  /**
   * The node that should lead while it is an eligible, caught-up voter (ClusterNode.setPreferredLeader):
   * it ranks first in elections and the leader hands over to it (failback = auto). Absent: the
   * lowest eligible ID is preferred. Kept by every voter change.
   */
  preferred?: NodeId;
}

/**
 * An append-only log. Implementations must make `append` and `truncateAfter` durable before they
 * return (a follower acknowledges an entry only after `append` returned), and may batch one fsync
 * per call. `base` is the entry just before the first stored one (after pruning or a migration),
 * so the term at the boundary is still known.
 */
export interface LogStore {
  /** {lsn: 0, term: 0} for a log that was never pruned. */
  base(): { lsn: Lsn; term: Term };
  /** LSN of the last entry, or base().lsn when empty. */
  lastLsn(): Lsn;
  get(lsn: Lsn): LogEntry | undefined;
  /** Entries from..to inclusive (clipped to what is stored), stopping early after maxBytes of data. */
  range(from: Lsn, to: Lsn, maxBytes?: number): LogEntry[];
  /** Entries must continue the log: the first has lsn = lastLsn() + 1. */
  append(entries: LogEntry[]): void;
  /** Removes every entry with lsn > `lsn` (used for uncommitted entries a new leader overrides). */
  truncateAfter(lsn: Lsn): void;
  /** Drops entries with lsn < `lsn` (retention); base() becomes the entry at lsn - 1. */
  pruneBefore(lsn: Lsn): void;
  /** Empties the log and sets base() (after a node was migrated from a dump taken at lsn). */
  resetTo(base: { lsn: Lsn; term: Term }): void;
  close?(): void;
  /**
   * false: append() does not make entries durable (scale's `wal.fsync = false`). Such a node's copy
   * never counts toward commits or acknowledgements (a crash could take it back); its vote still
   * counts, which is safe because every commit majority then consists of durable copies only.
   */
  readonly durable?: boolean;
}

/** Persistent election state: must be durable before `set` returns (a vote must survive a crash). */
export interface HardState {
  term: Term;
  votedFor: NodeId | null;
  /** The most recent committed config entry, so a node restarting after pruning still knows the voters. */
  committedConfig: { lsn: Lsn; members: ClusterMembers } | null;
  /**
   * Started with nothing (an empty data directory) and not yet caught up with a leader's whole log:
   * its log may lack what its old disk held, so its vote needs backing (Campaign.won).
   */
  recovering?: boolean;
}

export interface StableStore {
  get(): HardState;
  set(state: HardState): void;
  close?(): void;
}

/**
 * The application's state machine. `apply` is called for every committed entry strictly in LSN
 * order (lsn = previous + 1), including `noop` and `config` entries (ignore what you do not need).
 * It may return a promise; the next entry waits for it. A throw stops applying on this node and is
 * reported in status (never skipped). `appliedLsn` tells a restarting node where to resume, so an
 * FSM that stores its progress atomically with its state gets exactly-once application.
 */
export interface FSM {
  apply(entry: LogEntry): void | Promise<void>;
  /**
   * Optional: applies several consecutive committed entries at once (scale: one database
   * transaction for several captured ones), used instead of `apply` when more than one entry is
   * ready. Same rules; after a throw, `appliedLsn()` tells how far it got and the next entry is
   * the one reported as failed.
   */
  applyBatch?(entries: LogEntry[]): void | Promise<void>;
  appliedLsn(): Lsn;
}

/** Timers and time, injectable so simulations are deterministic. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}
export type TimerHandle =
  | { readonly id: number }
  | { readonly immediate: ReturnType<typeof setImmediate> }
  | ReturnType<typeof setTimeout>;

/** Random numbers in [0, 1): seeded in tests. */
export type Rng = () => number;

// ---------------------------------------------------------------------------------------------
// Messages between nodes. Every message carries the sender's term (fencing: a higher term seen
// anywhere makes the receiver step down; a lower one is refused).

export type NodeState = "Joining" | "Syncing" | "Active" | "Lagging" | "Dropped" | "Offline" | "NeedsMigration";
export type Role = "leader" | "follower" | "candidate";

/** What a node says about itself in every ping; every node builds its membership view from these. */
export interface PeerInfo {
  id: NodeId;
  addr: string;
  state: NodeState;
  role: Role;
  leader: NodeId | null;
  lastLsn: Lsn;
  lastTerm: Term;
  commitLsn: Lsn;
  appliedLsn: Lsn;
  neverLeader: boolean;
  voter: boolean;
}

export interface VoteRequest {
  type: "vote";
  term: Term;
  lastLsn: Lsn;
  lastTerm: Term;
  /** A pre-vote asks "would you vote for me in term `term`?" without anyone changing state. */
  pre: boolean;
  /** Sent after the leader's "take over now": voters skip the leader-lease check. */
  handover: boolean;
}
export interface VoteReply {
  type: "vote_reply";
  term: Term;
  granted: boolean;
  /** The voter is recovering (started with an empty data directory, not caught up yet): see Campaign. */
  recovering?: boolean;
}
export interface AppendRequest {
  type: "append";
  term: Term;
  prevLsn: Lsn;
  prevTerm: Term;
  entries: LogEntry[];
  commitLsn: Lsn;
  /** The leader's last LSN, so a follower knows how far behind it is. */
  leaderLastLsn: Lsn;
  /** The entries this follower needs were pruned: it must be migrated from a dump. */
  migrate?: boolean;
}
export interface AppendReply {
  type: "append_reply";
  term: Term;
  ok: boolean;
  /** On success: last LSN known to match the leader (prevLsn + entries.length). */
  matchLsn: Lsn;
  /** On failure: the leader should retry from hintLsn + 1. */
  hintLsn: Lsn;
  /** The follower cannot continue from the log (gap pruned, or applied entries diverged). */
  needsMigration?: boolean;
  /**
   * Identifies the follower's log: new in every process and after a restore from a dump. A change
   * tells the leader that what this follower acknowledged before may be gone.
   */
  epoch?: number;
  /** The follower's log is not durable (LogStore.durable false): its copy does not count. */
  volatile?: boolean;
}
export interface TimeoutNow {
  type: "timeout_now";
  term: Term;
}
export interface Ping {
  type: "ping";
  term: Term;
  info: PeerInfo;
}

export type Message = VoteRequest | VoteReply | AppendRequest | AppendReply | TimeoutNow | Ping;

/**
 * Moves messages between nodes. `request` correlates one reply with one request; `done` is called
 * exactly once, with undefined when the request failed or timed out. Handlers receive a `reply`
 * function for requests. Implementations never throw from send/request (a lost message is normal).
 */
export interface Transport {
  readonly localId: NodeId;
  send(to: NodeId, msg: Message): void;
  request(to: NodeId, msg: Message, timeoutMs: number, done: (reply: Message | undefined) => void): void;
  setHandler(handler: MessageHandler): void;
  /** Where a peer can be reached (TCP: host:port). The in-memory transport ignores it. */
  setPeerAddress(id: NodeId, addr: string): void;
  /** Counters for status/metrics (frames dropped for bad auth, oversize, …). */
  counters(): Record<string, number>;
  close(): void;
}
export type MessageHandler = (from: NodeId, msg: Message, reply: ((msg: Message) => void) | undefined) => void;

/** Thrown by append/waitFor on a node that is not (or stopped being) the leader. */
export class NotLeaderError extends WolfError {
  readonly leader: NodeId | null;
  constructor(message: string, leader: NodeId | null) {
    super("state", message, {
      hint: leader === null ? "no leader right now; retry shortly" : `send writes to node ${leader}`,
    });
    this.name = "NotLeaderError";
    this.leader = leader;
  }
}

export type AckLevel = "none" | "one" | "majority" | "all";

/**
 * A wait for an acknowledgement level timed out: the entry is in the leader's log (and possibly on
 * some followers) but not on as many nodes as the level requires. `reached` is the level it has.
 */
export class AckTimeoutError extends WolfError {
  readonly reached: AckLevel;
  constructor(message: string, reached: AckLevel) {
    super("state", message, {
      hint: "check that the followers are up (wolf ctl scale list servers); ack = none/one/majority/all sets how many must hold a write",
    });
    this.name = "AckTimeoutError";
    this.reached = reached;
  }
}

/**
 * An entry as the leader appended it: its LSN and the term it was appended in. Within one
 * leadership the pair names exactly one entry; after leadership changed, the same LSN may hold
 * another entry, so acknowledgements are always asked for the pair (ClusterNode.waitFor).
 */
export interface EntryRef {
  lsn: Lsn;
  term: Term;
}
export const ACK_LEVELS: readonly AckLevel[] = ["none", "one", "majority", "all"];
