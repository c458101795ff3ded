/**
 * A minimal MySQL-protocol client connection: handshake (mysql_native_password, with auth switch),
 * COM_QUERY with text result sets, and raw commands whose reply is a stream of packets (what
 * COM_BINLOG_DUMP needs, and what mysql2 does not expose).
 */
import { createHash } from "node:crypto";
import net from "node:net";
import { concatBytes } from "../../common/bytes.ts";
import { errnoName, errnoReason, WolfError } from "../../common/errors.ts";
import { ProtocolError, Reader, Writer } from "./codec.ts";

export const enum Command {
  Quit = 0x01,
  Query = 0x03,
  Ping = 0x0e,
  BinlogDump = 0x12,
  RegisterSlave = 0x15,
}

const CLIENT_LONG_PASSWORD = 0x1;
const CLIENT_LONG_FLAG = 0x4;
const CLIENT_CONNECT_WITH_DB = 0x8;
const CLIENT_PROTOCOL_41 = 0x200;
const CLIENT_TRANSACTIONS = 0x2000;
const CLIENT_SECURE_CONNECTION = 0x8000;
const CLIENT_MULTI_STATEMENTS = 0x10000;
const CLIENT_MULTI_RESULTS = 0x20000;
const CLIENT_PLUGIN_AUTH = 0x80000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA = 0x200000;
const SERVER_MORE_RESULTS_EXISTS = 0x8;
const MAX_PACKET = 0xffffff;

export interface ConnectOptions {
  host?: string;
  port?: number;
  /** Unix socket; used instead of host:port when set. */
  socketPath?: string;
  user: string;
  password?: string;
  database?: string;
  connectTimeoutMs?: number;
  /** Hint when nothing answers at the address (which config setting to check). */
  unreachableHint?: string;
  /**
   * Several statements in one COM_QUERY (one round trip). The server runs them in order and stops
   * at the first error, which query() throws; queryAll() returns every statement's result.
   */
  multiStatements?: boolean;
}

/** An error packet from the server, with its code and SQL state passed through unchanged. */
export class ServerError extends WolfError {
  readonly errno: number;
  readonly sqlState: string;
  constructor(errno: number, sqlState: string, message: string) {
    super("protocol", `MariaDB error ${errno} (${sqlState}): ${message}`);
    this.name = "ServerError";
    this.errno = errno;
    this.sqlState = sqlState;
  }
}

export function parseErrorPacket(p: Uint8Array): ServerError {
  const r = new Reader(p, 1);
  const errno = r.u16();
  let sqlState = "HY000";
  if (r.remaining > 0 && p[r.pos] === 0x23) {
    r.skip(1);
    sqlState = r.fixedString(5);
  }
  return new ServerError(errno, sqlState, new TextDecoder().decode(r.rest()));
}

/** mysql_native_password: SHA1(pw) XOR SHA1(scramble + SHA1(SHA1(pw))). */
function nativePasswordToken(password: string, scramble: Uint8Array): Uint8Array {
  if (password === "") return new Uint8Array(0);
  const sha1 = (...parts: Uint8Array[]) => {
    const h = createHash("sha1");
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  };
  const stage1 = sha1(new TextEncoder().encode(password));
  const stage2 = sha1(stage1);
  const mix = sha1(scramble.subarray(0, 20), stage2);
  for (let i = 0; i < stage1.length; i++) mix[i]! ^= stage1[i]!;
  return mix;
}

export interface QueryResult {
  columns: string[];
  /** Text protocol values: strings (binary-safe as latin1 is not needed for our queries) or null. */
  rows: Array<Array<string | null>>;
  affectedRows: number;
  insertId: number;
}

const SOCKET_FAILURES: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  ETIMEDOUT: "timed out",
  EHOSTUNREACH: "no route to the host",
  ENETUNREACH: "no route to the host",
  ENOTFOUND: "cannot resolve the host name",
  EAI_NONAME: "cannot resolve the host name",
};

/** Why a socket failed, in words and with its errno name ("connection refused (ECONNREFUSED)"). */
function socketFailure(err: unknown): string {
  const name = errnoName(err);
  const reason = (name && SOCKET_FAILURES[name]) ?? errnoReason(err);
  return name && !reason.includes(name) ? `${reason} (${name})` : reason;
}

