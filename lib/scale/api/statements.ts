/**
 * The HTTP API's structured writes, turned into parameterised SQL: identifiers are validated and
 * backtick-quoted, every value is a `?` parameter (sent as a prepared statement), so nothing a
 * client sends is ever spliced into SQL text.
 *
 *   insert  { table, database?, rows: [{col: value, …}, …] }          (or `values: {…}` for one row)
 *   update  { table, database?, set: {col: value}, where: {col: value} }
 *   delete  { table, database?, where: {col: value} }
 *   upsert  { table, database?, values: {col: value}, update?: [col] } (INSERT … ON DUPLICATE KEY UPDATE)
 *   ddl     { sql }                                                     (CREATE/ALTER/DROP/RENAME/TRUNCATE only)
 *
 * `where` matches every listed column for equality (null matches IS NULL); an empty `where` is
 * refused unless `all: true` is given, so a typo cannot rewrite a whole table.
 */
import { UsageError } from "../../common/errors.ts";

export type SqlValue = string | number | boolean | null;
export interface Statement {
  sql: string;
  params: SqlValue[];
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_$]{0,63}$/;

export function ident(name: unknown, what: string): string {
  if (typeof name !== "string" || !IDENT.test(name)) {
    throw new UsageError(
      `${what} must be an identifier of letters, digits, '_' or '$' (max 64, not starting with a digit), got ${JSON.stringify(name)}`,
    );
  }
  return `\`${name}\``;
}

/** `table` or `db.table` (or `database` + `table`). */
function tableRef(body: Record<string, unknown>): string {
  const table = body.table;
  if (typeof table !== "string") throw new UsageError(`"table" is required (a table name, or database.table)`);
  const parts = table.split(".");
  if (parts.length > 2) throw new UsageError(`"table" must be table or database.table, got ${JSON.stringify(table)}`);
  const db = parts.length === 2 ? parts[0] : body.database;
  const name = parts.length === 2 ? parts[1] : parts[0];
  return db === undefined ? ident(name, "table") : `${ident(db, "database")}.${ident(name, "table")}`;
}

function value(v: unknown, col: string): SqlValue {
  if (v === null || typeof v === "string" || typeof v === "boolean") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new UsageError(`value of "${col}" must be a finite number`);
    return v;
  }
  throw new UsageError(
    `value of "${col}" must be a string, number, boolean or null (got ${Array.isArray(v) ? "an array" : typeof v})`,
  );
}

function columns(obj: unknown, what: string): Array<[string, SqlValue]> {
  if (!obj || typeof obj !== "object" || Array.isArray(obj))
    throw new UsageError(`"${what}" must be an object of column: value`);
  const entries = Object.entries(obj as Record<string, unknown>);
  if (entries.length === 0) throw new UsageError(`"${what}" must name at least one column`);
  return entries.map(([c, v]) => {
    ident(c, `column in "${what}"`);
    return [c, value(v, c)];
  });
}

function whereClause(body: Record<string, unknown>): { sql: string; params: SqlValue[] } {
  if (
    body.where === undefined ||
    (typeof body.where === "object" && body.where && Object.keys(body.where).length === 0)
  ) {
    if (body.all === true) return { sql: "", params: [] };
    throw new UsageError(`"where" is required (give "all": true to change every row)`);
  }
  const parts: string[] = [];
  const params: SqlValue[] = [];
  for (const [c, v] of columns(body.where, "where")) {
    if (v === null) parts.push(`${ident(c, "column")} IS NULL`);
    else {
      parts.push(`${ident(c, "column")} = ?`);
      params.push(v);
    }
  }
  return { sql: ` WHERE ${parts.join(" AND ")}`, params };
}

export function buildInsert(body: Record<string, unknown>): Statement {
  const table = tableRef(body);
  const rows = body.rows ?? (body.values === undefined ? undefined : [body.values]);
  if (!Array.isArray(rows) || rows.length === 0)
    throw new UsageError(`"rows" must be a non-empty array of objects (or give "values": {…})`);
  const first = columns(rows[0], "rows[0]");
  const cols = first.map(([c]) => c);
  const params: SqlValue[] = [];
  rows.forEach((row, i) => {
    const entries = columns(row, `rows[${i}]`);
    const byName = new Map(entries);
    if (entries.length !== cols.length || cols.some((c) => !byName.has(c))) {
      throw new UsageError(`rows[${i}] must have the same columns as rows[0] (${cols.join(", ")})`);
    }
    for (const c of cols) params.push(byName.get(c)!);
  });
  const tuple = `(${cols.map(() => "?").join(", ")})`;
  return {
    sql: `INSERT INTO ${table} (${cols.map((c) => ident(c, "column")).join(", ")}) VALUES ${rows.map(() => tuple).join(", ")}`,
    params,
  };
}

export function buildUpdate(body: Record<string, unknown>): Statement {
  const table = tableRef(body);
  const set = columns(body.set, "set");
  const where = whereClause(body);
  return {
    sql: `UPDATE ${table} SET ${set.map(([c]) => `${ident(c, "column")} = ?`).join(", ")}${where.sql}`,
    params: [...set.map(([, v]) => v), ...where.params],
  };
}

export function buildDelete(body: Record<string, unknown>): Statement {
  const table = tableRef(body);
  const where = whereClause(body);
  return { sql: `DELETE FROM ${table}${where.sql}`, params: where.params };
}

export function buildUpsert(body: Record<string, unknown>): Statement {
  const table = tableRef(body);
  const vals = columns(body.values, "values");
  const cols = vals.map(([c]) => c);
  let update = cols;
  if (body.update !== undefined) {
    if (!Array.isArray(body.update) || body.update.length === 0)
      throw new UsageError(`"update" must be a non-empty array of column names`);
    update = body.update.map((c) => {
      ident(c, `column in "update"`);
      return c as string;
    });
  }
  return {
    sql:
      `INSERT INTO ${table} (${cols.map((c) => ident(c, "column")).join(", ")}) VALUES (${cols.map(() => "?").join(", ")}) ` +
      `ON DUPLICATE KEY UPDATE ${update.map((c) => `${ident(c, "column")} = VALUES(${ident(c, "column")})`).join(", ")}`,
    params: vals.map(([, v]) => v),
  };
}

const DDL = /^\s*(CREATE|ALTER|DROP|RENAME|TRUNCATE)\s/i;

export function buildDdl(body: Record<string, unknown>): Statement {
  const sql = body.sql;
  if (typeof sql !== "string" || !DDL.test(sql))
    throw new UsageError(`"sql" must be one DDL statement (CREATE, ALTER, DROP, RENAME or TRUNCATE)`);
  return { sql, params: [] };
}

export const WRITE_BUILDERS: Record<string, (body: Record<string, unknown>) => Statement> = {
  insert: buildInsert,
  update: buildUpdate,
  delete: buildDelete,
  upsert: buildUpsert,
  ddl: buildDdl,
};
