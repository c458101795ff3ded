import { describe, expect, test } from "bun:test";
import type { SettingCheck } from "../../../lib/scale/db.ts";
import {
  bufferPoolTarget,
  cnfSnippet,
  connectionsTarget,
  parseSize,
  type Suggestion,
  suggestTuning,
  type TuneInput,
} from "../../../lib/scale/tune.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** check-config's checks as a well-configured server answers them, with overrides. */
function checks(over: Record<string, Partial<SettingCheck>> = {}): SettingCheck[] {
  const base: SettingCheck[] = [
    { name: "log_bin", value: "1", want: "1", ok: true, required: true, note: "start mariadbd with --log-bin" },
    {
      name: "binlog_format",
      value: "ROW",
      want: "ROW",
      ok: true,
      required: true,
      fix: "SET GLOBAL binlog_format = 'ROW'",
      note: "row events",
    },
    { name: "server_id", value: "2", want: "unique", ok: true, required: true, note: "own server_id" },
    {
      name: "binlog_row_image",
      value: "FULL",
      want: "FULL",
      ok: true,
      required: true,
      fix: "SET GLOBAL binlog_row_image = 'FULL'",
      note: "before-image",
    },
    {
      name: "log_bin_compress",
      value: "0",
      want: "0",
      ok: true,
      required: true,
      fix: "SET GLOBAL log_bin_compress = OFF",
      note: "compressed",
    },
    {
      name: "sync_binlog",
      value: "1",
      want: "1",
      ok: true,
      required: false,
      fix: "SET GLOBAL sync_binlog = 1",
      note: "power loss",
    },
    {
      name: "innodb_flush_log_at_trx_commit",
      value: "1",
      want: "1",
      ok: true,
      required: false,
      fix: "SET GLOBAL innodb_flush_log_at_trx_commit = 1",
      note: "durable",
    },
  ];
  return base.map((c) => ({ ...c, ...over[c.name] }));
}

function input(over: Partial<TuneInput> = {}, vars: Record<string, string> = {}): TuneInput {
  return {
    variables: {
      innodb_buffer_pool_size: String(128 * MiB),
      innodb_buffer_pool_chunk_size: String(2 * MiB),
      max_connections: "151",
      max_allowed_packet: String(16 * MiB),
      binlog_checksum: "CRC32",
      wait_timeout: "28800",
      log_bin_basename: "/var/lib/mysql/mysql-bin",
      ...vars,
    },
    checks: checks(),
    memoryBytes: 16 * GiB,
    poolSize: 16,
    ...over,
  };
}

const by = (list: Suggestion[], name: string) => {
  const s = list.find((x) => x.name === name);
  if (!s) throw new Error(`no suggestion for ${name}: ${list.map((x) => x.name).join(", ")}`);
  return s;
};

