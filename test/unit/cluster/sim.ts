/**
 * A simulated cluster for unit tests: ClusterNodes on a SimNetwork with a SimClock and a seeded
 * Rng, plus invariant checks that run after every simulated event.
 */
import { SimClock, seededRng } from "../../../lib/cluster/clock.ts";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import { ClusterNode, type NodeOptions } from "../../../lib/cluster/node.ts";
import { MemoryStableStore } from "../../../lib/cluster/stable-store.ts";
import { SimNetwork, type SimNetworkOptions } from "../../../lib/cluster/transport-memory.ts";
import type { AckLevel, EntryRef, FSM, LogEntry, Lsn, NodeId, Term } from "../../../lib/cluster/types.ts";

import { setLogLevel } from "../../../lib/common/log.ts";

if (!process.env.WOLF_LOG_LEVEL) setLogLevel("error");
const dec = new TextDecoder();
const enc = new TextEncoder();

/** Lets promise callbacks (waitFor outcomes) run between simulated steps. */
export async function microtasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await null;
}

/** Tracks a promise's outcome so simulated-time tests can inspect it synchronously. */
export function track(p: Promise<void>) {
  const s = { done: false, error: null as Error | null };
  p.then(
    () => (s.done = true),
    (e: Error) => (s.error = e),
  );
  return s;
}

/** An entry some leader reported acknowledged (committed, ackedBy, or a resolved waitFor). */
export interface Ack {
  lsn: Lsn;
  term: Term;
  /** describe() of the entry. */
  payload: string;
  /** The lowest term of a leader that reported it: every leader of a higher term must hold it. */
  ackTerm: Term;
  how: string;
}

/** A MemoryLogStore that counts changes, so checks over all logs run only after one changed. */
class SimLogStore extends MemoryLogStore {
  constructor(private readonly changed: () => void) {
    super();
  }
  override append(entries: LogEntry[]): void {
    super.append(entries);
    this.changed();
  }
  override truncateAfter(lsn: Lsn): void {
    super.truncateAfter(lsn);
    this.changed();
  }
}

/** A leader's log at the moment it was elected. */
interface LeaderLog {
  id: NodeId;
  term: Term;
  base: Lsn;
  entries: LogEntry[];
}

/** A durable FSM that checks order: every apply must be lsn = previous + 1. */
export class RecordingFSM implements FSM {
  applied: LogEntry[] = [];
  constructor(
    private readonly id: NodeId,
    private readonly sim: SimCluster,
  ) {}
  appliedLsn(): Lsn {
    return this.applied.length;
  }
  apply(entry: LogEntry): void {
    const expected = this.applied.length + 1;
    if (entry.lsn !== expected) this.sim.violation(`node ${this.id} applied lsn ${entry.lsn}, expected ${expected}`);
    this.applied.push(entry);
    this.sim.checkApplied(this.id, entry);
  }
}

interface SimMember {
  id: NodeId;
  node: ClusterNode | null;
  store: MemoryLogStore;
  stable: MemoryStableStore;
  fsm: RecordingFSM;
}

export interface SimOptions {
  ids: NodeId[];
  seed: number;
  heartbeatMs?: number;
  net?: SimNetworkOptions;
  node?: Partial<NodeOptions>;
  /** Write the voter set into every log before starting (default true). */
  bootstrap?: boolean;
  /** Options of one node on top of `node` (e.g. a witness: neverLeader), at every (re)start. */
  perNode?: (id: NodeId) => Partial<NodeOptions>;
}

export class SimCluster {
  readonly clock = new SimClock();
  readonly rng;
  readonly net: SimNetwork;
  readonly members = new Map<NodeId, SimMember>();
  readonly ids: NodeId[];
  readonly violations: string[] = [];
  /** term -> the node that became leader in it. */
  readonly leaderOfTerm = new Map<Term, NodeId>();
  /**
   * Every entry some leader reported acknowledged: committed, ackedBy(k >= 1), or a resolved
   * waitFor (propose with an ack level). Raft's leader completeness, checked by term rather than by
   * time: an entry acknowledged by the leader of term T is in the log of every leader of a term
   * above T at its election, at the same LSN with the same term and payload.
   */
  readonly acked = new Map<Lsn, Ack>();
  readonly leaderLogs: LeaderLog[] = [];
  /** Per running leader instance: its term and the LSN up to which its acknowledgements were recorded. */
  private readonly recorded = new Map<ClusterNode, { term: Term; upTo: Lsn }>();
  private logChanges = 0;
  private checkedAt = { logChanges: -1, acked: -1 };
  private readonly electableReported = new Set<string>();
  /** Every applied entry by LSN, across nodes: all nodes must apply the same thing. */
  private readonly appliedByLsn = new Map<Lsn, string>();
  readonly elections: { at: number; id: NodeId; term: Term }[] = [];
  private readonly opts: SimOptions;
  private proposals = 0;

