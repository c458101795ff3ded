/** `wolf ctl scale …`: the verbs, talking to the local daemon's API (`[api] listen`, token from the config). */
import { totalmem } from "node:os";
import { defineCommand } from "citty";
import { configArgs, loadFromArgs } from "../common/config-commands.ts";
import { UsageError, WolfError } from "../common/errors.ts";
import { isLogLevel, LOG_LEVEL_NAMES, type LogLevelName } from "../common/log.ts";
import type { NodeView, StatusView } from "./api/views.ts";
import { formatBytes, formatTable } from "../common/format.ts";
import { ScaleClient, formatNodes, formatScaleStatus } from "./client.ts";
import { scaleSchema } from "./config.ts";
import { checkSettings, connectOptions, describeDb, withConnection } from "./db.ts";
import { cnfSnippet, parseSize, SESSION_SCOPED, type Suggestion, suggestTuning, TUNE_VARIABLES } from "./tune.ts";

const args = { ...configArgs("scale"), json: { type: "boolean", description: "Print JSON" } } as const;

function client(a: { config?: string }): ScaleClient {
  const { file, config } = loadFromArgs(scaleSchema, a);
  return new ScaleClient(config, file);
}

const out = (text: string) => process.stdout.write(`${text}\n`);

export const ctlScaleCommands = {
  list: defineCommand({
    meta: { name: "list", description: "List cluster members: ID, status, role, address, LSN, lag" },
    args: {
      ...args,
      what: { type: "positional", description: "What to list: servers", required: false, default: "servers" },
    },
    async run({ args: a }) {
      if (a.what !== "servers") throw new UsageError(`cannot list "${a.what}"`, "try: wolf ctl scale list servers");
      const c = client(a);
      const [nodes, s] = await Promise.all([c.get<NodeView[]>("/cluster/nodes"), c.get<StatusView>("/status")]);
      if (a.json) return out(JSON.stringify(nodes, null, 2));
      const preferred = s.preferredLeader === null ? "none (lowest eligible ID)" : `node ${s.preferredLeader}`;
      out(`${formatNodes(nodes)}\npreferred leader: ${preferred}; failback = ${s.failback}`);
    },
  }),
  status: defineCommand({
    meta: { name: "status", description: "Cluster status as this node sees it" },
    args,
    async run({ args: a }) {
      const c = client(a);
      const [s, nodes] = await Promise.all([c.get<StatusView>("/status"), c.get<NodeView[]>("/cluster/nodes")]);
      out(a.json ? JSON.stringify({ ...s, nodes }, null, 2) : `${formatScaleStatus(s)}\n\n${formatNodes(nodes)}`);
    },
  }),
  stats: defineCommand({
    meta: { name: "stats", description: "Live statistics: writes/s, applied entries/s, lag (Ctrl-C to stop)" },
    args: {
      ...args,
      interval: { type: "string", description: "Seconds between lines (default 1)", valueHint: "S" },
      count: {
        type: "string",
        description: "Stop after this many lines (default: run until interrupted)",
        valueHint: "N",
      },
    },
    async run({ args: a }) {
      const c = client(a);
      const every = Math.max(0.1, Number(a.interval ?? 1));
      const count = a.count === undefined ? Infinity : Number(a.count);
      if (!Number.isFinite(every) || Number.isNaN(count)) throw new UsageError("--interval and --count take numbers");
      type S = {
        writes: { writes: number };
        appliedLsn: number;
        lastLsn: number;
        role: string;
        peers: Array<{ id: number; lag: number }>;
      };
      let prev = await c.get<S>("/status");
      let t0 = performance.now();
      out(formatTable([["TIME", "ROLE", "WRITES/S", "APPLIED/S", "LSN", "APPLIED", "MAX LAG"]]));
      for (let i = 0; i < count; i++) {
        await new Promise((r) => setTimeout(r, every * 1000)); // the reporting interval itself
        const s = await c.get<S>("/status");
        const dt = (performance.now() - t0) / 1000;
        t0 = performance.now();
        const lag = Math.max(0, ...s.peers.map((p) => p.lag));
        const row = [
          new Date().toISOString().slice(11, 19),
          s.role,
          ((s.writes.writes - prev.writes.writes) / dt).toFixed(1),
          ((s.appliedLsn - prev.appliedLsn) / dt).toFixed(1),
          String(s.lastLsn),
          String(s.appliedLsn),
          String(lag),
        ];
        out(
          a.json
            ? JSON.stringify(s)
            : formatTable([["TIME", "ROLE", "WRITES/S", "APPLIED/S", "LSN", "APPLIED", "MAX LAG"], row]).split(
                "\n",
              )[1]!,
        );
        prev = s;
      }
    },
  }),
  promote: defineCommand({
    meta: {
      name: "promote",
      description:
        "Prefer node <id> (default: this node) as leader, replicated and kept across restarts, and move leadership to it now",
    },
    args: {
      ...args,
      id: {
        type: "positional",
        description:
          "Node ID to prefer as leader (default: this node). Answers once it leads, or says why the move is pending; with [cluster] failback = auto leadership returns to it whenever it is back and caught up",
        required: false,
      },
      clear: { type: "boolean", description: "No preferred leader: back to the lowest eligible ID" },
    },
    async run({ args: a }) {
      if (a.clear && a.id !== undefined) throw new UsageError("give a node ID or --clear, not both");
      const to = a.id === undefined ? undefined : Number(a.id);
      if (to !== undefined && !(Number.isInteger(to) && to > 0))
        throw new UsageError(`promote takes a node ID, got "${a.id}"`);
      const body = a.clear ? { clear: true } : { to };
      out((await client(a).post<{ message: string }>("/admin/promote", body, 180_000)).message);
    },
  }),
  demote: defineCommand({
    meta: {
      name: "demote",
      description:
        "Leader: hand over to --to (default: the most caught-up follower) and make it the preferred leader, so no handback undoes it",
    },
    args: {
      ...args,
      to: {
        type: "string",
        description:
          "Node ID to hand over to (default: the most caught-up that may lead); it becomes the preferred leader (wolf ctl scale promote --clear goes back to the lowest-ID rule)",
        valueHint: "NODE",
      },
    },
    async run({ args: a }) {
      const to = a.to === undefined ? undefined : Number(a.to);
      if (to !== undefined && !Number.isInteger(to)) throw new UsageError(`--to takes a node ID, got "${a.to}"`);
      out((await client(a).post<{ message: string }>("/admin/demote", { to }, 180_000)).message);
    },
  }),
  "check-config": defineCommand({
    meta: { name: "check-config", description: "Check the local MariaDB's settings replication needs" },
    args: {
      ...args,
      fix: { type: "boolean", alias: "f", description: "Fix what can be fixed at runtime (SET GLOBAL)" },
    },
    async run({ args: a }) {
      const { file, config } = loadFromArgs(scaleSchema, a);
      const opts = connectOptions(config.database, file);
      let checks = await checkSettings(opts);
      if (a.fix) {
        const fixes = checks.filter((c) => !c.ok && c.fix);
        if (fixes.length)
          await withConnection(opts, async (conn) => {
            for (const f of fixes) await conn.query(f.fix!);
          });
        for (const f of fixes) out(`fixed: ${f.fix}`);
        checks = await checkSettings(opts);
      }
      if (a.json) return out(JSON.stringify(checks, null, 2));
      const rows = [["SETTING", "VALUE", "WANT", "", "WHY"]];
      for (const c of checks)
        rows.push([c.name, c.value, c.want, c.ok ? "ok" : c.required ? "REQUIRED" : "recommended", c.note]);
      out(`${describeDb(config.database)}\n${formatTable(rows)}`);
      const bad = checks.filter((c) => c.required && !c.ok);
      if (bad.length)
        throw new UsageError(
          `${bad.length} required setting(s) missing: ${bad.map((c) => c.name).join(", ")}`,
          "fix them in the MariaDB config (and --fix for the runtime ones)",
        );
    },
  }),
  migrate: defineCommand({
    meta: { name: "migrate", description: "Copy a consistent dump from a healthy node and resume from its LSN" },
    args: {
      ...args,
      from: { type: "string", description: "Node ID (or API URL) to copy from", valueHint: "NODE", required: true },
    },
    async run({ args: a }) {
      out((await client(a).post<{ message: string }>("/admin/migrate", { from: a.from }, 3_600_000)).message);
    },
  }),
  "binlog-setup": defineCommand({
    meta: {
      name: "binlog-setup",
      description: "Print the config snippet for binlog mode from the server's current position",
    },
    args,
    async run({ args: a }) {
      const { file, config } = loadFromArgs(scaleSchema, a);
      const s = await withConnection(connectOptions(config.database, file), async (c) => {
        const m = (await c.queryObjects("SHOW MASTER STATUS"))[0];
        const g = (await c.queryObjects("SELECT @@gtid_binlog_pos AS pos, @@log_bin AS lb"))[0]!;
        return { file: m?.File ?? "", position: Number(m?.Position ?? 4), gtid: g.pos ?? "", logBin: g.lb === "1" };
      });
      if (!s.logBin || !s.file)
        throw new UsageError(
          `${describeDb(config.database)} has no binary log`,
          "start it with --log-bin --binlog-format=ROW --server-id=N",
        );
      if (a.json) return out(JSON.stringify(s));
      out(`# binlog mode for ${describeDb(config.database)} — add to ${file}:
# capture starts at the current end of the binlog (GTID ${s.gtid || "none yet"}). Start this node first
# (scale start --bootstrap); each follower then copies the existing data from it once it joined:
#   wolf ctl scale migrate --from <this node's ID>
[replication]
mode = "binlog"
binlog_file = "${s.file}"
binlog_position = ${s.position}`);
    },
  }),
  "tune-mariadb": defineCommand({
    meta: {
      name: "tune-mariadb",
      description:
        "Suggest MariaDB settings for wolf (memory, connections, durability); apply the runtime ones and print a my.cnf snippet",
    },
    args: {
      ...args,
      "dry-run": { type: "boolean", description: "Only print the suggestions; change nothing" },
      memory: {
        type: "string",
        description: "Memory to size MariaDB for, e.g. 8G (default: this machine's RAM)",
        valueHint: "SIZE",
      },
    },
    async run({ args: a }) {
      const memoryBytes = a.memory === undefined ? totalmem() : parseSize(a.memory);
      const { file, config } = loadFromArgs(scaleSchema, a);
      const opts = connectOptions(config.database, file);
      const checks = await checkSettings(opts);
      const variables = await withConnection(opts, async (c) => {
        const rows = await c.queryObjects(
          `SHOW GLOBAL VARIABLES WHERE Variable_name IN (${TUNE_VARIABLES.map((n) => `'${n}'`).join(", ")})`,
        );
        return Object.fromEntries(rows.map((r) => [String(r.Variable_name).toLowerCase(), r.Value]));
      });
      const suggestions = suggestTuning({ variables, checks, memoryBytes, poolSize: config.database.pool_size });
      const pending = suggestions.filter((s) => s.set);
      const applied: Suggestion[] = [];
      const failed: Array<{ name: string; statement: string; error: string }> = [];
      if (!a["dry-run"] && pending.length) {
        await withConnection(opts, async (c) => {
          for (const s of pending) {
            try {
              await c.query(s.set!);
              applied.push(s);
            } catch (err) {
              failed.push({ name: s.name, statement: s.set!, error: (err as Error).message });
            }
          }
        });
      }
      const cnf = cnfSnippet(suggestions, memoryBytes);
      if (a.json) {
        out(
          JSON.stringify(
            {
              database: describeDb(config.database),
              memoryBytes,
              dryRun: Boolean(a["dry-run"]),
              suggestions,
              applied: applied.map((s) => s.set),
              failed,
              cnf,
            },
            null,
            2,
          ),
        );
      } else {
        const show = (s: Suggestion, v: string) => (s.bytes && /^\d+$/.test(v) ? formatBytes(Number(v)) : v);
        const rows = [["SETTING", "CURRENT", "SUGGESTED", "", "WHY"]];
        for (const s of suggestions)
          rows.push([
            s.name,
            show(s, s.current),
            show(s, s.suggested),
            s.ok ? "ok" : s.dynamic ? "change" : "restart",
            s.why,
          ]);
        out(`${describeDb(config.database)}, sized for ${formatBytes(memoryBytes)} of memory\n${formatTable(rows)}\n`);
        if (a["dry-run"]) {
          out(
            pending.length
              ? `dry run: nothing changed; without --dry-run these ${pending.length} would be applied now (SET GLOBAL):`
              : "dry run: nothing to change at runtime",
          );
          for (const s of pending) out(`  ${s.set}`);
        } else if (pending.length) {
          for (const s of applied) out(`applied: ${s.set}`);
          for (const f of failed) out(`FAILED:  ${f.statement}: ${f.error}`);
          const sessionScoped = applied.filter((s) => SESSION_SCOPED.has(s.name)).map((s) => s.name);
          if (sessionScoped.length) {
            out(
              `note: ${sessionScoped.join(", ")}: the new value applies to new connections only; restart wolf scale on this node so its open ones pick it up`,
            );
          }
        } else out("nothing to change at runtime");
        const restart = suggestions.filter((s) => !s.ok && !s.dynamic);
        if (restart.length) out(`needs a MariaDB restart (set in my.cnf): ${restart.map((s) => s.name).join(", ")}`);
        out(`\nSET GLOBAL does not survive a MariaDB restart: persist the settings in its config:\n\n${cnf}`);
      }
      if (failed.length) {
        throw new WolfError(
          "state",
          `${failed.length} setting(s) could not be applied: ${failed.map((f) => `${f.name} (${f.error})`).join("; ")}`,
          {
            hint: `connect as a user allowed to SET GLOBAL (SUPER), or put them in my.cnf and restart MariaDB`,
          },
        );
      }
    },
  }),
  reset: defineCommand({
    meta: { name: "reset", description: "Clear this node's apply error (after fixing its cause) and apply again" },
    args: { ...args, force: { type: "boolean", description: "Do not ask" } },
    async run({ args: a }) {
      out((await client(a).post<{ message: string }>("/admin/reset")).message);
    },
  }),
  "log-level": defineCommand({
    meta: {
      name: "log-level",
      description: "Change the running daemon's log level (until it restarts; [node] log_level keeps it)",
    },
    args: { ...args, level: { type: "positional", description: LOG_LEVEL_NAMES.join("|"), required: true } },
    async run({ args: a }) {
      const level = String(a.level).toLowerCase();
      if (!isLogLevel(level))
        throw new UsageError(`unknown log level "${a.level}"`, `give one of: ${LOG_LEVEL_NAMES.join(", ")}`);
      const r = await client(a).post<{ old: LogLevelName; level: LogLevelName; message: string }>("/admin/log-level", {
        level,
      });
      out(a.json ? JSON.stringify({ old: r.old, level: r.level }) : r.message);
    },
  }),
};
