/** `wolf ctl scale` and `wolf scale status`: talking to the local daemon's API and printing. */
import { describeSystemError, errnoName, errnoReason, WolfError } from "../common/errors.ts";
import { formatTable } from "../common/format.ts";
import { localApiUrl } from "./addresses.ts";
import type { NodeView } from "./api/views.ts";
import type { ScaleConfig } from "./config.ts";

export class ScaleClient {
  readonly base: string;

  constructor(
    private readonly cfg: ScaleConfig,
    private readonly file: string,
  ) {
    this.base = localApiUrl(cfg);
  }

  async request<T>(method: "GET" | "POST", path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.cfg.api.admin_token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw this.notReachable(err, timeoutMs);
    }
    const text = await res.text();
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
    if (!res.ok) {
      const e = data as { error?: string; hint?: string };
      const code = res.status === 401 ? "auth" : res.status === 400 ? "usage" : "state";
      throw new WolfError(code, `${method} ${path}: ${e?.error ?? text.slice(0, 300)}`, { hint: e?.hint });
    }
    return data as T;
  }

  /** Why the daemon did not answer, as net's control client says it (lib/net/control.ts). */
  private notReachable(err: unknown, timeoutMs: number): WolfError {
    const start = {
      hint: `start it with: wolf scale start --config ${this.file} (or check [api] listen in ${this.file})`,
      cause: err,
    };
    const name = errnoName(err) ?? (err as Error).name;
    if (name === "ECONNREFUSED")
      return new WolfError("state", `the wolf scale daemon is not running (nothing answers at ${this.base})`, start);
    if (name === "TimeoutError" || name === "AbortError") {
      return new WolfError(
        "network",
        `the wolf scale daemon did not answer at ${this.base} within ${timeoutMs / 1000} s`,
        {
          hint: "it may be overloaded or stuck; see its log (journalctl -u wolf-scale)",
          cause: err,
        },
      );
    }
    const known = describeSystemError(err, this.base);
    if (known)
      return new WolfError(known.code, `the wolf scale daemon is not reachable: ${known.message}`, {
        hint: known.hint ?? start.hint,
        cause: err,
      });
    return new WolfError("state", `the wolf scale daemon is not reachable at ${this.base}: ${errnoReason(err)}`, start);
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
      n.role ?? "-",
      n.addr || "?",
      n.api ?? "-",
      String(n.lsn),
      String(n.lag),
    ]);
  }
  return formatTable(rows);
}

// biome-ignore lint: the status view is a plain object
export function formatScaleStatus(s: any): string {
  const lines = [
    `node        ${s.id} (${s.role}, ${s.state}), term ${s.term}, leader ${s.leader ?? "-"}${s.leaderApi ? ` at ${s.leaderApi}` : ""}`,
    `log         last ${s.lastLsn}, committed ${s.commitLsn}, applied ${s.appliedLsn}; voters ${s.voters.join(", ")}${s.quorum ? " (quorum)" : ""}`,
    `database    ${s.database.up ? "up" : `DOWN (${s.database.error})`}, MariaDB ${s.database.version}, server_id ${s.database.serverId}`,
    `replication ack=${s.ack}, mode=${s.mode}${s.writable ? ", accepting writes" : ""}`,
  ];
  if (s.capture)
    lines.push(
      `capture     ${s.capture.connected ? "connected" : "disconnected"}, ${s.capture.transactions} transactions, at ${s.capture.gtid || "-"}`,
    );
  lines.push(
    `writes      ${s.writes.writes} ok, ${s.writes.writeErrors} failed, ${s.writes.ackTimeouts} unacknowledged, ${s.writes.forwarded} forwarded`,
  );
  if (s.applyError) lines.push(`APPLY STOPPED ${s.applyError}`);
  if (s.diverged) lines.push(`NEEDS MIGRATION ${s.diverged}`);
  if (s.held.length) lines.push(`not eligible ${s.held.join(", ")}`);
  return lines.join("\n");
}
