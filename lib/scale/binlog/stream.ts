/**
 * Tails a MariaDB binlog as a replica would: checksum-aware, GTID-positioned COM_BINLOG_DUMP.
 * Yields raw events (header + body + checksum) exactly as the server sends them.
 */
import { Writer } from "../mysql/codec.ts";
import { Command, type ConnectOptions, MysqlConnection, parseErrorPacket } from "../mysql/connection.ts";

export interface BinlogStreamOptions {
  connect: ConnectOptions;
  /** Our replica server id: must differ from every real server and replica of that MariaDB. */
  serverId: number;
  /** GTID position to continue after ("" = from the first binlog the server still has). */
  gtidState: string;
  /** Ask the server for a heartbeat event when idle this long (ms), so a dead link is noticed. */
  heartbeatMs?: number;
}

function sqlString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export class BinlogStream {
  private constructor(private readonly conn: MysqlConnection) {}

  static async open(opts: BinlogStreamOptions): Promise<BinlogStream> {
    const conn = await MysqlConnection.connect(opts.connect);
    try {
      // Tell the server we understand checksums (otherwise it strips them) and GTID events.
      await conn.query("SET @master_binlog_checksum = @@global.binlog_checksum");
      await conn.query("SET @mariadb_slave_capability = 4");
      const hb = opts.heartbeatMs ?? 1000;
      if (hb > 0) await conn.query(`SET @master_heartbeat_period = ${Math.round(hb * 1e6)}`);
      await conn.query(`SET @slave_connect_state = ${sqlString(opts.gtidState)}`);
      await conn.query("SET @slave_gtid_strict_mode = 1");
      await conn.query("SET @slave_gtid_ignore_duplicates = 0");
      conn.sendCommand(
        Command.RegisterSlave,
        new Writer().u32(opts.serverId).u8(0).u8(0).u8(0).u16(0).u32(0).u32(0).finish(),
      );
      const ok = await conn.readPacket();
      if (ok[0] === 0xff) throw parseErrorPacket(ok);
      // With @slave_connect_state set, the file name and position are ignored: the GTID decides.
      conn.sendCommand(Command.BinlogDump, new Writer().u32(4).u16(0).u32(opts.serverId).finish());
    } catch (err) {
      conn.destroy();
      throw err;
    }
    return new BinlogStream(conn);
  }

  /** Next raw event; undefined when the server ended the stream. Throws on errors. */
  async next(): Promise<Uint8Array | undefined> {
    const p = await this.conn.readPacket();
    if (p[0] === 0x00) return p.subarray(1);
    if (p[0] === 0xff) throw parseErrorPacket(p);
    if (p[0] === 0xfe && p.length < 9) return undefined;
    throw new Error(`unexpected binlog stream packet 0x${p[0]?.toString(16)}`);
  }

  close(): void {
    this.conn.destroy();
  }
}
