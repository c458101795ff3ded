/** The local MariaDB: connection settings from `[database]`, a settings check, and small helpers. */
import { WolfError } from "../common/errors.ts";
import { positionMatchesState } from "./binlog/gtid-set.ts";
import type { ConnectOptions } from "./mysql/connection.ts";
import { MysqlConnection } from "./mysql/connection.ts";
import type { ScaleConfig } from "./config.ts";

/** `configFile` names the file to fix when nothing answers (in the error's hint). */
export function connectOptions(db: ScaleConfig["database"], configFile?: string): ConnectOptions {
  const unreachableHint = configFile ? unreachableDbHint(configFile) : undefined;
  return db.socket
    ? { socketPath: db.socket, user: db.user, password: db.password, unreachableHint }
    : { host: db.host, port: db.port, user: db.user, password: db.password, unreachableHint };
}

export function unreachableDbHint(configFile: string): string {
  return `is MariaDB running? check [database] host/port/socket in ${configFile}`;
}

export function describeDb(db: ScaleConfig["database"]): string {
  return db.socket ? `MariaDB at ${db.socket}` : `MariaDB at ${db.host}:${db.port}`;
}

/** Command-line arguments for the mariadb / mariadb-dump clients (password goes in MYSQL_PWD). */
export function clientArgs(db: ScaleConfig["database"]): { args: string[]; env: Record<string, string> } {
  const args = [
    "--no-defaults",
    db.socket ? `--socket=${db.socket}` : `--host=${db.host}`,
    ...(db.socket ? [] : [`--port=${db.port}`]),
    `--user=${db.user}`,
  ];
  return { args, env: db.password ? { MYSQL_PWD: db.password } : {} };
}

export async function withConnection<T>(opts: ConnectOptions, fn: (c: MysqlConnection) => Promise<T>): Promise<T> {
  const conn = await MysqlConnection.connect(opts);
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}

/** The binlog's GTID position now (`@@gtid_binlog_pos`; "" before the first transaction). */
export function gtidBinlogPos(opts: ConnectOptions): Promise<string> {
  return withConnection(opts, async (c) => (await c.queryObjects("SELECT @@gtid_binlog_pos AS p"))[0]!.p ?? "");
}

/** `@@gtid_binlog_state` and `@@gtid_binlog_pos` of one moment (binlogSnapshot). */
export interface BinlogSnapshot {
  /** Per domain and server id, the last GTID in the binlog. */
  state: string;
  /** Per domain, the last GTID in the binlog: where a replica continues from. */
  pos: string;
}

/**
 * The binlog's GTID state and position as of one moment. MariaDB reads each variable under its
 * own lock, so a commit can land between the two: the state is read on both sides of the position
 * and the read is retried until nothing moved (positionMatchesState), so a transaction is either
 * in both or in neither. Commits take microseconds to slip in, so a retry almost always suffices.
 */
export function binlogSnapshot(opts: ConnectOptions, attempts = 200): Promise<BinlogSnapshot> {
  return withConnection(opts, async (c) => {
    let last = "";
    for (let i = 0; i < attempts; i++) {
      const r = (
        await c.queryObjects("SELECT @@gtid_binlog_state AS a, @@gtid_binlog_pos AS p, @@gtid_binlog_state AS b")
      )[0]!;
      const [a, p, b] = [r.a ?? "", r.p ?? "", r.b ?? ""];
      if (a === b && positionMatchesState(p, a)) return { state: a, pos: p };
      last = `state ${a || "(empty)"}, position ${p || "(empty)"}`;
    }
    throw new WolfError(
      "state",
      `the binlog's GTID state and position never agreed in ${attempts} reads (last: ${last}); either writes never paused for a moment or a domain's sequence numbers are out of order`,
      {
        hint: "wolf needs strictly increasing sequence numbers per domain in the binlog: turn gtid_strict_mode on and do not SET gtid_seq_no backwards",
      },
    );
  });
}

