import { describe, expect, test } from "bun:test";
import { checksumOk, EventType, parseEventHeader, parseQueryStatus } from "../../../lib/scale/binlog/events.ts";
import { formatGtidState, TxnGrouper } from "../../../lib/scale/binlog/grouper.ts";
import { parseGtidList } from "../../../lib/scale/binlog/gtid-set.ts";
import { decodeTxn, encodeTxn, TXN_STANDALONE } from "../../../lib/scale/binlog/txn.ts";
import { Reader, Writer } from "../../../lib/scale/mysql/codec.ts";

/** A synthetic event: 19-byte header, body, CRC32 trailer. */
function event(type: number, body: Uint8Array, logPos = 100): Uint8Array {
  const size = 19 + body.length + 4;
  const w = new Writer().u32(1_700_000_000).u8(type).u32(1).u32(size).u32(logPos).u16(0).bytes(body);
  const noCrc = w.finish();
  return new Writer()
    .bytes(noCrc)
    .u32(Bun.hash.crc32(noCrc) >>> 0)
    .finish();
}

describe("scale mysql codec", () => {
  test("length-encoded integers round-trip at every width boundary", () => {
    const values = [0, 250, 251, 0xffff, 0x10000, 0xffffff, 0x1000000, 2 ** 40 + 5];
    const w = new Writer();
    for (const v of values) w.lenenc(v);
    const r = new Reader(w.finish());
    for (const v of values) expect(r.lenenc()).toBe(v);
    expect(r.remaining).toBe(0);
    expect(() => r.u8()).toThrow(/truncated/);
  });
});

describe("scale binlog codec", () => {
  test("event header, checksum and status variables parse; damage is detected", () => {
    const ev = event(EventType.Xid, new Writer().u64(42).finish());
    expect(parseEventHeader(ev)).toMatchObject({ type: EventType.Xid, serverId: 1, size: ev.length, logPos: 100 });
    expect(checksumOk(ev)).toBe(true);
    ev[20]! ^= 1;
    expect(checksumOk(ev)).toBe(false);
    const status = new Writer()
      .u8(0)
      .u32(0)
      .u8(1)
      .u64(0x40000000)
      .u8(4)
      .u16(45)
      .u16(45)
      .u16(8)
      .u8(5)
      .u8(6)
      .string("SYSTEM")
      .u8(128)
      .u24(123456)
      .finish();
    expect(parseQueryStatus(status)).toMatchObject({
      flags2: 0,
      charsetClient: 45,
      collationServer: 8,
      timeZone: "SYSTEM",
      microseconds: 123456,
    });
    expect(() => parseQueryStatus(new Uint8Array([99, 0]))).toThrow(/unknown QUERY event status variable 99/);
  });

  test("captured transactions round-trip through their WAL encoding", () => {
    const t = {
      gtid: { domainId: 3, serverId: 7, seqNo: 2n ** 40n + 9n },
      flags: TXN_STANDALONE,
      timestamp: 1_700_000_000,
      gtidState: "0-1-5,3-7-1099511627785",
      binlogFile: "mysql-bin.000002",
      endPos: 12345,
      formatDescription: new Uint8Array([1, 2, 3]),
      events: [new Uint8Array(300).fill(7), new Uint8Array(0), new Uint8Array([9])],
    };
    expect(decodeTxn(encodeTxn(t))).toEqual(t);
    expect(() => decodeTxn(new Uint8Array([9]))).toThrow(/version 9/);
  });

  test("GTID states parse and print in domain order; garbage is refused", () => {
    expect(formatGtidState(parseGtidList("3-1-9, 0-2-5"))).toBe("0-2-5,3-1-9");
    expect(parseGtidList("")).toEqual([]);
    expect(() => parseGtidList("0-1")).toThrow(/invalid GTID/);
  });

  test("the grouper refuses events outside a transaction and corrupt events", () => {
    const g = new TxnGrouper();
    expect(() => g.push(event(EventType.TableMap, new Uint8Array(10)))).toThrow(/outside any transaction/);
    const rot = event(EventType.Rotate, new Writer().u64(4).string("mysql-bin.000001").finish());
    expect(g.push(rot)).toBeUndefined();
    expect(g.binlogFile).toBe("mysql-bin.000001");
    expect(() => g.push(event(EventType.Gtid, new Writer().u64(1).u32(0).u8(0).finish()))).toThrow(
      /before any format description/,
    );
  });
});
