/** The JSON the API serves about a node and its cluster, and the Prometheus text, from one snapshot. */
import type { ClusterStatus } from "../../cluster/status.ts";
import type { AckLevel, NodeState, Role } from "../../cluster/types.ts";
import type { WalStats } from "../../wal/wal.ts";
import type { CaptureStats } from "../binlog/capture.ts";
import type { FsmStats } from "../fsm.ts";
import type { WriteCounters } from "../writes.ts";

/** Everything the views show about a node, taken at once (ApiBackend.snapshot). */
export interface NodeSnapshot {
  cluster: ClusterStatus;
  /** A witness (`[cluster] witness`): votes and stores the log, no database, never serves. */
  witness: boolean;
  /** Why this node is not eligible to lead (ClusterNode.heldBack). */
  held: string[];
  leaderApi: string | null;
  api: string;
  address: string;
  /** Why this node needs a migration, when it does. */
  diverged: string | null;
  /** Leader and capturing: writes are accepted. */
  writable: boolean;
  ack: AckLevel;
  mode: string;
  database: { up: boolean; error: string | null; applyWaiting: string | null; version: string; serverId: number };
  capture: CaptureStats | null;
  apply: FsmStats & { lazy: boolean };
  writes: WriteCounters;
  wal: WalStats;
  /** Other nodes' API URLs, by node id. */
  apis: ReadonlyMap<number, string>;
  /** Nodes that registered as witnesses. */
  witnesses: ReadonlySet<number>;
  uptimeMs: number;
}

export type StatusView = ReturnType<typeof statusView>;

export interface NodeView {
  id: number;
  self: boolean;
  api: string | null;
  addr: string;
  state: NodeState | string;
  role: Role | null;
  voter: boolean;
  /** A witness: votes and stores the log, has no database, never serves. */
  witness: boolean;
  /** The operator's preferred leader (wolf ctl scale promote). */
  preferred: boolean;
  lsn: number;
  lag: number;
  lastSeenMsAgo: number | null;
}

export function statusView(d: NodeSnapshot) {
  const s = d.cluster;
  const cap = d.capture;
  const state = d.diverged ? "NeedsMigration" : s.state;
  return {
    id: s.id,
    role: s.role,
    witness: d.witness,
    state,
    term: s.term,
    leader: s.leader,
    leaderApi: d.leaderApi,
    api: d.api,
    address: d.address,
    lastLsn: s.lastLsn,
    commitLsn: s.commitLsn,
    appliedLsn: s.appliedLsn,
    voters: s.voters,
    quorum: s.quorum,
    preferredLeader: s.preferredLeader,
    failback: s.failback,
    applyError: s.applyError,
    diverged: d.diverged,
    held: d.held,
    writable: d.writable,
    ack: d.ack,
    mode: d.mode,
    database: d.database,
    capture: cap
      ? {
          connected: cap.connected,
          transactions: cap.transactions,
          events: cap.events,
          bytes: cap.bytes,
          lastLsn: cap.lastLsn,
          gtid: cap.gtidState,
          reconnects: cap.reconnects,
          lastError: cap.lastError ?? null,
        }
      : null,
    apply: d.apply,
    writes: d.writes,
    wal: d.wal,
    peers: s.peers,
    transport: s.transport,
    uptimeMs: d.uptimeMs,
  };
}

export function nodesView(d: NodeSnapshot): NodeView[] {
  const s = d.cluster;
  const selfLag =
    s.role === "leader"
      ? 0
      : Math.max(0, ...s.peers.filter((p) => p.role === "leader").map((p) => p.lsn - s.appliedLsn), 0);
  const out: NodeView[] = [
    {
      id: s.id,
      self: true,
      api: d.api,
      addr: d.address,
      state: d.diverged ? "NeedsMigration" : d.database.up || d.witness ? s.state : `${s.state} (db down)`,
      role: s.role,
      voter: s.voters.includes(s.id),
      witness: d.witness,
      preferred: s.preferredLeader === s.id,
      lsn: s.appliedLsn,
      lag: selfLag,
      lastSeenMsAgo: 0,
    },
  ];
  for (const p of s.peers) {
    out.push({
      id: p.id,
      self: false,
      api: d.apis.get(p.id) ?? null,
      addr: p.addr,
      state: p.state,
      role: p.role,
      voter: p.voter,
      witness: d.witnesses.has(p.id),
      preferred: s.preferredLeader === p.id,
      lsn: p.lsn,
      lag: p.lag,
      lastSeenMsAgo: p.lastSeenMsAgo,
    });
  }
  return out.sort((a, b) => a.id - b.id);
}

