/**
 * The checker of a fault run (Jepsen's "checker"): a history of client writes — each with a
 * unique key, sent to one node, answered ok (with the LSN and ack level the answer names), with
 * an error, or not at all (unknown) — and of the leadership each node reported while the run
 * went on. After healing and convergence, `checkRun` compares the history with what every node's
 * MariaDB holds:
 *
 *  - lost: an acknowledged key missing on some node;
 *  - duplicated: a key (acknowledged or not) present more than once, or a tally (bumped in the
 *    same transaction as each key) that differs from the number of rows: a transaction applied twice;
 *  - checksums: CHECKSUM TABLE differs between nodes;
 *  - split brain: two nodes reported leading in the same term, or two acknowledged writes got
 *    the same LSN (two leaders committed different entries at one log position).
 *
 * Writes that failed or got no answer are indeterminate (they may or may not have landed); the
 * checker only counts how many landed.
 */

export type Outcome = "ok" | "error" | "unknown";

export interface WriteOp {
  key: string;
  /** The node the client sent it to (followers forward to the leader). */
  node: number;
  startedAt: number;
  endedAt: number;
  outcome: Outcome;
  /** HTTP status of the answer, when there was one. */
  status?: number;
  lsn?: number;
  ack?: string;
  error?: string;
}

/** A node said "I lead term `term`" at `at` (from /status polled during the run). */
export interface LeaderSample {
  node: number;
  term: number;
  writable: boolean;
  at: number;
}

export class History {
  readonly writes: WriteOp[] = [];
  readonly leaders: LeaderSample[] = [];
  /** Per term, the nodes seen leading it (kept small: one entry per node and term). */
  private readonly seen = new Map<string, LeaderSample>();

  record(op: WriteOp): void {
    this.writes.push(op);
  }

  observeLeader(s: LeaderSample): void {
    const k = `${s.term}/${s.node}`;
    if (this.seen.has(k)) return;
    this.seen.set(k, s);
    this.leaders.push(s);
  }

  get acknowledged(): WriteOp[] {
    return this.writes.filter((w) => w.outcome === "ok");
  }

  /** Acknowledged writes that finished after `at` (progress made since then). */
  ackedSince(at: number): number {
    let n = 0;
    for (let i = this.writes.length - 1; i >= 0 && this.writes[i]!.endedAt >= at; i--)
      if (this.writes[i]!.outcome === "ok") n++;
    return n;
  }
}

/** What one node's MariaDB holds at the end. */
export interface NodeHoldings {
  id: number;
  /** key → how many rows hold it. */
  keys: Map<string, number>;
  rows: number;
  tally: number;
  checksums: Record<string, unknown>;
  /**
   * Set when the run did not converge: the node's applied LSN. A write acknowledged at a higher LSN
   * is durable on the majority that acknowledged it, not yet on this node: not counted as lost here.
   */
  appliedLsn?: number;
}

export interface RunVerdict {
  ok: boolean;
  writes: number;
  acknowledged: number;
  /** Acknowledged keys missing somewhere: key → nodes lacking it. */
  lost: Map<string, number[]>;
  /** Keys more than once on some node: key → "node:count". */
  duplicated: Map<string, string[]>;
  tallyMismatch: string[];
  checksumsEqual: boolean;
  checksums: Record<number, Record<string, unknown>>;
  /** Terms two nodes reported leading, and LSNs two acknowledged writes share. */
  splitBrain: string[];
  /** Failed or unanswered writes that are present (allowed: they were indeterminate). */
  indeterminateLanded: number;
  indeterminate: number;
  /** Set when the cluster did not recover after a heal (liveness); the run then failed. */
  stuck?: string;
  /** The nodes compared (all of them unless some never recovered). */
  checkedNodes: number[];
}