  constructor(opts: SimOptions) {
    this.opts = opts;
    this.ids = [...opts.ids];
    this.rng = seededRng(opts.seed);
    this.net = new SimNetwork(this.clock, seededRng(opts.seed ^ 0x5eed), opts.net);
    for (const id of opts.ids) {
      const m: SimMember = {
        id,
        node: null,
        store: new SimLogStore(() => this.logChanges++),
        stable: new MemoryStableStore(),
        fsm: null as unknown as RecordingFSM,
      };
      m.fsm = new RecordingFSM(id, this);
      this.members.set(id, m);
    }
    for (const id of opts.ids) {
      this.startNode(id);
      if (opts.bootstrap !== false)
        this.members.get(id)!.node!.bootstrap(opts.ids.map((v) => ({ id: v, addr: `sim:${v}` })));
    }
  }

  violation(msg: string): void {
    if (this.violations.length < 20) this.violations.push(`t=${this.clock.now().toFixed(1)} ${msg}`);
  }

  node(id: NodeId): ClusterNode {
    const n = this.members.get(id)?.node;
    if (!n) throw new Error(`node ${id} is down`);
    return n;
  }
  isUp(id: NodeId): boolean {
    return this.members.get(id)?.node != null;
  }
  up(): NodeId[] {
    return this.ids.filter((id) => this.isUp(id));
  }
  store(id: NodeId): MemoryLogStore {
    return this.members.get(id)!.store;
  }
  fsm(id: NodeId): RecordingFSM {
    return this.members.get(id)!.fsm;
  }

  startNode(id: NodeId, extra: Partial<NodeOptions> = {}): ClusterNode {
    const m = this.members.get(id)!;
    const node = new ClusterNode(
      {
        id,
        addr: `sim:${id}`,
        heartbeatMs: this.opts.heartbeatMs ?? 100,
        ...this.opts.node,
        ...this.opts.perNode?.(id),
        ...extra,
      },
      {
        transport: this.net.transport(id),
        logStore: m.store,
        stableStore: m.stable,
        fsm: m.fsm,
        clock: this.clock,
        rng: seededRng((this.opts.seed * 31 + id * 7919 + this.clock.executed) >>> 0),
      },
    );
    for (const other of this.ids) if (other !== id) node.addPeer(other, `sim:${other}`);
    node.events.onRoleChange = (role, term) => {
      if (role === "leader") this.onLeader(id, term);
    };
    m.node = node;
    node.start();
    return node;
  }

  /** Stops node `id`; with `powerLoss`, the messages it sent that are still in flight are lost too. */
  crash(id: NodeId, powerLoss = false): void {
    if (powerLoss) this.net.dropInFlightFrom(id);
    const m = this.members.get(id)!;
    m.node?.stop();
    m.node = null;
    this.net.transport(id).close(); // in-flight messages to the old endpoint are lost
  }

  /**
   * Every running node hears of every other again, as discovery beacons (or static peers) make
   * them do: a node that forgot a peer silent for dead_after_ms finds it again.
   */
  rediscover(): void {
    for (const id of this.up())
      for (const other of this.ids) if (other !== id) this.node(id).addPeer(other, `sim:${other}`);
  }

  restart(id: NodeId): ClusterNode {
    if (this.isUp(id)) this.crash(id);
    return this.startNode(id);
  }

  /**
   * Restarts node `id` with an empty data directory: a new log, no term, vote or voter set, and an
   * FSM that has applied nothing (an operator replaced its disk, or wiped /var/lib/wolf).
   */
  wipe(id: NodeId): ClusterNode {
    if (this.isUp(id)) this.crash(id);
    const m = this.members.get(id)!;
    m.store = new SimLogStore(() => this.logChanges++);
    m.stable = new MemoryStableStore();
    m.fsm = new RecordingFSM(id, this);
    this.logChanges++;
    return this.startNode(id);
  }