export function metricsText(d: NodeSnapshot): string {
  const s = d.cluster;
  const lines: string[] = [];
  const metric = (name: string, help: string, type: "gauge" | "counter", samples: Array<[string, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) lines.push(`${name}${labels} ${v}`);
  };
  const id = `node="${s.id}"`;
  metric("wolf_scale_leader", "1 if this node leads", "gauge", [[`{${id}}`, s.role === "leader" ? 1 : 0]]);
  metric("wolf_scale_witness", "1 if this node is a witness (no database)", "gauge", [[`{${id}}`, d.witness ? 1 : 0]]);
  metric("wolf_scale_term", "Current leadership term", "gauge", [[`{${id}}`, s.term]]);
  metric("wolf_scale_last_lsn", "Last LSN in this node's log", "gauge", [[`{${id}}`, s.lastLsn]]);
  metric("wolf_scale_commit_lsn", "Committed LSN", "gauge", [[`{${id}}`, s.commitLsn]]);
  metric("wolf_scale_applied_lsn", "LSN applied to the local MariaDB", "gauge", [[`{${id}}`, s.appliedLsn]]);
  metric("wolf_scale_database_up", "1 if the local MariaDB answers", "gauge", [[`{${id}}`, d.database.up ? 1 : 0]]);
  metric("wolf_scale_needs_migration", "1 if this node needs a migration", "gauge", [
    [`{${id}}`, d.diverged || s.state === "NeedsMigration" ? 1 : 0],
  ]);
  metric("wolf_scale_apply_error", "1 if applying stopped on an error", "gauge", [[`{${id}}`, s.applyError ? 1 : 0]]);
  metric(
    "wolf_scale_peer_lag_entries",
    "Entries a peer is behind",
    "gauge",
    s.peers.map((p) => [`{${id},peer="${p.id}"}`, p.lag]),
  );
  metric("wolf_scale_writes_total", "Writes committed through the API on this node", "counter", [
    [`{${id}}`, d.writes.writes],
  ]);
  metric("wolf_scale_write_errors_total", "API writes that failed", "counter", [[`{${id}}`, d.writes.writeErrors]]);
  metric("wolf_scale_ack_failures_total", "Writes committed but not acknowledged in time", "counter", [
    [`{${id}}`, d.writes.ackTimeouts],
  ]);
  metric(
    "wolf_scale_ack_fallbacks_total",
    "Writes answered below their ack level (replication.ack_fallback = async)",
    "counter",
    [[`{${id}}`, d.writes.ackFallbacks]],
  );
  metric("wolf_scale_forwarded_total", "Writes forwarded to the leader", "counter", [[`{${id}}`, d.writes.forwarded]]);
  metric("wolf_scale_applied_entries_total", "Entries applied since start", "counter", [[`{${id}}`, d.apply.applied]]);
  metric("wolf_scale_apply_retries_total", "Apply attempts retried while MariaDB was unreachable", "counter", [
    [`{${id}}`, d.apply.retries],
  ]);
  metric("wolf_scale_captured_transactions_total", "Transactions captured in the current leadership", "counter", [
    [`{${id}}`, d.capture?.transactions ?? 0],
  ]);
  const w = d.wal;
  metric("wolf_scale_wal_bytes", "Bytes in WAL segments", "gauge", [[`{${id}}`, w.bytes]]);
  metric("wolf_scale_wal_fsyncs_total", "WAL fsyncs", "counter", [[`{${id}}`, w.fsyncs]]);
  return `${lines.join("\n")}\n`;
}
