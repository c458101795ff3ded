/**
 * The node's HTTP API (`[api] listen`). Everything but /health needs `Authorization: Bearer
 * <admin_token>`. Writes go to the leader (a follower forwards them there) and are answered once
 * the transaction reached `replication.ack`.
 *
 *   GET  /health                         200 when this node can serve (503 otherwise), no auth
 *   GET  /status  /cluster  /cluster/nodes[/:id]  /metrics (Prometheus)  /id[?n=N] (snowflakes)
 *   POST /write/insert|update|delete|upsert|ddl   structured, parameterised (statements.ts)
 *        (writes take an optional header X-Wolf-Ack: none|one|majority|all instead of replication.ack)
 *   POST /sql     {sql, params?, database?, read_only?}  read_only runs locally in a read-only txn
 *   POST /admin/promote {to?, clear?}   preferred leader (replicated) + hand over now; clear: lowest ID
 *   POST /admin/demote {to?}            leader hands over to `to` (default: most caught up), preferred from then on
 *   POST /admin/reset | /admin/migrate {from}
 *   POST /admin/log-level {level}         this daemon's log level until it restarts; answers {old, level}
 *   GET  /dump                            consistent dump with its LSN (for migrate)
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Server } from "bun";
import { ACK_LEVELS, type AckLevel, NotLeaderError } from "../../cluster/types.ts";
import { UsageError, WolfError } from "../../common/errors.ts";
import { getLogLevel, isLogLevel, LOG_LEVEL_NAMES, logger, setLogLevel } from "../../common/log.ts";
import { DaemonClient } from "../../common/daemon-client.ts";
import { waitUntil } from "../../common/wait.ts";
import { splitHostPort } from "../addresses.ts";
import type { ScaleConfig } from "../config.ts";
import type { DirectoryEntry } from "../directory.ts";
import type { WriteOptions, WriteOutcome } from "../writes.ts";
import type { Snowflake } from "./snowflake.ts";
import { ident, type SqlValue, type Statement, WRITE_BUILDERS } from "./statements.ts";
import { metricsText, type NodeSnapshot, nodesView, statusView } from "./views.ts";

/** The node behind the API (ScaleDaemon). */
export interface ApiBackend {
  readonly nodeId: number;
  readonly apiUrl: string;
  readonly cfg: ScaleConfig;
  readonly snowflake: Snowflake;
  /** Everything /status, /health, /cluster, /cluster/nodes and /metrics show, taken at once. */
  snapshot(): NodeSnapshot;
  /** The leader's API URL, if known. */
  leaderApi(): string | undefined;
  /** The leader's node id, if known. */
  leaderId(): number | null;
  /** Leader: runs the write and waits for its ack level; otherwise throws NotLeaderError. */
  write(stmt: Statement, opts?: WriteOptions): Promise<WriteOutcome>;
  /** A read-only transaction on this node's MariaDB. */
  read(sql: string, params: unknown[], database?: string): Promise<unknown>;
  /** A consistent dump with its LSN (headers X-Wolf-LSN/-Term/-Members). */
  dump(after: number): Promise<Response>;
  /** Prefer `to` (default this node) as leader and move leadership there; `clear`: back to the lowest ID. */
  promote(to: number | undefined, clear: boolean): Promise<string>;
  /** Leader: hand over to `to` (default the most caught-up) and make that node the preferred leader. */
  demote(to: number | undefined): Promise<string>;
  handOver(to: number | undefined, holdMs: number): Promise<string>;
  reset(): string;
  migrateFrom(from: string): Promise<string>;
  /** A node says where its API is, and whether it is a witness (/cluster/register). */
  registerNode(id: number, api: string, witness?: boolean): void;
  /** Every node's API this node knows. */
  knownNodes(): DirectoryEntry[];
  /** A write was forwarded to the leader (counted in /status and /metrics). */
  countForwarded(): void;
}

const log = logger("scale:api");
const MAX_BODY = 16 * 1024 * 1024;

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(stringify(body), { status, headers: { "content-type": "application/json", ...headers } });
}

