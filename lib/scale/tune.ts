/**
 * `wolf ctl scale tune-mariadb`: the MariaDB settings a node wants under wolf, as a pure function
 * of the server's current variables, the machine's memory and the scale config. What replication
 * strictly needs is check-config's list (db.ts checkSettings), reused here; this adds sizing and
 * the settings that matter for capture and replay. ctl.ts reads the variables and applies.
 */
import { UsageError } from "../common/errors.ts";
import type { SettingCheck } from "./db.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Connections wolf itself keeps besides the API pool: capture, applier, health check, probe, dumps. */
const WOLF_OWN_CONNECTIONS = 8;
/** Largest API request body (api/server.ts) — a row that size becomes a BINLOG statement ~4/3 larger. */
const MAX_ALLOWED_PACKET = 64 * MiB;
const MIN_WAIT_TIMEOUT = 600;

/** Global variables tune reads (besides those checkSettings reads). */
export const TUNE_VARIABLES = [
  "innodb_buffer_pool_size",
  "innodb_buffer_pool_chunk_size",
  "max_connections",
  "max_allowed_packet",
  "binlog_checksum",
  "wait_timeout",
  "log_bin_basename",
] as const;

export interface TuneInput {
  /** Global variables by lower-case name (SHOW GLOBAL VARIABLES); missing ones are skipped. */
  variables: Record<string, string | null | undefined>;
  /** check-config's checks (checkSettings), so replication's needs are stated once. */
  checks: SettingCheck[];
  /** Memory to size MariaDB for (the machine's RAM unless the operator says less). */
  memoryBytes: number;
  /** `[database] pool_size`: connections the API keeps. */
  poolSize: number;
}

export interface Suggestion {
  name: string;
  current: string;
  suggested: string;
  /** The current value already does. */
  ok: boolean;
  /** Changeable at runtime (SET GLOBAL); otherwise only in my.cnf and a restart. */
  dynamic: boolean;
  /** A size in bytes (printed as MiB/GiB). */
  bytes?: boolean;
  /** The SET GLOBAL statement applying it, when it needs changing and can be changed at runtime. */
  set?: string;
  /** The my.cnf line persisting it ([mariadb] section); a comment when there is no single value to write. */
  cnf: string;
  why: string;
}

/** Why, under wolf, for check-config's durability settings (their check notes are terser). */
const WHY_UNDER_WOLF: Record<string, string> = {
  sync_binlog:
    "fsync the binlog at each commit: wolf captures the leader's binlog, so a crash must not lose a commit the binlog already showed (followers would have it, this node not)",
  innodb_flush_log_at_trx_commit:
    "flush InnoDB's redo log at each commit: with sync_binlog=1 a crash cannot lose a commit the binlog (and so wolf's capture) already showed",
  binlog_row_image: "followers locate rows by their full before-image when replaying the leader's row events",
};

/**
 * innodb_buffer_pool_size for `memory`: about half of what is left after headroom for the OS, wolf
 * and connections, in whole 128 MiB (or larger chunk) units, which MariaDB resizes by.
 */
export function bufferPoolTarget(memory: number, chunk = 0): number {
  const headroom = Math.min(2 * GiB, memory / 4);
  const unit = Math.max(128 * MiB, chunk);
  const target = Math.floor((memory - headroom) / 2 / unit) * unit;
  return Math.max(unit, target);
}

/** max_connections for an API pool of `poolSize`: the pool, wolf's own, and headroom for operators and clients. */
export function connectionsTarget(poolSize: number): number {
  return poolSize + WOLF_OWN_CONNECTIONS + Math.max(20, poolSize);
}

/** "7G", "192M" or plain bytes: a my.cnf size. */
function cnfSize(n: number): string {
  if (n % GiB === 0) return `${n / GiB}G`;
  if (n % MiB === 0) return `${n / MiB}M`;
  return String(n);
}

/** "512M", "8G", "1.5G", "1073741824" → bytes (for --memory). */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$/i.exec(text);
  if (!m) throw new UsageError(`not a size: "${text}"`, "give bytes or a number with K, M, G or T, e.g. 8G");
  const mult = { "": 1, k: 1024, m: MiB, g: GiB, t: 1024 * GiB }[m[2]!.toLowerCase() as "" | "k" | "m" | "g" | "t"];
  const n = Math.floor(Number(m[1]) * mult);
  if (n < 256 * MiB) throw new UsageError(`${text} is too little memory to size MariaDB for`, "give at least 256M");
  return n;
}