/** `stuck`: why the cluster did not recover (a liveness failure; the run fails with it). */
export function checkRun(history: History, nodes: NodeHoldings[], stuck?: string): RunVerdict {
  const acked = history.acknowledged;
  const lost = new Map<string, number[]>();
  for (const w of acked) {
    const lacking = nodes
      .filter((n) => !n.keys.has(w.key) && !(n.appliedLsn !== undefined && w.lsn !== undefined && w.lsn > n.appliedLsn))
      .map((n) => n.id);
    if (lacking.length > 0) lost.set(w.key, lacking);
  }
  const duplicated = new Map<string, string[]>();
  for (const n of nodes)
    for (const [k, count] of n.keys)
      if (count > 1) duplicated.set(k, [...(duplicated.get(k) ?? []), `node ${n.id}: ${count}`]);
  const tallyMismatch = nodes
    .filter((n) => n.tally !== n.rows)
    .map((n) => `node ${n.id}: tally ${n.tally}, ${n.rows} rows`);
  const first = JSON.stringify(nodes[0]?.checksums ?? {});
  const checksumsEqual = nodes.every((n) => JSON.stringify(n.checksums) === first);

  const splitBrain: string[] = [];
  const byTerm = new Map<number, LeaderSample[]>();
  for (const s of history.leaders) byTerm.set(s.term, [...(byTerm.get(s.term) ?? []), s]);
  for (const [term, samples] of byTerm) {
    const who = new Set(samples.map((s) => s.node));
    if (who.size > 1)
      splitBrain.push(
        `term ${term} led by nodes ${[...who].join(" and ")} (${samples.map((s) => `node ${s.node} at ${new Date(s.at).toISOString()}`).join(", ")})`,
      );
  }
  const byLsn = new Map<number, WriteOp>();
  for (const w of acked) {
    if (w.lsn === undefined) continue;
    const other = byLsn.get(w.lsn);
    if (other)
      splitBrain.push(
        `LSN ${w.lsn} acknowledged for two writes: ${other.key} (via node ${other.node}) and ${w.key} (via node ${w.node})`,
      );
    else byLsn.set(w.lsn, w);
  }

  const indeterminate = history.writes.filter((w) => w.outcome !== "ok");
  const indeterminateLanded = indeterminate.filter((w) => nodes.every((n) => n.keys.has(w.key))).length;
  return {
    ok:
      stuck === undefined &&
      nodes.length > 0 &&
      lost.size === 0 &&
      duplicated.size === 0 &&
      tallyMismatch.length === 0 &&
      checksumsEqual &&
      splitBrain.length === 0,
    stuck,
    checkedNodes: nodes.map((n) => n.id),
    writes: history.writes.length,
    acknowledged: acked.length,
    lost,
    duplicated,
    tallyMismatch,
    checksumsEqual,
    checksums: Object.fromEntries(nodes.map((n) => [n.id, n.checksums])),
    splitBrain,
    indeterminateLanded,
    indeterminate: indeterminate.length,
  };
}

/** The one-line verdict every run ends with. */
export function verdictLine(seed: number, cycles: number, v: RunVerdict): string {
  const head = `scale faults: seed ${seed}, ${cycles} cycles, ${v.writes} writes (${v.acknowledged} acknowledged)`;
  if (v.ok) return `${head}, 0 lost, 0 duplicated, checksums equal`;
  const parts = [
    `${v.lost.size} lost`,
    `${v.duplicated.size} duplicated`,
    v.checksumsEqual ? "checksums equal" : "CHECKSUMS DIFFER",
    ...(v.tallyMismatch.length ? [`tally mismatch (${v.tallyMismatch.join("; ")})`] : []),
    ...(v.splitBrain.length ? [`SPLIT BRAIN: ${v.splitBrain.length} violation(s)`] : []),
    ...(v.stuck ? [`NOT RECOVERED (nodes checked: ${v.checkedNodes.join(",") || "none"})`] : []),
  ];
  return `${head}, ${parts.join(", ")} — FAILED; replay: SCALE_FAULTS_SEED=${seed}`;
}

/** Everything a failure report needs: each lost write, who acknowledged it, what each node holds. */
export function explainFailure(history: History, v: RunVerdict, limit = 20): string {
  const lines: string[] = [];
  const byKey = new Map(history.writes.map((w) => [w.key, w]));
  for (const [k, lacking] of [...v.lost].slice(0, limit)) {
    const w = byKey.get(k)!;
    lines.push(
      `lost ${k}: acknowledged via node ${w.node} at ${new Date(w.endedAt).toISOString()} (lsn ${w.lsn}, ack ${w.ack}); missing on node(s) ${lacking.join(", ")}`,
    );
  }
  for (const [k, where] of [...v.duplicated].slice(0, limit)) lines.push(`duplicated ${k}: ${where.join(", ")}`);
  for (const s of v.splitBrain.slice(0, limit)) lines.push(`split brain: ${s}`);
  lines.push(...v.tallyMismatch);
  if (v.stuck) lines.push(`not recovered: ${v.stuck}`);
  if (!v.checksumsEqual) lines.push(`checksums: ${JSON.stringify(v.checksums)}`);
  lines.push(
    `leaders seen: ${history.leaders.map((s) => `t${s.term}=n${s.node}@${new Date(s.at).toISOString().slice(11, 23)}`).join(" ")}`,
  );
  return lines.join("\n");
}
