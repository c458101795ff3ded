/**
 * Groups a binlog event stream into whole transactions. Pure: feed raw events in stream order,
 * get CapturedTxn objects out when a transaction is complete (XID, COMMIT/ROLLBACK query, or the
 * single statement of a standalone GTID group such as DDL).
 */
import { ProtocolError } from "../mysql/codec.ts";
import {
  checksumOk,
  ChecksumAlg,
  EventType,
  formatGtid,
  type FormatDescription,
  type Gtid,
  GTID_FL_STANDALONE,
  LOG_EVENT_ARTIFICIAL_F,
  parseEventHeader,
  parseFormatDescription,
  parseGtid,
  parseGtidList,
  parseQuery,
  parseRotate,
} from "./events.ts";
// The text form ("0-1-10,1-2-5"); events.ts parseGtidList reads the binary GTID_LIST event.
import { parseGtidList as parseGtidText } from "./gtid-set.ts";
import { type CapturedTxn, TXN_STANDALONE } from "./txn.ts";

interface Open {
  gtid: Gtid;
  standalone: boolean;
  timestamp: number;
  events: Uint8Array[];
}

export class TxnGrouper {
  private fdRaw: Uint8Array | undefined;
  private fd: FormatDescription | undefined;
  private file = "";
  private open: Open | undefined;
  /** GTID state per replication domain: resume position. */
  private readonly state = new Map<number, Gtid>();
  /** Counters for status. */
  events = 0;
  heartbeats = 0;

  constructor(initialState = "") {
    for (const g of parseGtidText(initialState)) this.state.set(g.domainId, g);
  }

  get gtidState(): string {
    return formatGtidState([...this.state.values()]);
  }

  get binlogFile(): string {
    return this.file;
  }

  /** Feeds one raw event; returns the transaction it completed, if any. */
  push(raw: Uint8Array): CapturedTxn | undefined {
    const h = parseEventHeader(raw);
    this.events++;
    if (h.type === EventType.FormatDescription) {
      const fd = parseFormatDescription(raw);
      if (fd.checksum === ChecksumAlg.Crc32 && !checksumOk(raw))
        throw new ProtocolError("format description event fails its checksum");
      this.fd = fd;
      this.fdRaw = raw.slice();
      return undefined;
    }
    if (this.fd?.checksum === ChecksumAlg.Crc32 && !checksumOk(raw)) {
      throw new ProtocolError(`binlog event type ${h.type} at ${this.file}:${h.logPos} fails its CRC32 checksum`);
    }
    switch (h.type) {
      case EventType.Rotate:
        this.file = parseRotate(raw, this.fd).file;
        return undefined;
      case EventType.Heartbeat:
        this.heartbeats++;
        return undefined;
      case EventType.GtidList:
      case EventType.BinlogCheckpoint:
      case EventType.StartEncryption:
      case EventType.Stop:
        if (this.open)
          throw new ProtocolError(`binlog event type ${h.type} inside transaction ${formatGtid(this.open.gtid)}`);
        if (h.type === EventType.GtidList && this.state.size === 0 && !(h.flags & LOG_EVENT_ARTIFICIAL_F)) {
          // Nothing known yet: the list tells where the file started.
          for (const g of parseGtidList(raw, this.fd)) this.state.set(g.domainId, g);
        }
        return undefined;
      case EventType.Gtid: {
        if (this.open) throw new ProtocolError(`GTID event inside transaction ${formatGtid(this.open.gtid)}`);
        if (!this.fdRaw) throw new ProtocolError("GTID event before any format description event");
        const g = parseGtid(raw, this.fd);
        this.open = {
          gtid: { domainId: g.domainId, serverId: g.serverId, seqNo: g.seqNo },
          standalone: (g.flags2 & GTID_FL_STANDALONE) !== 0,
          timestamp: h.timestamp,
          events: [raw.slice()],
        };
        return undefined;
      }
      case EventType.QueryCompressed:
        throw new ProtocolError(
          "compressed binlog events (log_bin_compress=ON) are not supported; turn log_bin_compress off",
        );
    }
    const open = this.open;
    if (!open) {
      throw new ProtocolError(
        `binlog event type ${h.type} at ${this.file}:${h.logPos} outside any transaction (is binlog_format ROW and GTID on?)`,
      );
    }
    open.events.push(raw.slice());
    let done = false;
    if (h.type === EventType.Xid) done = true;
    else if (h.type === EventType.Query) {
      if (open.standalone) done = true;
      else {
        const sql = new TextDecoder().decode(parseQuery(raw, this.fd).sql).trim().toUpperCase();
        done = sql === "COMMIT" || sql === "ROLLBACK";
      }
    }
    if (!done) return undefined;
    this.open = undefined;
    this.state.set(open.gtid.domainId, open.gtid);
    return {
      gtid: open.gtid,
      flags: open.standalone ? TXN_STANDALONE : 0,
      timestamp: open.timestamp,
      gtidState: this.gtidState,
      binlogFile: this.file,
      endPos: h.logPos,
      formatDescription: this.fdRaw!,
      events: open.events,
    };
  }

  /** Drops a half-received transaction (the stream broke; it will be sent again on resume). */
  reset(): void {
    this.open = undefined;
  }
}

export function formatGtidState(gtids: Gtid[]): string {
  return [...gtids]
    .sort((a, b) => a.domainId - b.domainId)
    .map(formatGtid)
    .join(",");
}