const num = (v: string | null | undefined): number | undefined =>
  v === null || v === undefined || v === "" || !/^\d+$/.test(v) ? undefined : Number(v);

/** A "never lower" numeric setting: suggests `target` only when the current value is below it. */
function atLeast(
  name: string,
  current: number | undefined,
  target: number,
  why: string,
  opts: { bytes?: boolean } = {},
): Suggestion | undefined {
  if (current === undefined) return undefined;
  const ok = current >= target;
  const value = ok ? current : target;
  return {
    name,
    current: String(current),
    suggested: String(value),
    ok,
    dynamic: true,
    bytes: opts.bytes,
    set: ok ? undefined : `SET GLOBAL ${name} = ${value}`,
    cnf: `${name} = ${opts.bytes ? cnfSize(value) : value}`,
    why,
  };
}

function fromCheck(c: SettingCheck, variables: TuneInput["variables"]): Suggestion {
  let cnf = `${c.name} = ${c.want}`;
  if (c.name === "log_bin") cnf = `log_bin = ${variables.log_bin_basename || "mysql-bin"}`;
  if (c.name === "server_id") cnf = c.ok ? `server_id = ${c.value}` : "# server_id = <a number unique to this node>";
  return {
    name: c.name,
    current: c.value,
    suggested: c.want,
    ok: c.ok,
    dynamic: c.fix !== undefined,
    set: c.ok ? undefined : c.fix,
    cnf,
    why: WHY_UNDER_WOLF[c.name] ?? c.note,
  };
}

/** Every suggestion, in the order printed: replication's needs first, then sizing. */
export function suggestTuning(input: TuneInput): Suggestion[] {
  const v = input.variables;
  const out: Suggestion[] = input.checks.map((c) => fromCheck(c, v));

  const checksum = v.binlog_checksum;
  if (checksum) {
    const ok = checksum.toUpperCase() === "CRC32";
    out.push({
      name: "binlog_checksum",
      current: checksum,
      suggested: "CRC32",
      ok,
      dynamic: true,
      set: ok ? undefined : "SET GLOBAL binlog_checksum = 'CRC32'",
      cnf: "binlog_checksum = CRC32",
      why: "capture verifies each binlog event's CRC32, so a corrupted read is refused instead of replicated",
    });
  }

  const pool = num(v.innodb_buffer_pool_size);
  const target = bufferPoolTarget(input.memoryBytes, num(v.innodb_buffer_pool_chunk_size));
  const gib = (input.memoryBytes / GiB).toFixed(1);
  const sized = atLeast(
    "innodb_buffer_pool_size",
    pool,
    target,
    `about half of ${gib} GiB after headroom for the OS, wolf and connections; assumes one MariaDB per machine (else --memory); never lowered`,
    { bytes: true },
  );
  if (sized) out.push(sized);

  const floors: Array<[name: string, target: number, why: string, opts?: { bytes: boolean }]> = [
    [
      "max_connections",
      connectionsTarget(input.poolSize),
      `API pool (database.pool_size = ${input.poolSize}) + ${WOLF_OWN_CONNECTIONS} of wolf's own (capture, apply, health, dumps) + headroom for operators and clients`,
    ],
    [
      "max_allowed_packet",
      MAX_ALLOWED_PACKET,
      "followers replay rows as BINLOG statements ~4/3 the row's size: every node must fit the largest row the leader took (API bodies up to 16 MiB)",
      { bytes: true },
    ],
    [
      "wait_timeout",
      MIN_WAIT_TIMEOUT,
      "wolf keeps connections open between writes (API pool, applier); a short wait_timeout closes them under it",
    ],
  ];
  for (const [name, target, why, opts] of floors) {
    const s = atLeast(name, num(v[name]), target, why, opts);
    if (s) out.push(s);
  }

  return out;
}

/** Settings whose SET GLOBAL only reaches new connections (wolf's open ones keep the old value). */
export const SESSION_SCOPED = new Set(["binlog_format", "binlog_row_image", "max_allowed_packet", "wait_timeout"]);

/** The [mariadb] section persisting every suggestion (SET GLOBAL does not survive a restart). */
export function cnfSnippet(suggestions: Suggestion[], memoryBytes: number): string {
  return [
    "# wolf scale: persist in MariaDB's config, e.g. /etc/mysql/mariadb.conf.d/60-wolf.cnf (SET GLOBAL does not survive a restart)",
    `# innodb_buffer_pool_size assumes this is the only MariaDB on a machine with ${(memoryBytes / GiB).toFixed(1)} GiB`,
    "[mariadb]",
    ...suggestions.map((s) => s.cnf),
  ].join("\n");
}