/**
 * The GTID position at a binlog file and offset (`BINLOG_GTID_POS`); null when that position is
 * not in the binlog. The file name goes into a string literal: only the characters binlog names
 * use are kept.
 */
export function gtidAtBinlogPosition(opts: ConnectOptions, file: string, pos: number): Promise<string | null> {
  const f = file.replace(/[^A-Za-z0-9._-]/g, "");
  return withConnection(
    opts,
    async (c) => (await c.queryObjects(`SELECT BINLOG_GTID_POS('${f}', ${Math.trunc(pos)}) AS p`))[0]?.p ?? null,
  );
}

export interface SettingCheck {
  name: string;
  value: string;
  want: string;
  ok: boolean;
  /** Required for replication (vs. recommended for durability). */
  required: boolean;
  /** SET GLOBAL statement that fixes it at runtime, if it can be. */
  fix?: string;
  note: string;
}

/** What replication needs from the local MariaDB (and what durability recommends). */
export async function checkSettings(opts: ConnectOptions): Promise<SettingCheck[]> {
  return withConnection(opts, async (c) => {
    const v = (
      await c.queryObjects(
        "SELECT @@log_bin AS log_bin, @@binlog_format AS binlog_format, @@server_id AS server_id, @@binlog_row_image AS row_image, " +
          "@@sync_binlog AS sync_binlog, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin_compress AS compress, @@binlog_checksum AS checksum, @@version AS version",
      )
    )[0]!;
    return [
      {
        name: "log_bin",
        value: v.log_bin!,
        want: "1",
        ok: v.log_bin === "1",
        required: true,
        note: "start mariadbd with --log-bin (binlog capture)",
      },
      {
        name: "binlog_format",
        value: v.binlog_format!,
        want: "ROW",
        ok: v.binlog_format === "ROW",
        required: true,
        fix: "SET GLOBAL binlog_format = 'ROW'",
        note: "row events replay identically (NOW(), UUID(), RAND(), triggers)",
      },
      {
        name: "server_id",
        value: v.server_id!,
        want: "unique, not 1 on every node",
        ok: v.server_id !== "0",
        required: true,
        note: "each node's MariaDB needs its own server_id (--server-id=N); own transactions are recognised by it",
      },
      {
        name: "binlog_row_image",
        value: v.row_image!,
        want: "FULL",
        ok: v.row_image === "FULL",
        required: true,
        fix: "SET GLOBAL binlog_row_image = 'FULL'",
        note: "followers locate rows by their full before-image",
      },
      {
        name: "log_bin_compress",
        value: v.compress!,
        want: "0",
        ok: v.compress === "0",
        required: true,
        fix: "SET GLOBAL log_bin_compress = OFF",
        note: "compressed events are not supported by capture",
      },
      {
        name: "sync_binlog",
        value: v.sync_binlog!,
        want: "1",
        ok: v.sync_binlog === "1",
        required: false,
        fix: "SET GLOBAL sync_binlog = 1",
        note: "a power loss must not lose committed transactions from the binlog",
      },
      {
        name: "innodb_flush_log_at_trx_commit",
        value: v.flush!,
        want: "1",
        ok: v.flush === "1",
        required: false,
        fix: "SET GLOBAL innodb_flush_log_at_trx_commit = 1",
        note: "durable commits",
      },
    ];
  });
}

/** Refuses to run replication on a MariaDB that cannot be captured. */
export async function requireReplicationSettings(opts: ConnectOptions, where: string): Promise<void> {
  const bad = (await checkSettings(opts)).filter((s) => s.required && !s.ok);
  if (bad.length === 0) return;
  throw new WolfError(
    "config",
    `${where}: ${bad.map((s) => `${s.name} is ${s.value}, needs ${s.want} (${s.note})`).join("; ")}`,
    {
      hint: "run `wolf ctl scale check-config` (with -f to fix what can be fixed at runtime)",
    },
  );
}
