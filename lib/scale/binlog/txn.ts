/**
 * A captured transaction as stored in one WAL entry: the GTID, where it ended in the source
 * binlog, the GTID state after it (the resume position), the format description event its events
 * need, and the raw events themselves (GTID … XID/COMMIT, or GTID + one DDL query).
 *
 *   u8 version (1), u8 flags, u32 domain, u32 server id, u64 seq, u32 timestamp,
 *   lenenc gtid state, lenenc binlog file, u32 end position,
 *   lenenc format-description event, lenenc count, then each event as lenenc bytes.
 */
import { ProtocolError, Reader, Writer } from "../mysql/codec.ts";
import type { Gtid } from "./events.ts";

const VERSION = 1;
export const TXN_STANDALONE = 1; // a DDL (or other non-transactional statement) on its own

export interface CapturedTxn {
  gtid: Gtid;
  flags: number;
  /** Source server's commit time (seconds). */
  timestamp: number;
  /** GTID position after this transaction (all domains), e.g. "0-1-42"; where capture resumes. */
  gtidState: string;
  binlogFile: string;
  endPos: number;
  formatDescription: Uint8Array;
  events: Uint8Array[];
}

export function encodeTxn(t: CapturedTxn): Uint8Array {
  const w = new Writer()
    .u8(VERSION)
    .u8(t.flags)
    .u32(t.gtid.domainId)
    .u32(t.gtid.serverId)
    .u32(Number(t.gtid.seqNo & 0xffffffffn))
    .u32(Number(t.gtid.seqNo >> 32n))
    .u32(t.timestamp)
    .lenencBytes(new TextEncoder().encode(t.gtidState))
    .lenencBytes(new TextEncoder().encode(t.binlogFile))
    .u32(t.endPos)
    .lenencBytes(t.formatDescription)
    .lenenc(t.events.length);
  for (const e of t.events) w.lenencBytes(e);
  return w.finish();
}

export function decodeTxn(data: Uint8Array): CapturedTxn {
  const r = new Reader(data);
  const version = r.u8();
  if (version !== VERSION) throw new ProtocolError(`unknown captured-transaction format version ${version}`);
  const flags = r.u8();
  const domainId = r.u32();
  const serverId = r.u32();
  const seqNo = r.u64n();
  const timestamp = r.u32();
  const gtidState = new TextDecoder().decode(r.lenencBytes()!);
  const binlogFile = new TextDecoder().decode(r.lenencBytes()!);
  const endPos = r.u32();
  const formatDescription = r.lenencBytes()!;
  const n = r.lenenc();
  const events: Uint8Array[] = [];
  for (let i = 0; i < n; i++) events.push(r.lenencBytes()!);
  if (r.remaining !== 0) throw new ProtocolError(`captured transaction has ${r.remaining} trailing bytes`);
  return {
    gtid: { domainId, serverId, seqNo },
    flags,
    timestamp,
    gtidState,
    binlogFile,
    endPos,
    formatDescription,
    events,
  };
}
