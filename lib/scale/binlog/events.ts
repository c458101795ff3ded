/**
 * MariaDB binlog events: the common header, checksums, and the few bodies we need to group
 * transactions and to re-apply them (format description, rotate, GTID, query with its status
 * variables, XID, table map, rows-event flags, GTID list). Pure parsing of raw event bytes.
 */
import { ProtocolError, Reader } from "../mysql/codec.ts";

const EVENT_HEADER_BYTES = 19;

export const enum EventType {
  Query = 2,
  Stop = 3,
  Rotate = 4,
  Intvar = 5,
  Rand = 13,
  UserVar = 14,
  FormatDescription = 15,
  Xid = 16,
  TableMap = 19,
  WriteRowsV0 = 20,
  UpdateRowsV0 = 21,
  DeleteRowsV0 = 22,
  WriteRowsV1 = 23,
  UpdateRowsV1 = 24,
  DeleteRowsV1 = 25,
  Incident = 26,
  Heartbeat = 27,
  AnnotateRows = 160,
  BinlogCheckpoint = 161,
  Gtid = 162,
  GtidList = 163,
  StartEncryption = 164,
  QueryCompressed = 165,
  WriteRowsCompressedV0 = 166,
  DeleteRowsCompressedV1 = 171,
}

/** Header flag of events the server made up for the stream (the first ROTATE): not in any file. */
export const LOG_EVENT_ARTIFICIAL_F = 0x20;
/** Rows-event flag: last rows event of a statement. */
export const STMT_END_F = 1;

export const enum ChecksumAlg {
  Off = 0,
  Crc32 = 1,
}

export interface EventHeader {
  timestamp: number;
  type: number;
  serverId: number;
  size: number;
  /** Position just after this event in the source binlog file (0 for artificial events). */
  logPos: number;
  flags: number;
}

export function parseEventHeader(raw: Uint8Array): EventHeader {
  if (raw.length < EVENT_HEADER_BYTES)
    throw new ProtocolError(`binlog event of ${raw.length} bytes is shorter than its header`);
  const r = new Reader(raw);
  const h = { timestamp: r.u32(), type: r.u8(), serverId: r.u32(), size: r.u32(), logPos: r.u32(), flags: r.u16() };
  if (h.size !== raw.length) throw new ProtocolError(`binlog event says ${h.size} bytes but ${raw.length} arrived`);
  return h;
}

/** True if the event's trailing CRC32 matches (events carry one when the binlog checksum is CRC32). */
export function checksumOk(raw: Uint8Array): boolean {
  if (raw.length < EVENT_HEADER_BYTES + 4) return false;
  const n = raw.length - 4;
  const stored = (raw[n]! | (raw[n + 1]! << 8) | (raw[n + 2]! << 16)) + raw[n + 3]! * 0x1000000;
  return Bun.hash.crc32(raw.subarray(0, n)) >>> 0 === stored;
}

export function isRowsEvent(type: number): boolean {
  return (
    (type >= EventType.WriteRowsV0 && type <= EventType.DeleteRowsV1) ||
    (type >= EventType.WriteRowsCompressedV0 && type <= EventType.DeleteRowsCompressedV1)
  );
}

export interface FormatDescription {
  binlogVersion: number;
  serverVersion: string;
  headerLength: number;
  /** Post-header length per event type (index = type - 1). */
  postHeaderLengths: Uint8Array;
  checksum: ChecksumAlg;
}

export function parseFormatDescription(raw: Uint8Array): FormatDescription {
  const r = new Reader(raw, EVENT_HEADER_BYTES);
  const binlogVersion = r.u16();
  const serverVersion = r.fixedString(50).replace(/\0.*$/s, "");
  r.u32(); // created
  const headerLength = r.u8();
  if (binlogVersion !== 4 || headerLength !== EVENT_HEADER_BYTES) {
    throw new ProtocolError(`unsupported binlog format v${binlogVersion} (header ${headerLength} bytes)`);
  }
  // What follows: post-header lengths, then the checksum algorithm byte, then (if CRC32) the CRC.
  const withCrc = checksumOk(raw) && raw[raw.length - 5] === ChecksumAlg.Crc32;
  const algPos = withCrc ? raw.length - 5 : raw.length - 1;
  const checksum = raw[algPos] === ChecksumAlg.Crc32 ? ChecksumAlg.Crc32 : ChecksumAlg.Off;
  return { binlogVersion, serverVersion, headerLength, postHeaderLengths: raw.slice(r.pos, algPos), checksum };
}

/** Event bytes without the header and without the checksum (if the format has one). */
function eventBody(raw: Uint8Array, fd: FormatDescription | undefined): Reader {
  const end = fd?.checksum === ChecksumAlg.Crc32 ? raw.length - 4 : raw.length;
  return new Reader(raw, EVENT_HEADER_BYTES, end);
}

export function parseRotate(raw: Uint8Array, fd: FormatDescription | undefined): { position: number; file: string } {
  // The stream's first (artificial) ROTATE comes before any format description: it carries a
  // checksum exactly when the server uses them, which the checksum itself tells.
  const r = fd
    ? eventBody(raw, fd)
    : new Reader(raw, EVENT_HEADER_BYTES, checksumOk(raw) ? raw.length - 4 : raw.length);
  const position = r.u64();
  return { position, file: r.fixedString(r.remaining) };
}