export class MysqlConnection {
  private socket: net.Socket;
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private waiter: (() => void) | undefined;
  private ended: Error | undefined;
  private seq = 0;
  serverVersion = "";
  connectionId = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.buffered += chunk.byteLength;
      this.wake();
    });
    socket.on("error", (err) => {
      this.ended ??= new WolfError("network", `MariaDB connection failed: ${socketFailure(err)}`, { cause: err });
      this.wake();
    });
    socket.on("close", () => {
      this.ended ??= new WolfError("network", "MariaDB closed the connection");
      this.wake();
    });
  }

  static async connect(opts: ConnectOptions): Promise<MysqlConnection> {
    const socket = opts.socketPath
      ? net.createConnection({ path: opts.socketPath })
      : net.createConnection({ host: opts.host ?? "127.0.0.1", port: opts.port ?? 3306 });
    socket.setNoDelay(true);
    const conn = new MysqlConnection(socket);
    const where = opts.socketPath ?? `${opts.host ?? "127.0.0.1"}:${opts.port ?? 3306}`;
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        conn.handshake(opts),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new WolfError("network", `MariaDB at ${where}: no handshake within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (err) {
      conn.destroy();
      // The socket failed before the server said anything: nothing (of ours) answers there.
      const system = err instanceof WolfError && errnoName(err.cause) ? err.cause : errnoName(err) ? err : undefined;
      if (system) {
        throw new WolfError("network", `cannot connect to MariaDB at ${where}: ${socketFailure(system)}`, {
          hint: opts.unreachableHint ?? "is MariaDB running, and listening there?",
          cause: system,
        });
      }
      if (err instanceof WolfError) throw err;
      throw new WolfError("network", `MariaDB at ${where}: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private async readBytes(n: number): Promise<Uint8Array> {
    while (this.buffered < n) {
      if (this.ended) throw this.ended;
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length, n - off);
      out.set(c.subarray(0, take), off);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.buffered -= n;
    return out;
  }

  /** Reads one logical packet (joining 16 MiB continuation packets). */
  async readPacket(): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for (;;) {
      const header = await this.readBytes(4);
      const len = header[0]! | (header[1]! << 8) | (header[2]! << 16);
      this.seq = (header[3]! + 1) & 0xff;
      parts.push(len > 0 ? await this.readBytes(len) : new Uint8Array(0));
      if (len < MAX_PACKET) break;
    }
    return parts.length === 1 ? parts[0]! : concatBytes(parts);
  }

  private writePacket(payload: Uint8Array): void {
    let off = 0;
    for (;;) {
      const len = Math.min(MAX_PACKET, payload.length - off);
      const frame = new Uint8Array(4 + len);
      frame[0] = len & 0xff;
      frame[1] = (len >> 8) & 0xff;
      frame[2] = (len >> 16) & 0xff;
      frame[3] = this.seq;
      this.seq = (this.seq + 1) & 0xff;
      frame.set(payload.subarray(off, off + len), 4);
      this.socket.write(frame);
      off += len;
      if (len < MAX_PACKET) break;
    }
  }

  private async handshake(opts: ConnectOptions): Promise<void> {
    const hello = await this.readPacket();
    if (hello[0] === 0xff) throw parseErrorPacket(hello);
    const r = new Reader(hello);
    const protocol = r.u8();
    if (protocol !== 10) throw new ProtocolError(`unsupported handshake protocol ${protocol}`);
    this.serverVersion = r.cstring();
    this.connectionId = r.u32();
    const scramble1 = r.bytes(8);
    r.skip(1);
    let caps = r.u16();
    r.u8(); // charset
    r.u16(); // status
    caps |= r.u16() << 16;
    const authLen = r.u8();
    r.skip(10);
    const scramble2 = r.bytes(Math.max(13, authLen - 8));
    const plugin = caps & CLIENT_PLUGIN_AUTH ? r.cstring() : "mysql_native_password";
    const scramble = new Uint8Array([...scramble1, ...scramble2.subarray(0, 12)]);
    if (!(caps & CLIENT_PROTOCOL_41)) throw new ProtocolError("server does not speak protocol 4.1");

    const password = opts.password ?? "";
    const token = plugin === "mysql_native_password" ? nativePasswordToken(password, scramble) : new Uint8Array(0);
    let flags =
      CLIENT_LONG_PASSWORD |
      CLIENT_LONG_FLAG |
      CLIENT_PROTOCOL_41 |
      CLIENT_TRANSACTIONS |
      CLIENT_SECURE_CONNECTION |
      CLIENT_MULTI_RESULTS |
      CLIENT_PLUGIN_AUTH |
      CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;
    if (opts.database) flags |= CLIENT_CONNECT_WITH_DB;
    if (opts.multiStatements) flags |= CLIENT_MULTI_STATEMENTS;
    flags &= caps | CLIENT_CONNECT_WITH_DB;
    const w = new Writer()
      .u32(flags >>> 0)
      .u32(MAX_PACKET)
      .u8(45) // utf8mb4_general_ci
      .zeros(23)
      .cstring(opts.user);
    if (flags & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) w.lenencBytes(token);
    else w.u8(token.length).bytes(token);
    if (opts.database) w.cstring(opts.database);
    w.cstring("mysql_native_password");
    this.writePacket(w.finish());

    for (;;) {
      const reply = await this.readPacket();
      if (reply[0] === 0x00) return;
      if (reply[0] === 0xff) throw parseErrorPacket(reply);
      if (reply[0] === 0xfe) {
        // Auth switch: the account uses another plugin (or wants a fresh scramble).
        const sr = new Reader(reply, 1);
        const name = sr.cstring();
        if (name !== "mysql_native_password") {
          throw new WolfError(
            "auth",
            `MariaDB asks for auth plugin ${name}; wolf supports mysql_native_password for replication users`,
            {
              hint: "ALTER USER ... IDENTIFIED VIA mysql_native_password USING PASSWORD('...')",
            },
          );
        }
        let data = sr.rest();
        if (data.length > 0 && data[data.length - 1] === 0) data = data.subarray(0, data.length - 1);
        this.writePacket(nativePasswordToken(password, data));
        continue;
      }
      throw new ProtocolError(`unexpected handshake reply 0x${reply[0]?.toString(16)}`);
    }
  }

  /** Sends a command packet (sequence 0). */
  sendCommand(cmd: Command, payload: Uint8Array = new Uint8Array(0)): void {
    if (this.ended) throw this.ended;
    this.seq = 0;
    const p = new Uint8Array(1 + payload.length);
    p[0] = cmd;
    p.set(payload, 1);
    this.writePacket(p);
  }

  /** COM_QUERY; returns the last result set (or OK counts). Throws ServerError on an error packet. */
  async query(sql: string | Uint8Array): Promise<QueryResult> {
    return (await this.queryAll(sql)).at(-1)!;
  }

  /**
   * COM_QUERY; every statement's result, in order (multiStatements). Throws at the first error.
   * `statements`: how many results to expect. Pass it: the server does not always flag "more
   * results follow" (a BINLOG statement clears that flag in its OK packet), and a reader that
   * stops early leaves the rest in the stream for the next query to misread.
   */
  async queryAll(sql: string | Uint8Array, statements?: number): Promise<QueryResult[]> {
    this.sendCommand(Command.Query, typeof sql === "string" ? new TextEncoder().encode(sql) : sql);
    const results: QueryResult[] = [];
    let result: QueryResult;
    for (;;) {
      const first = await this.readPacket();
      if (first[0] === 0xff) throw parseErrorPacket(first);
      let status: number;
      if (first[0] === 0x00) {
        const r = new Reader(first, 1);
        result = { columns: [], rows: [], affectedRows: r.lenenc(), insertId: r.lenenc() };
        status = r.u16();
      } else {
        const count = new Reader(first).lenenc();
        const columns: string[] = [];
        for (let i = 0; i < count; i++) {
          const r = new Reader(await this.readPacket());
          for (let k = 0; k < 4; k++) r.lenencBytes(); // catalog, schema, table, org_table
          columns.push(r.lenencString() ?? "");
        }
        await this.readPacket(); // EOF after the column definitions
        const rows: Array<Array<string | null>> = [];
        for (;;) {
          const p = await this.readPacket();
          if (p[0] === 0xff) throw parseErrorPacket(p);
          if (p[0] === 0xfe && p.length < 9) {
            status = new Reader(p, 3).u16();
            break;
          }
          const r = new Reader(p);
          const row: Array<string | null> = [];
          for (let i = 0; i < count; i++) row.push(r.lenencString());
          rows.push(row);
        }
        result = { columns, rows, affectedRows: 0, insertId: 0 };
      }
      results.push(result);
      if (statements !== undefined ? results.length >= statements : !(status & SERVER_MORE_RESULTS_EXISTS))
        return results;
    }
  }

  /** Rows as objects keyed by column name. */
  async queryObjects(sql: string): Promise<Array<Record<string, string | null>>> {
    const res = await this.query(sql);
    return res.rows.map((row) => Object.fromEntries(res.columns.map((c, i) => [c, row[i] ?? null])));
  }

  get closed(): boolean {
    return this.ended !== undefined;
  }

  /** Polite close (COM_QUIT), then the socket. */
  close(): void {
    if (!this.ended) {
      try {
        this.sendCommand(Command.Quit);
      } catch {
        // already broken
      }
    }
    this.destroy();
  }

  destroy(): void {
    this.ended ??= new WolfError("network", "connection closed");
    this.socket.destroy();
    this.wake();
  }
}