/** JSON with BigInt as strings and binary values as hex. */
export function stringify(v: unknown): string {
  return JSON.stringify(v, function (this: Record<string, unknown>, key, value) {
    const raw = this[key];
    if (raw instanceof Uint8Array) return Buffer.from(raw).toString("hex");
    if (typeof value === "bigint") return value.toString();
    return value;
  });
}

function errorResponse(err: unknown): Response {
  const e = err as Error & { errno?: number; sqlState?: string; sqlMessage?: string; code?: string };
  if (err instanceof NotLeaderError)
    return json({ ok: false, error: e.message, leader: err.leader, hint: err.hint }, 503);
  if (err instanceof UsageError) return json({ ok: false, error: e.message, hint: err.hint }, 400);
  if (typeof e.errno === "number" && e.sqlState) {
    // A MariaDB error: passed through with its code (the statement was refused; nothing replicated).
    return json(
      { ok: false, error: e.sqlMessage ?? e.message, errno: e.errno, sqlState: e.sqlState },
      e.code === "ECONNREFUSED" ? 503 : 400,
    );
  }
  const fatal =
    (err as { fatal?: boolean }).fatal === true || /closed state|connection lost|Pool is closed/i.test(e.message ?? "");
  if (
    !(err instanceof WolfError) &&
    (fatal ||
      (typeof e.code === "string" &&
        /^(E[A-Z]+|PROTOCOL_CONNECTION_LOST|PROTOCOL_SEQUENCE_TIMEOUT|POOL_CLOSED)$/.test(e.code)))
  ) {
    // The local MariaDB went away mid-request: the outcome of a write in flight is unknown.
    return json({ ok: false, error: `MariaDB connection failed: ${e.message}`, code: e.code }, 503);
  }
  if (err instanceof WolfError) {
    const status =
      err.code === "auth"
        ? 401
        : err.code === "usage"
          ? 400
          : err.code === "state" || err.code === "network"
            ? 503
            : 500;
    return json({ ok: false, error: e.message, hint: err.hint }, status);
  }
  log.error(`API error: ${e.stack ?? e.message}`);
  return json({ ok: false, error: e.message ?? String(err) }, 500);
}

async function readJson(req: Request): Promise<Record<string, unknown>> {
  const len = Number(req.headers.get("content-length") ?? 0);
  if (len > MAX_BODY) throw new UsageError(`request body over ${MAX_BODY} bytes`);
  const text = await req.text();
  if (text.length > MAX_BODY) throw new UsageError(`request body over ${MAX_BODY} bytes`);
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`request body is not JSON: ${(err as Error).message}`);
  }
  if (!body || typeof body !== "object" || Array.isArray(body))
    throw new UsageError("request body must be a JSON object");
  return body as Record<string, unknown>;
}

/** Optional per-request acknowledgement level (header X-Wolf-Ack), else replication.ack. */
function ackOf(req: Request): AckLevel | undefined {
  const h = req.headers.get("x-wolf-ack");
  if (h === null) return undefined;
  if (!ACK_LEVELS.includes(h as AckLevel))
    throw new UsageError(`X-Wolf-Ack must be one of ${ACK_LEVELS.join("|")}, got "${h}"`);
  return h as AckLevel;
}

function writeSummary(result: unknown): Record<string, unknown> {
  const r = result as { affectedRows?: number; insertId?: number; changedRows?: number };
  if (r && typeof r === "object" && !Array.isArray(r) && "affectedRows" in r) {
    return { affectedRows: r.affectedRows, insertId: r.insertId, changedRows: r.changedRows };
  }
  return { results: result };
}

/** The answer to an acknowledged write: what it changed, where it sits in the log, the ack reached. */
function writeAnswer(out: WriteOutcome): Record<string, unknown> {
  return {
    ok: true,
    ...writeSummary(out.result),
    gtid: out.gtid,
    lsn: out.lsn,
    ack: out.ack,
    ms: Math.round(out.ms * 100) / 100,
  };
}