/** GTID event flags2 bit: a transaction without BEGIN/COMMIT (DDL). The other bits are not needed here. */
export const GTID_FL_STANDALONE = 1;

export interface Gtid {
  domainId: number;
  serverId: number;
  seqNo: bigint;
}

export function formatGtid(g: Gtid): string {
  return `${g.domainId}-${g.serverId}-${g.seqNo}`;
}

export function parseGtid(raw: Uint8Array, fd: FormatDescription | undefined): Gtid & { flags2: number } {
  const h = parseEventHeader(raw);
  const r = eventBody(raw, fd);
  const seqNo = r.u64n();
  const domainId = r.u32();
  const flags2 = r.u8();
  return { domainId, serverId: h.serverId, seqNo, flags2 };
}

export function parseGtidList(raw: Uint8Array, fd: FormatDescription | undefined): Gtid[] {
  const r = eventBody(raw, fd);
  const count = r.u32() & 0x0fffffff;
  const out: Gtid[] = [];
  for (let i = 0; i < count; i++) out.push({ domainId: r.u32(), serverId: r.u32(), seqNo: r.u64n() });
  return out;
}

/** Table id and flags of a rows event (post-header: 6-byte table id, 2-byte flags). */
export function parseRowsHeader(
  raw: Uint8Array,
  fd: FormatDescription | undefined,
): { tableId: number; flags: number } {
  const r = eventBody(raw, fd);
  return { tableId: r.u48(), flags: r.u16() };
}

/** Session state a QUERY event was executed with (its status variables). */
export interface QueryStatus {
  flags2?: number;
  sqlMode?: bigint;
  autoIncrementIncrement?: number;
  autoIncrementOffset?: number;
  charsetClient?: number;
  collationConnection?: number;
  collationServer?: number;
  timeZone?: string;
  lcTimeNames?: number;
  collationDatabase?: number;
  microseconds?: number;
}

export interface QueryEvent {
  timestamp: number;
  threadId: number;
  execTime: number;
  errorCode: number;
  database: string;
  status: QueryStatus;
  /** The statement bytes, exactly as the client sent them (in charsetClient). */
  sql: Uint8Array;
}

export function parseQuery(raw: Uint8Array, fd: FormatDescription | undefined): QueryEvent {
  const h = parseEventHeader(raw);
  const r = eventBody(raw, fd);
  const threadId = r.u32();
  const execTime = r.u32();
  const dbLen = r.u8();
  const errorCode = r.u16();
  const statusLen = r.u16();
  const status = parseQueryStatus(r.bytes(statusLen));
  const database = r.fixedString(dbLen);
  r.u8(); // NUL after the database name
  return { timestamp: h.timestamp, threadId, execTime, errorCode, database, status, sql: r.rest() };
}

/** Status variables (MariaDB 10.x + MySQL 5.x codes); an unknown code is an error, since lengths are implicit. */
export function parseQueryStatus(bytes: Uint8Array): QueryStatus {
  const r = new Reader(bytes);
  const s: QueryStatus = {};
  while (r.remaining > 0) {
    const code = r.u8();
    switch (code) {
      case 0: // Q_FLAGS2_CODE
        s.flags2 = r.u32();
        break;
      case 1: // Q_SQL_MODE_CODE
        s.sqlMode = r.u64n();
        break;
      case 2: // Q_CATALOG_CODE (old): length, string, NUL
        r.skip(r.u8() + 1);
        break;
      case 3: // Q_AUTO_INCREMENT
        s.autoIncrementIncrement = r.u16();
        s.autoIncrementOffset = r.u16();
        break;
      case 4: // Q_CHARSET_CODE
        s.charsetClient = r.u16();
        s.collationConnection = r.u16();
        s.collationServer = r.u16();
        break;
      case 5: // Q_TIME_ZONE_CODE
        s.timeZone = r.fixedString(r.u8());
        break;
      case 6: // Q_CATALOG_NZ_CODE
        r.skip(r.u8());
        break;
      case 7: // Q_LC_TIME_NAMES_CODE
        s.lcTimeNames = r.u16();
        break;
      case 8: // Q_CHARSET_DATABASE_CODE
        s.collationDatabase = r.u16();
        break;
      case 9: // Q_TABLE_MAP_FOR_UPDATE_CODE
        r.skip(8);
        break;
      case 10: // Q_MASTER_DATA_WRITTEN_CODE
        r.skip(4);
        break;
      case 11: // Q_INVOKER: user, host
        r.skip(r.u8());
        r.skip(r.u8());
        break;
      case 12: {
        // Q_UPDATED_DB_NAMES: count, then NUL-terminated names (254 = too many, no names)
        const n = r.u8();
        if (n !== 254) for (let i = 0; i < n; i++) r.cstring();
        break;
      }
      case 13: // Q_MICROSECONDS (MySQL)
        s.microseconds = r.u24();
        break;
      case 128: // Q_HRNOW (MariaDB): microseconds of the timestamp
        s.microseconds = r.u24();
        break;
      case 129: // Q_XID (MariaDB)
        r.skip(8);
        break;
      case 130: // Q_GTID_FLAGS3 (MariaDB)
        r.skip(1);
        break;
      default:
        throw new ProtocolError(`unknown QUERY event status variable ${code}; cannot know its length`);
    }
  }
  return s;
}
