/** `wolf ctl scale` and `wolf scale status`: talking to the local daemon's API and printing. */
import { DaemonClient } from "../common/daemon-client.ts";
import { formatTable } from "../common/format.ts";
import { localApiUrl } from "./addresses.ts";
import type { NodeView, StatusView } from "./api/views.ts";
import type { ScaleConfig } from "./config.ts";
import { WITNESS_ROLE } from "./witness.ts";

/** The local daemon's API, with the admin token; errors say how to start the daemon. */
export class ScaleClient {
  readonly base: string;
  private readonly client: DaemonClient;

  constructor(cfg: ScaleConfig, file: string) {
    this.base = localApiUrl(cfg);
    this.client = new DaemonClient(
      { base: this.base, token: cfg.api.admin_token },
      {
        service: "wolf scale",
        startHint: `start it with: wolf scale start --config ${file} (or check [api] listen in ${file})`,
        namesRequest: true,
        timeoutMs: 30_000,
      },
    );
  }

  request<T>(method: "GET" | "POST", path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    return this.client.request<T>(method, path, body, timeoutMs);
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>("GET", path);
  }
  post<T>(path: string, body: unknown = {}, timeoutMs?: number): Promise<T> {
    return this.request<T>("POST", path, body, timeoutMs);
  }
}

export function formatNodes(nodes: NodeView[]): string {
  const rows = [["ID", "STATUS", "ROLE", "ADDRESS", "API", "LSN", "LAG"]];
  for (const n of nodes) {
    rows.push([
      `${n.id}${n.self ? "*" : ""}`,
      String(n.state),
      n.witness ? `${n.role ?? "-"} (witness)` : `${n.role ?? "-"}${n.preferred ? " (preferred)" : ""}`,
      n.addr || "?",
      n.api ?? "-",
      String(n.lsn),
      String(n.lag),
    ]);
  }
  return formatTable(rows);
}

export function formatScaleStatus(s: StatusView): string {
  const lines = [
    `node        ${s.id} (${s.role}, ${s.state}), term ${s.term}, leader ${s.leader ?? "-"}${s.leaderApi ? ` at ${s.leaderApi}` : ""}`,
    `log         last ${s.lastLsn}, committed ${s.commitLsn}, applied ${s.appliedLsn}; voters ${s.voters.join(", ")}${s.quorum ? " (quorum)" : ""}`,
    s.witness
      ? `witness     ${WITNESS_ROLE}`
      : `database    ${s.database.up ? "up" : `DOWN (${s.database.error})`}, MariaDB ${s.database.version}, server_id ${s.database.serverId}`,
    `replication ack=${s.ack}, mode=${s.mode}${s.writable ? ", accepting writes" : ""}`,
    `leadership  preferred ${s.preferredLeader === null ? "lowest eligible ID" : `node ${s.preferredLeader}`}, failback ${s.failback}`,
  ];
  if (s.capture)
    lines.push(
      `capture     ${s.capture.connected ? "connected" : "disconnected"}, ${s.capture.transactions} transactions, at ${s.capture.gtid || "-"}`,
    );
  lines.push(
    `writes      ${s.writes.writes} ok, ${s.writes.writeErrors} failed, ${s.writes.ackTimeouts} unacknowledged, ${s.writes.ackFallbacks ?? 0} below their ack level, ${s.writes.forwarded} forwarded`,
  );
  if (s.applyError) lines.push(`APPLY STOPPED ${s.applyError}`);
  if (s.diverged) lines.push(`NEEDS MIGRATION ${s.diverged}`);
  if (s.held.length) lines.push(`not eligible ${s.held.join(", ")}`);
  return lines.join("\n");
}