export function startApi(d: ApiBackend): Server<undefined> {
  const tokenHash = createHash("sha256").update(d.cfg.api.admin_token).digest();
  const authorized = (req: Request) => {
    const m = /^Bearer (.+)$/.exec(req.headers.get("authorization") ?? "");
    if (!m || !d.cfg.api.admin_token) return false;
    return timingSafeEqual(createHash("sha256").update(m[1]!).digest(), tokenHash);
  };

  /** Runs `fn` here if this node leads; otherwise sends the same request to the leader. */
  async function onLeader(
    req: Request,
    path: string,
    body: Record<string, unknown>,
    fn: () => Promise<Response>,
  ): Promise<Response> {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof NotLeaderError) || req.headers.get("x-wolf-forwarded")) throw err;
    }
    const api = await waitUntil(() => d.leaderApi(), { timeoutMs: 5000, intervalMs: 20, what: "a leader" }).catch(
      () => undefined,
    );
    if (!api || api === d.apiUrl)
      throw new NotLeaderError(`node ${d.nodeId} is not the leader and no leader is known`, d.leaderId());
    d.countForwarded();
    // Writes only (POST). The caller's token was checked above: it is the admin token we send.
    const res = await new DaemonClient({ base: api, token: d.cfg.api.admin_token })
      .send("POST", path, {
        body,
        headers: {
          "x-wolf-forwarded": String(d.nodeId),
          ...(req.headers.get("x-wolf-ack") ? { "x-wolf-ack": req.headers.get("x-wolf-ack")! } : {}),
        },
        timeoutMs: d.cfg.replication.ack_timeout_ms + 10_000,
      })
      .catch((err: Error) => {
        throw new WolfError("network", `forwarding to the leader at ${api} failed: ${err.message}`);
      });
    return new Response(res.body, {
      status: res.status,
      headers: { "content-type": "application/json", "x-wolf-forwarded-to": api },
    });
  }

  async function route(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = req.method;
    if (path === "/health" && method === "GET") {
      const s = statusView(d.snapshot());
      // A witness has no database: it is healthy while it holds the log.
      const healthy = (s.witness || s.database.up) && !s.diverged && s.state !== "NeedsMigration" && !s.applyError;
      return json(
        {
          ok: healthy,
          id: s.id,
          role: s.role,
          state: s.state,
          database: s.witness ? "none (witness)" : s.database.up ? "up" : "down",
        },
        healthy ? 200 : 503,
      );
    }
    if (!authorized(req))
      return json({ ok: false, error: "missing or wrong admin token (Authorization: Bearer <api.admin_token>)" }, 401);

    if (method === "GET") {
      if (path === "/status") return json(statusView(d.snapshot()));
      if (path === "/cluster") {
        const s = d.snapshot();
        return json({ ...s.cluster, leaderApi: s.leaderApi });
      }
      if (path === "/cluster/nodes") return json(nodesView(d.snapshot()));
      const m = /^\/cluster\/nodes\/(\d+)$/.exec(path);
      if (m) {
        const n = nodesView(d.snapshot()).find((x) => x.id === Number(m[1]));
        return n ? json(n) : json({ ok: false, error: `no node ${m[1]} in this node's view` }, 404);
      }
      if (path === "/metrics")
        return new Response(metricsText(d.snapshot()), { headers: { "content-type": "text/plain; version=0.0.4" } });
      if (path === "/id") {
        const n = Math.min(Math.max(Number(url.searchParams.get("n") ?? 1) || 1, 1), 4096);
        const ids = Array.from({ length: n }, () => d.snowflake.next().toString());
        return json(n === 1 ? { id: ids[0] } : { ids });
      }
      if (path === "/dump") {
        const after = url.searchParams.get("after") ?? "0";
        if (!/^\d{1,15}$/.test(after))
          throw new UsageError(
            `after=${after.slice(0, 40)} is not an LSN`,
            "give the target's last LSN as a whole number",
          );
        return await d.dump(Number(after));
      }
    }
    if (method === "POST") {
      const body = await readJson(req);
      const w = /^\/write\/(insert|update|delete|upsert|ddl)$/.exec(path);
      if (w) {
        const stmt = WRITE_BUILDERS[w[1]!]!(body);
        const ack = ackOf(req);
        return onLeader(req, path, body, async () => {
          return json(writeAnswer(await d.write(stmt, { ack })));
        });
      }
      if (path === "/sql") {
        if (typeof body.sql !== "string" || body.sql.trim() === "") throw new UsageError(`"sql" is required`);
        const params = (body.params ?? []) as SqlValue[];
        if (!Array.isArray(params)) throw new UsageError(`"params" must be an array`);
        if (body.database !== undefined) ident(body.database, "database");
        const database = body.database as string | undefined;
        if (body.read_only === true) return json({ ok: true, results: await d.read(body.sql, params, database) });
        const ack = ackOf(req);
        return onLeader(req, path, body, async () => {
          return json(writeAnswer(await d.write({ sql: body.sql as string, params }, { database, ack })));
        });
      }
      if (path === "/cluster/register") {
        if (typeof body.id === "number" && typeof body.api === "string" && /^https?:\/\//.test(body.api)) {
          d.registerNode(body.id, body.api, body.witness === true);
        }
        return json({ ok: true, nodes: d.knownNodes() });
      }
      if (path === "/admin/promote") {
        if (body.to !== undefined && !(Number.isInteger(body.to) && (body.to as number) > 0))
          throw new UsageError(`"to" must be a node ID, got ${JSON.stringify(body.to)}`);
        if (body.clear === true && body.to !== undefined) throw new UsageError(`give "to" or "clear", not both`);
        return json({ ok: true, message: await d.promote(body.to as number | undefined, body.clear === true) });
      }
      if (path === "/admin/demote") {
        const to = typeof body.to === "number" ? body.to : undefined;
        return json({ ok: true, message: await d.demote(to) });
      }
      if (path === "/admin/handover") {
        if (typeof body.to !== "number") throw new UsageError(`"to" (node id) is required`);
        return json({ ok: true, message: await d.handOver(body.to, 0) });
      }
      if (path === "/admin/reset") return json({ ok: true, message: d.reset() });
      if (path === "/admin/log-level") {
        const level = body.level;
        if (!isLogLevel(level)) {
          throw new UsageError(
            `"level" must be one of ${LOG_LEVEL_NAMES.join(", ")}, got ${JSON.stringify(level ?? null)}`,
          );
        }
        const old = getLogLevel();
        const message = `log level ${old} → ${level} (until the daemon restarts; [node] log_level keeps it)`;
        // Logged at the louder of the two levels, so the change is in the log whichever way it goes.
        const quiet = LOG_LEVEL_NAMES.indexOf(level) < LOG_LEVEL_NAMES.indexOf("info");
        if (quiet) log.info(message);
        setLogLevel(level);
        if (!quiet) log.info(message);
        log.debug("debug logging is on");
        return json({ ok: true, old, level, message });
      }
      if (path === "/admin/migrate") {
        if (typeof body.from !== "string" && typeof body.from !== "number")
          throw new UsageError(`"from" (node id or API URL) is required`);
        return json({ ok: true, message: await d.migrateFrom(String(body.from)) });
      }
    }
    return json({ ok: false, error: `no route ${method} ${path}` }, 404);
  }

  const [hostname, port] = splitHostPort(d.cfg.api.listen);
  try {
    return Bun.serve({
      hostname,
      port,
      idleTimeout: 255,
      async fetch(req) {
        try {
          return await route(req);
        } catch (err) {
          return errorResponse(err);
        }
      },
    });
  } catch (err) {
    throw new WolfError("network", `cannot listen on ${d.cfg.api.listen} for the API: ${(err as Error).message}`, {
      hint: "change [api] listen",
    });
  }
}
