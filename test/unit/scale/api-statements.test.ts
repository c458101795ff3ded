/** The HTTP API's structured writes: identifiers validated and quoted, values only as parameters. */
import { describe, expect, test } from "bun:test";
import { buildDdl, buildDelete, buildInsert, buildUpdate, buildUpsert } from "../../../lib/scale/api/statements.ts";
import { Snowflake, parseSnowflake } from "../../../lib/scale/api/snowflake.ts";

describe("structured writes", () => {
  test("insert: several rows, values as parameters", () => {
    expect(
      buildInsert({
        table: "app.t",
        rows: [
          { a: 1, b: "x" },
          { b: "y", a: 2 },
        ],
      }),
    ).toEqual({
      sql: "INSERT INTO `app`.`t` (`a`, `b`) VALUES (?, ?), (?, ?)",
      params: [1, "x", 2, "y"],
    });
    expect(buildInsert({ database: "app", table: "t", values: { a: null } })).toEqual({
      sql: "INSERT INTO `app`.`t` (`a`) VALUES (?)",
      params: [null],
    });
  });

  test("update/delete need a where (or all: true); null matches IS NULL", () => {
    expect(buildUpdate({ table: "t", set: { a: 1 }, where: { id: 5, gone: null } })).toEqual({
      sql: "UPDATE `t` SET `a` = ? WHERE `id` = ? AND `gone` IS NULL",
      params: [1, 5],
    });
    expect(() => buildUpdate({ table: "t", set: { a: 1 } })).toThrow(/"where" is required/);
    expect(buildDelete({ table: "t", all: true })).toEqual({ sql: "DELETE FROM `t`", params: [] });
    expect(() => buildDelete({ table: "t", where: {} })).toThrow(/"where" is required/);
  });

  test("upsert updates the given columns", () => {
    expect(buildUpsert({ table: "t", values: { k: "a", n: 1 }, update: ["n"] })).toEqual({
      sql: "INSERT INTO `t` (`k`, `n`) VALUES (?, ?) ON DUPLICATE KEY UPDATE `n` = VALUES(`n`)",
      params: ["a", 1],
    });
  });

  test("injection attempts in identifiers are refused; in values they are just data", () => {
    for (const table of ["t; DROP TABLE x", "t`", "a.b.c", "1t", "t--", ""])
      expect(() => buildInsert({ table, values: { a: 1 } })).toThrow(/identifier|table/);
    expect(() => buildInsert({ table: "t", values: { "a`) VALUES (1); DROP TABLE t; --": 1 } })).toThrow(/identifier/);
    expect(() => buildUpdate({ table: "t", set: { a: 1 }, where: { "1=1 OR id": 1 } })).toThrow(/identifier/);
    const evil = "x'); DROP TABLE t; --";
    expect(buildInsert({ table: "t", values: { a: evil } })).toEqual({
      sql: "INSERT INTO `t` (`a`) VALUES (?)",
      params: [evil],
    });
    expect(() => buildInsert({ table: "t", values: { a: { nested: 1 } } })).toThrow(/string, number, boolean or null/);
    expect(() => buildInsert({ table: "t", rows: [{ a: 1 }, { b: 2 }] })).toThrow(/same columns/);
  });

  test("ddl accepts DDL only", () => {
    expect(buildDdl({ sql: "ALTER TABLE t ADD c INT" }).sql).toBe("ALTER TABLE t ADD c INT");
    expect(() => buildDdl({ sql: "DELETE FROM t" })).toThrow(/DDL/);
    expect(() => buildDdl({})).toThrow(/DDL/);
  });
});

describe("snowflake ids", () => {
  test("41-bit ms, 10-bit node, 12-bit sequence; unique and increasing, also when the clock stands still or steps back", () => {
    let now = 1_700_000_000_000;
    const sf = new Snowflake(513, () => now);
    const ids: bigint[] = [];
    for (let i = 0; i < 10_000; i++) ids.push(sf.next()); // more than 4096 in one millisecond
    now -= 3; // small step back
    for (let i = 0; i < 10; i++) ids.push(sf.next());
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
    const p = parseSnowflake(ids[0]!);
    expect(p).toEqual({ ms: 1_700_000_000_000, node: 513, seq: 0 });
    expect(parseSnowflake(ids[4096]!).ms).toBe(1_700_000_000_001);
    expect(ids[0]! < 1n << 63n).toBe(true);
    now -= 10_000;
    expect(() => sf.next()).toThrow(/clock went back/);
  });
});
