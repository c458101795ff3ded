/**
 * SQL that recreates, on a follower session, the state a QUERY event ran with on the leader (the
 * same statements mysqlbinlog prints), and the errors that mean "this DDL already happened".
 */
import type { QueryEvent } from "../binlog/events.ts";

const OPTION_AUTO_IS_NULL = 1 << 14;
const OPTION_NOT_AUTOCOMMIT = 1 << 19;
const OPTION_NO_FOREIGN_KEY_CHECKS = 1 << 26;
const OPTION_RELAXED_UNIQUE_CHECKS = 1 << 27;

export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, "``")}\``;
}

export function quoteString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'").replace(/\0/g, "\\0")}'`;
}

/** Collation id → names, from the follower's information_schema.COLLATIONS. */
export type Collations = Map<number, { collation: string; charset: string }>;

/** Statements to run before the event's SQL (after `USE db`, which resets collation_database). */
export function sessionStatements(q: QueryEvent, collations: Collations): string[] {
  const coll = (id: number | undefined) => {
    const c = id === undefined ? undefined : collations.get(id);
    if (!c) throw new Error(`collation id ${id} used on the leader is unknown on this follower`);
    return c;
  };
  const s = q.status;
  const out: string[] = [];
  const micro = s.microseconds !== undefined ? `.${String(s.microseconds).padStart(6, "0")}` : "";
  out.push(`SET TIMESTAMP=${q.timestamp}${micro}`);
  if (s.flags2 !== undefined) {
    const f = s.flags2;
    out.push(
      `SET @@session.foreign_key_checks=${f & OPTION_NO_FOREIGN_KEY_CHECKS ? 0 : 1}, @@session.sql_auto_is_null=${f & OPTION_AUTO_IS_NULL ? 1 : 0}, ` +
        `@@session.unique_checks=${f & OPTION_RELAXED_UNIQUE_CHECKS ? 0 : 1}, @@session.autocommit=${f & OPTION_NOT_AUTOCOMMIT ? 0 : 1}`,
    );
  }
  if (s.sqlMode !== undefined) out.push(`SET @@session.sql_mode=${s.sqlMode}`);
  if (s.autoIncrementIncrement !== undefined) {
    out.push(
      `SET @@session.auto_increment_increment=${s.autoIncrementIncrement}, @@session.auto_increment_offset=${s.autoIncrementOffset}`,
    );
  }
  if (s.charsetClient !== undefined) {
    // The event stores collation ids; the variables want names (numbers are charset ids there).
    out.push(
      `SET @@session.character_set_client=${coll(s.charsetClient).charset}, @@session.collation_connection=${coll(s.collationConnection).collation}, ` +
        `@@session.collation_server=${coll(s.collationServer).collation}`,
    );
  }
  if (s.timeZone !== undefined) out.push(`SET @@session.time_zone=${quoteString(s.timeZone)}`);
  if (s.lcTimeNames !== undefined) out.push(`SET @@session.lc_time_names=${s.lcTimeNames}`);
  if (s.collationDatabase !== undefined)
    out.push(`SET @@session.collation_database=${coll(s.collationDatabase).collation}`);
  return out;
}

/** Back to the applier's own defaults after a replayed statement. */
export const RESET_SESSION = [
  "SET TIMESTAMP=DEFAULT",
  "SET @@session.foreign_key_checks=1, @@session.unique_checks=1, @@session.autocommit=1, @@session.sql_auto_is_null=0",
  "SET NAMES utf8mb4",
];

/**
 * Errors a DDL statement gives when its effect is already there. Only tolerated when the applier
 * knows it may have run the statement before (it crashed between running it and recording that).
 * MariaDB DDL is atomic (10.6+), so "already there" means "fully applied".
 */
export const ALREADY_APPLIED_ERRNOS = new Set([
  1007, // database exists
  1008, // database does not exist (DROP DATABASE)
  1050, // table exists
  1051, // unknown table (DROP TABLE)
  1060, // duplicate column
  1061, // duplicate key name
  1091, // can't drop field or key: does not exist
  1146, // table does not exist (RENAME/ALTER of a table already renamed/dropped)
  1304, // procedure/function exists
  1305, // procedure/function does not exist
  1359, // trigger exists
  1360, // trigger does not exist
  1396, // CREATE/DROP USER failed (already done)
]);