  private onLeader(id: NodeId, term: Term): void {
    this.elections.push({ at: this.clock.now(), id, term });
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== id) this.violation(`two leaders in term ${term}: ${prev} and ${id}`);
    this.leaderOfTerm.set(term, id);
    // Leader completeness: every entry acknowledged in an earlier term must be in the new leader's log.
    const store = this.store(id);
    const log: LeaderLog = {
      id,
      term,
      base: store.base().lsn,
      entries: store.range(store.base().lsn + 1, store.lastLsn()),
    };
    this.leaderLogs.push(log);
    for (const a of this.acked.values()) if (a.ackTerm < term) this.checkHolds(log, a);
  }

  private checkHolds(log: LeaderLog, a: Ack): void {
    if (a.lsn <= log.base) return; // pruned there: applied long ago
    const e = log.entries[a.lsn - log.base - 1];
    if (!e || e.term !== a.term || describe(e) !== a.payload) {
      this.violation(
        `leader ${log.id} of term ${log.term} has ${e ? describe(e) : "nothing"} at lsn ${a.lsn}, where ${a.payload} was acknowledged (${a.how}) in term ${a.ackTerm}`,
      );
    }
  }

  /** Records an acknowledgement and checks it against every leader elected in a later term so far. */
  acknowledge(lsn: Lsn, entry: { term: Term; payload: string }, ackTerm: Term, how: string): void {
    const prev = this.acked.get(lsn);
    if (prev && (prev.term !== entry.term || prev.payload !== entry.payload)) {
      this.violation(
        `${how} in term ${ackTerm} acknowledged ${entry.payload} at lsn ${lsn}, where ${prev.payload} was acknowledged (${prev.how}) in term ${prev.ackTerm}`,
      );
      return;
    }
    if (prev && prev.ackTerm <= ackTerm) return;
    const a: Ack = { lsn, term: entry.term, payload: entry.payload, ackTerm, how };
    this.acked.set(lsn, a);
    for (const log of this.leaderLogs)
      if (log.term > ackTerm && (!prev || log.term <= prev.ackTerm)) this.checkHolds(log, a);
  }

  /** Records what leaders report acknowledged (commit LSN, ackedBy); runs after every event. */
  private recordCommits(): void {
    for (const m of this.members.values()) {
      const n = m.node;
      if (n?.getRole() !== "leader") continue;
      const term = n.currentTerm();
      let r = this.recorded.get(n);
      if (!r || r.term !== term) {
        r = { term, upTo: m.store.base().lsn };
        this.recorded.set(n, r);
      }
      // ackedBy(1) >= ackedBy(k) for every k: the highest LSN reported acknowledged by anyone.
      const commit = n.committed();
      const acked = Math.max(commit, n.ackedBy(1));
      for (let lsn = r.upTo + 1; lsn <= acked; lsn++) {
        const e = m.store.get(lsn);
        if (!e) {
          this.violation(`leader ${n.id} reports lsn ${lsn} acknowledged but does not have it`);
          break;
        }
        this.acknowledge(lsn, { term: e.term, payload: describe(e) }, term, lsn <= commit ? "commit" : "ackedBy");
      }
      if (acked > r.upTo) r.upTo = acked;
    }
  }

  checkApplied(id: NodeId, e: LogEntry): void {
    const d = describe(e);
    const prev = this.appliedByLsn.get(e.lsn);
    if (prev === undefined) this.appliedByLsn.set(e.lsn, d);
    else if (prev !== d) this.violation(`node ${id} applied ${d} at lsn ${e.lsn}, another node applied ${prev}`);
  }

  /**
   * The same invariant for elections that could still happen: a node whose log lacks an acknowledged
   * entry must never be electable, i.e. its log must not be at least as up to date (Raft's vote rule:
   * higher last term, or same last term and at least as long) as the logs of a majority of the
   * voters, itself included. Running or crashed does not matter: crashes and partitions can always
   * arrange that election. Correct Raft guarantees this at every instant, because the majority that
   * stores an acknowledged entry also stores an entry of the committing leader's term at or after
   * it; a leader that commits an older-term entry by counting (Figure 8) breaks it at once, long
   * before the rare schedule that actually elects such a node. Runs after an event that changed a
   * log or the acknowledged set, while every running node agrees on the voter set and quorum is on
   * (with quorum = never, "one survivor keeps serving" is the documented trade-off). A recovering
   * node (a wiped data directory, not caught up) may grant, but as in Campaign.won the grants of the
   * others must then still be a majority of the others.
   */
  private checkElectable(): void {
    if (this.checkedAt.logChanges === this.logChanges && this.checkedAt.acked === this.acked.size) return;
    this.checkedAt = { logChanges: this.logChanges, acked: this.acked.size };
    if (this.acked.size === 0) return;
    const up = this.up();
    if (up.length === 0) return;
    if (this.opts.node?.quorum === "never") return;
    const voters = this.node(up[0]!).voters();
    if (voters.length < 2 || up.some((id) => this.node(id).voters().join() !== voters.join())) return;
    const logs = voters.map((id) => {
      const store = this.store(id);
      const lastLsn = store.lastLsn();
      const lastTerm = lastLsn === store.base().lsn ? store.base().term : store.get(lastLsn)!.term;
      return { id, store, lastLsn, lastTerm, recovering: this.members.get(id)!.stable.get().recovering === true };
    });
    const recovering = logs.filter((v) => v.recovering).length;
    const need = Math.floor(voters.length / 2) + 1;
    for (const n of logs) {
      let lacks: Ack | undefined;
      for (const a of this.acked.values()) {
        if (a.lsn <= n.store.base().lsn) continue;
        const e = n.store.get(a.lsn);
        if (!e || e.term !== a.term) {
          lacks = a;
          break;
        }
      }
      if (!lacks) continue;
      const granting = logs.filter(
        (v) => n.lastTerm > v.lastTerm || (n.lastTerm === v.lastTerm && n.lastLsn >= v.lastLsn),
      );
      const solid = granting.filter((v) => !v.recovering).length;
      const key = `${n.id}@${lacks.lsn}/${lacks.term}`;
      const backed = recovering === 0 || solid >= Math.floor((voters.length - recovering) / 2) + 1;
      if (granting.length >= need && backed && !this.electableReported.has(key)) {
        this.electableReported.add(key);
        this.violation(
          `node ${n.id} lacks acknowledged ${lacks.payload} at lsn ${lacks.lsn} (${lacks.how}, term ${lacks.ackTerm}) but could be elected: ` +
            `its log (last term ${n.lastTerm}, lsn ${n.lastLsn}) is at least as up to date as those of nodes ${granting.map((v) => v.id).join(", ")} ` +
            `(voters ${voters.join(",")}${
              recovering
                ? `; recovering ${logs
                    .filter((v) => v.recovering)
                    .map((v) => v.id)
                    .join(",")}`
                : ""
            })`,
        );
      }
    }
  }

  run(ms: number, until?: () => boolean): boolean {
    return this.clock.runFor(ms, () => {
      this.recordCommits();
      this.checkElectable();
      return until?.() ?? false;
    });
  }

  /** Leaders (by their own belief) among running nodes. */
  leaders(): NodeId[] {
    return this.up().filter((id) => this.node(id).getRole() === "leader");
  }

  /** Runs until exactly one running node (`want`, if given) leads and every running node follows it. */
  stableLeader(maxMs: number, want?: NodeId): NodeId | undefined {
    let found: NodeId | undefined;
    this.run(maxMs, () => {
      const ls = this.leaders();
      if (ls.length !== 1) return false;
      const l = ls[0]!;
      if (want !== undefined && l !== want) return false;
      if (!this.node(l).isLeader()) return false;
      if (this.up().every((id) => this.node(id).leader() === l)) {
        found = l;
        return true;
      }
      return false;
    });
    return found;
  }

  /**
   * Appends on the current leader(s) (every node that believes it leads), ignoring refusals. With
   * `ack`, a client waits for that level; when it resolves the entry counts as acknowledged.
   */
  propose(ack?: AckLevel): number {
    let n = 0;
    for (const id of this.leaders()) {
      const node = this.node(id);
      const text = `p${++this.proposals}@${id}`;
      let ref: EntryRef;
      try {
        ref = node.append(enc.encode(text));
      } catch {
        continue; // not leader / handing over: a client would retry elsewhere
      }
      n++;
      if (ack === undefined || ack === "none") continue;
      const term = node.currentTerm();
      const entry = { term: ref.term, payload: `${ref.term}/data/${text}` };
      node.waitFor(ref, ack).then(
        () => this.acknowledge(ref.lsn, entry, term, `waitFor(${ack})`),
        () => {}, // leadership lost: outcome unknown, nothing promised
      );
    }
    return n;
  }

  /** Runs until every running node has applied the leader's last entry and logs are identical. */
  converged(maxMs: number): boolean {
    return this.run(maxMs, () => {
      const ls = this.leaders();
      if (ls.length !== 1) return false;
      const leader = this.node(ls[0]!);
      const last = leader.lastLsn();
      const same = this.up().every((id) => {
        const n = this.node(id);
        return n.applied() === last && n.committed() === last && this.store(id).lastLsn() === last;
      });
      if (!same) return false;
      const up = new Set(this.up());
      return !leader.status().peers.some((p) => up.has(p.id) && p.lag > 0);
    });
  }

  logsEqual(): boolean {
    const [first, ...rest] = this.up();
    if (first === undefined) return true;
    const a = this.store(first);
    return rest.every((id) => {
      const b = this.store(id);
      if (b.lastLsn() !== a.lastLsn()) return false;
      for (let lsn = Math.max(a.base().lsn, b.base().lsn) + 1; lsn <= a.lastLsn(); lsn++) {
        if (describe(a.get(lsn)!) !== describe(b.get(lsn)!)) return false;
      }
      return true;
    });
  }
}

export function describe(e: LogEntry): string {
  return `${e.term}/${e.kind}/${dec.decode(e.data)}`;
}
