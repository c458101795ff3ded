/**
 * A simulated cluster for unit tests: ClusterNodes on a SimNetwork with a SimClock and a seeded
 * Rng, plus invariant checks that run after every simulated event.
 */
import { SimClock, seededRng } from "../../../lib/cluster/clock.ts";
import { MemoryLogStore } from "../../../lib/cluster/log-store.ts";
import { ClusterNode, type NodeOptions } from "../../../lib/cluster/node.ts";
import { MemoryStableStore } from "../../../lib/cluster/stable-store.ts";
import { SimNetwork, type SimNetworkOptions } from "../../../lib/cluster/transport-memory.ts";
import type { FSM, LogEntry, Lsn, NodeId, Term } from "../../../lib/cluster/types.ts";

import { setLogLevel } from "../../../lib/common/log.ts";

if (!process.env.WOLF_LOG_LEVEL) setLogLevel("error");
const dec = new TextDecoder();
const enc = new TextEncoder();

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
  /** Every entry some leader reported committed (= acknowledged at ack=majority). */
  readonly acked = new Map<Lsn, { term: Term; payload: string }>();
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
      const m: SimMember = { id, node: null, store: new MemoryLogStore(), stable: new MemoryStableStore(), fsm: null as unknown as RecordingFSM };
      m.fsm = new RecordingFSM(id, this);
      this.members.set(id, m);
    }
    for (const id of opts.ids) {
      this.startNode(id);
      if (opts.bootstrap !== false) this.members.get(id)!.node!.bootstrap(opts.ids.map((v) => ({ id: v, addr: `sim:${v}` })));
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
      { id, addr: `sim:${id}`, heartbeatMs: this.opts.heartbeatMs ?? 100, ...this.opts.node, ...extra },
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

  crash(id: NodeId): void {
    const m = this.members.get(id)!;
    m.node?.stop();
    m.node = null;
    this.net.transport(id).close(); // in-flight messages to the old endpoint are lost
  }

  restart(id: NodeId): ClusterNode {
    if (this.isUp(id)) this.crash(id);
    return this.startNode(id);
  }

  private onLeader(id: NodeId, term: Term): void {
    this.elections.push({ at: this.clock.now(), id, term });
    const prev = this.leaderOfTerm.get(term);
    if (prev !== undefined && prev !== id) this.violation(`two leaders in term ${term}: ${prev} and ${id}`);
    this.leaderOfTerm.set(term, id);
    // Leader completeness: every acknowledged entry must be in the new leader's log.
    const store = this.store(id);
    for (const [lsn, a] of this.acked) {
      if (lsn <= store.base().lsn) continue;
      const e = store.get(lsn);
      if (!e || e.term !== a.term) this.violation(`new leader ${id} (term ${term}) lacks acknowledged entry ${lsn} (term ${a.term})`);
    }
  }

  /** Records what leaders have committed; runs after every event. */
  private recordCommits(): void {
    for (const m of this.members.values()) {
      const n = m.node;
      if (!n || n.getRole() !== "leader") continue;
      const commit = n.committed();
      for (let lsn = commit; lsn > 0 && !this.acked.has(lsn); lsn--) {
        const e = m.store.get(lsn);
        if (!e) break;
        this.acked.set(lsn, { term: e.term, payload: describe(e) });
      }
      const check = this.acked.get(commit);
      const mine = m.store.get(commit);
      if (check && mine && check.term !== mine.term) this.violation(`leader ${n.id} committed lsn ${commit} with term ${mine.term}, but term ${check.term} was acknowledged there`);
    }
  }

  checkApplied(id: NodeId, e: LogEntry): void {
    const d = describe(e);
    const prev = this.appliedByLsn.get(e.lsn);
    if (prev === undefined) this.appliedByLsn.set(e.lsn, d);
    else if (prev !== d) this.violation(`node ${id} applied ${d} at lsn ${e.lsn}, another node applied ${prev}`);
  }

  run(ms: number, until?: () => boolean): boolean {
    return this.clock.runFor(ms, () => {
      this.recordCommits();
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

  /** Appends on the current leader(s) (every node that believes it leads), ignoring refusals. */
  propose(): number {
    let n = 0;
    for (const id of this.leaders()) {
      try {
        this.node(id).append(enc.encode(`p${++this.proposals}@${id}`));
        n++;
      } catch {
        // not leader / handing over: a client would retry elsewhere
      }
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