describe("tune-mariadb suggestions", () => {
  test("buffer pool: about half of RAM after headroom, whole 128 MiB units, at least one unit", () => {
    expect(bufferPoolTarget(16 * GiB)).toBe(7 * GiB); // (16 - 2) / 2
    expect(bufferPoolTarget(4 * GiB)).toBe(1536 * MiB); // (4 - 1) / 2
    expect(bufferPoolTarget(1 * GiB)).toBe(384 * MiB); // (1 - 0.25) / 2
    expect(bufferPoolTarget(256 * MiB)).toBe(128 * MiB);
    expect(bufferPoolTarget(64 * GiB)).toBe(31 * GiB);
    expect(bufferPoolTarget(16 * GiB, 1 * GiB)).toBe(7 * GiB);
    expect(bufferPoolTarget(15 * GiB, 1 * GiB) % GiB).toBe(0);
  });

  test("buffer pool below target: raised, applied with SET GLOBAL in bytes, persisted in G; the assumption is stated", () => {
    const s = by(suggestTuning(input()), "innodb_buffer_pool_size");
    expect(s).toMatchObject({
      ok: false,
      dynamic: true,
      current: String(128 * MiB),
      suggested: String(7 * GiB),
      bytes: true,
    });
    expect(s.set).toBe(`SET GLOBAL innodb_buffer_pool_size = ${7 * GiB}`);
    expect(s.cnf).toBe("innodb_buffer_pool_size = 7G");
    expect(s.why).toMatch(/one MariaDB per machine/);
  });

  test("a larger buffer pool is never shrunk", () => {
    const s = by(suggestTuning(input({}, { innodb_buffer_pool_size: String(12 * GiB) })), "innodb_buffer_pool_size");
    expect(s).toMatchObject({ ok: true, current: String(12 * GiB), suggested: String(12 * GiB), set: undefined });
    expect(s.cnf).toBe("innodb_buffer_pool_size = 12G");
  });

  test("max_connections covers the API pool plus wolf's own plus headroom; only raised", () => {
    expect(connectionsTarget(16)).toBe(44);
    expect(connectionsTarget(200)).toBe(408);
    expect(by(suggestTuning(input()), "max_connections")).toMatchObject({ ok: true, suggested: "151" });
    const big = by(suggestTuning(input({ poolSize: 200 })), "max_connections");
    expect(big).toMatchObject({ ok: false, suggested: "408", set: "SET GLOBAL max_connections = 408" });
    expect(big.why).toContain("pool_size = 200");
    expect(by(suggestTuning(input({}, { max_connections: "20" })), "max_connections").set).toBe(
      "SET GLOBAL max_connections = 44",
    );
  });

  test("durability: sync_binlog and innodb_flush_log_at_trx_commit come from check-config, explained for binlog capture", () => {
    const list = suggestTuning(
      input({
        checks: checks({
          sync_binlog: { value: "0", ok: false },
          innodb_flush_log_at_trx_commit: { value: "2", ok: false },
        }),
      }),
    );
    const sync = by(list, "sync_binlog");
    expect(sync).toMatchObject({
      current: "0",
      suggested: "1",
      ok: false,
      dynamic: true,
      set: "SET GLOBAL sync_binlog = 1",
      cnf: "sync_binlog = 1",
    });
    expect(sync.why).toMatch(/crash must not lose a commit the binlog already showed/);
    const flush = by(list, "innodb_flush_log_at_trx_commit");
    expect(flush).toMatchObject({ current: "2", set: "SET GLOBAL innodb_flush_log_at_trx_commit = 1" });
    expect(flush.why).toMatch(/binlog/);
  });

  test("replication's required settings are all there; static ones are restart-only", () => {
    const list = suggestTuning(
      input({
        checks: checks({ log_bin: { value: "0", ok: false }, binlog_row_image: { value: "MINIMAL", ok: false } }),
      }),
    );
    for (const name of ["log_bin", "binlog_format", "server_id", "binlog_row_image", "log_bin_compress"])
      by(list, name);
    expect(by(list, "log_bin")).toMatchObject({ ok: false, dynamic: false, set: undefined });
    expect(by(list, "binlog_row_image")).toMatchObject({
      ok: false,
      dynamic: true,
      set: "SET GLOBAL binlog_row_image = 'FULL'",
      cnf: "binlog_row_image = FULL",
    });
    // The current binlog base name is persisted (changing it would move capture's binlog files).
    expect(by(list, "log_bin").cnf).toBe("log_bin = /var/lib/mysql/mysql-bin");
    expect(by(list, "server_id").cnf).toBe("server_id = 2");
  });

  test("binlog_checksum: CRC32 ok, NONE raised to CRC32", () => {
    expect(by(suggestTuning(input()), "binlog_checksum")).toMatchObject({ ok: true, set: undefined });
    expect(by(suggestTuning(input({}, { binlog_checksum: "NONE" })), "binlog_checksum")).toMatchObject({
      ok: false,
      set: "SET GLOBAL binlog_checksum = 'CRC32'",
    });
  });

  test("max_allowed_packet and wait_timeout are raised when low, left alone when higher", () => {
    const low = suggestTuning(input({}, { max_allowed_packet: String(4 * MiB), wait_timeout: "30" }));
    expect(by(low, "max_allowed_packet")).toMatchObject({
      ok: false,
      suggested: String(64 * MiB),
      cnf: "max_allowed_packet = 64M",
    });
    expect(by(low, "wait_timeout")).toMatchObject({ ok: false, suggested: "600" });
    const high = suggestTuning(input({}, { max_allowed_packet: String(1 * GiB) }));
    expect(by(high, "max_allowed_packet")).toMatchObject({ ok: true, suggested: String(GiB) });
    expect(by(high, "wait_timeout")).toMatchObject({ ok: true, suggested: "28800" });
  });

  test("a well-tuned server gets no changes; a variable the server lacks is skipped", () => {
    const tuned = suggestTuning(
      input({}, { innodb_buffer_pool_size: String(8 * GiB), max_allowed_packet: String(64 * MiB) }),
    );
    expect(tuned.filter((s) => !s.ok).map((s) => s.name)).toEqual([]);
    const vars = input().variables;
    delete vars.binlog_checksum;
    expect(suggestTuning({ ...input(), variables: vars }).some((s) => s.name === "binlog_checksum")).toBe(false);
  });

  test("my.cnf snippet: a [mariadb] section with every setting, saying SET GLOBAL does not persist", () => {
    const list = suggestTuning(input());
    const cnf = cnfSnippet(list, 16 * GiB);
    expect(cnf).toMatch(/^\[mariadb\]$/m);
    expect(cnf).toMatch(/does not survive a restart/);
    for (const s of list) expect(cnf).toContain(s.cnf);
    // After the section header only settings or comments.
    const body = cnf.slice(cnf.indexOf("[mariadb]\n") + 10).split("\n");
    for (const line of body) expect(line).toMatch(/^(#|[a-z_]+ = \S+$)/);
  });

  test("--memory sizes", () => {
    expect(parseSize("8G")).toBe(8 * GiB);
    expect(parseSize("512M")).toBe(512 * MiB);
    expect(parseSize("1.5GiB")).toBe(1.5 * GiB);
    expect(parseSize(String(GiB))).toBe(GiB);
    expect(() => parseSize("lots")).toThrow(/not a size/);
    expect(() => parseSize("1M")).toThrow(/too little/);
  });
});
