/**
 * The cluster transport over TCP: one persistent, authenticated connection per pair of nodes
 * (the lower ID dials; a static peer address is dialled by anyone until its ID is known; if both
 * sides dialled at once, the connection dialled by the lower ID wins), length-prefixed frames with
 * a size limit, reconnects with exponential backoff, and request/response correlation by request
 * ID so concurrent requests never get each other's replies.
 *
 * Frame payload (inside the MAC, see auth.ts): [u8 kind][u32 request id][message (codec.ts)].
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { logger } from "../common/log.ts";
import { clusterKey, frameContext, HELLO_CONTEXT, nonce, open, seal, sessionKey } from "./auth.ts";
import { decodeMessage, encodeMessage } from "./codec.ts";
import { DEFAULT_MAX_FRAME_BYTES, encodeFrame, FrameDecoder, FrameTooLargeError } from "./framing.ts";
import type { Message, MessageHandler, NodeId, Transport } from "./types.ts";

export const KIND_MESSAGE = 0;
export const KIND_REQUEST = 1;
export const KIND_RESPONSE = 2;
export const KIND_READY = 3;

export interface TcpTransportOptions {
  id: NodeId;
  clusterName: string;
  /** cluster.secret (hex). */
  secret: string;
  bindHost?: string;
  /** 0 picks a free port (tests); see `port()` after listen(). */
  port: number;
  /** host:port others use to reach us (sent in the handshake). Defaults to bindHost:port. */
  advertiseAddr?: string;
  maxFrameBytes?: number;
  /** A connection silent this long is presumed dead and re-established (nodes ping every heartbeat). */
  deadConnectionMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Called when a handshake reveals a peer (id and its advertised address). */
  onPeer?: (id: NodeId, addr: string) => void;
}

interface Hello {
  v: 1;
  cluster: string;
  id: NodeId;
  addr: string;
  nonce: string;
  echo?: string;
}

class Conn {
  peerId: NodeId | null = null;
  peerAddr = "";
  /** hello: waiting for the peer's hello; ready-wait: acceptor waiting for the dialer's first sealed frame. */
  phase: "hello" | "ready-wait" | "open" = "hello";
  key: Buffer | null = null;
  sendSeq = 0;
  recvSeq = 0;
  authFailures = 0;
  readonly myNonce = nonce();
  theirNonce: Buffer | null = null;
  lastRecv = performance.now();
  closed = false;

  constructor(
    readonly socket: Socket,
    readonly dialer: boolean,
    readonly decoder: FrameDecoder,
    /** For dialled connections: the address we dialled. */
    readonly target: string | null,
  ) {}
}

interface Pending {
  conn: Conn;
  done: (reply: Message | undefined) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class TcpTransport implements Transport {
  readonly localId: NodeId;
  private readonly log = logger("cluster-tcp");
  private readonly key: Buffer;
  private readonly maxFrame: number;
  private readonly opts: TcpTransportOptions;
  private handler: MessageHandler | undefined;
  private server: Server | null = null;
  private listenPort = 0;
  private advertise = "";
  /** Authenticated, open connections by peer. */
  private conns = new Map<NodeId, Conn>();
  private all = new Set<Conn>();
  /** Known peer addresses (from config entries, pings, discovery, handshakes). */
  private peerAddrs = new Map<NodeId, string>();
  /** Static addresses and the peer each turned out to be. */
  private statics = new Map<string, NodeId | null>();
  private dialing = new Set<string>();
  private backoff = new Map<string, { next: number; delay: number }>();
  private pending = new Map<number, Pending>();
  private nextReq = 1;
  private timer: ReturnType<typeof setInterval> | null = null;
  private closed = false;
  private readonly stats: Record<string, number> = {
    frames_in: 0,
    frames_out: 0,
    auth_failed: 0,
    other_cluster: 0,
    oversize: 0,
    malformed: 0,
    no_connection: 0,
    connects: 0,
    disconnects: 0,
  };

  constructor(opts: TcpTransportOptions) {
    this.opts = opts;
    this.localId = opts.id;
    this.key = clusterKey(opts.secret, opts.clusterName);
    this.maxFrame = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  }

  async listen(): Promise<number> {
    const server = createServer((socket) => this.adopt(socket, false, null));
    server.on("error", (err) => this.log.error(`cluster transport: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.opts.port, this.opts.bindHost ?? "0.0.0.0", () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.server = server;
    const addr = server.address();
    this.listenPort = typeof addr === "object" && addr ? addr.port : this.opts.port;
    this.advertise = this.opts.advertiseAddr ?? `${this.opts.bindHost ?? "127.0.0.1"}:${this.listenPort}`;
    this.timer = setInterval(() => this.maintain(), 100);
    this.timer.unref?.();
    return this.listenPort;
  }

  port(): number {
    return this.listenPort;
  }
  address(): string {
    return this.advertise;
  }

  setHandler(handler: MessageHandler): void {
    this.handler = handler;
  }

  setPeerAddress(id: NodeId, addr: string): void {
    if (id === this.localId || !addr) return;
    this.peerAddrs.set(id, addr);
  }

  /** A host:port to keep connected to even before we know its node ID. */
  addStaticPeer(addr: string): void {
    if (!this.statics.has(addr)) this.statics.set(addr, null);
  }

  counters(): Record<string, number> {
    return { ...this.stats, connections: this.conns.size };
  }

  /** Peers with an open authenticated connection. */
  connectedPeers(): NodeId[] {
    return [...this.conns.keys()].sort((a, b) => a - b);
  }

  send(to: NodeId, msg: Message): void {
    const conn = this.conns.get(to);
    if (!conn) {
      this.stats.no_connection!++;
      return;
    }
    this.write(conn, KIND_MESSAGE, 0, encodeMessage(msg));
  }

  request(to: NodeId, msg: Message, timeoutMs: number, done: (reply: Message | undefined) => void): void {
    const conn = this.conns.get(to);
    if (!conn) {
      this.stats.no_connection!++;
      queueMicrotask(() => done(undefined));
      return;
    }
    const id = this.nextReq++;
    if (this.nextReq > 0xffffffff) this.nextReq = 1;
    const timer = setTimeout(() => {
      if (this.pending.delete(id)) done(undefined);
    }, timeoutMs);
    this.pending.set(id, { conn, done, timer });
    if (!this.write(conn, KIND_REQUEST, id, encodeMessage(msg))) {
      clearTimeout(timer);
      this.pending.delete(id);
      queueMicrotask(() => done(undefined));
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.server?.close();
    for (const c of this.all) c.socket.destroy();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.done(undefined);
    }
  }

  // ---------------------------------------------------------------------------------------------

  private write(conn: Conn, kind: number, reqId: number, body: Uint8Array): boolean {
    if (conn.closed || !conn.key) return false;
    const payload = Buffer.allocUnsafe(5 + body.length);
    payload.writeUInt8(kind, 0);
    payload.writeUInt32BE(reqId, 1);
    payload.set(body, 5);
    const sealed = seal(conn.key, payload, frameContext(conn.dialer ? 0 : 1, conn.sendSeq));
    if (sealed.length > this.maxFrame) {
      this.stats.oversize!++;
      this.log.warn(`dropping an outgoing frame of ${sealed.length} bytes (max ${this.maxFrame})`);
      return false;
    }
    conn.sendSeq++;
    this.stats.frames_out!++;
    conn.socket.write(encodeFrame(sealed));
    return true;
  }

  private maintain(): void {
    if (this.closed) return;
    const now = performance.now();
    const dead = this.opts.deadConnectionMs ?? 2000;
    for (const c of this.all) {
      if (now - c.lastRecv > (c.phase === "open" ? dead : Math.max(dead, 3000))) {
        this.log.debug(
          `connection to ${c.peerId ?? c.target ?? "?"} silent for ${Math.round(now - c.lastRecv)} ms; reconnecting`,
        );
        c.socket.destroy();
      }
    }
    for (const [id, addr] of this.peerAddrs) {
      if (id > this.localId && !this.conns.has(id)) this.dial(addr);
    }
    for (const [addr, id] of this.statics) {
      // Unknown IDs are dialled by anyone; a known higher ID is dialled by the loop above.
      if (id !== null && (this.conns.has(id) || (id > this.localId && this.peerAddrs.has(id)))) continue;
      this.dial(addr);
    }
  }

  private dial(addr: string): void {
    if (this.dialing.has(addr) || this.closed || addr === this.advertise) return;
    const b = this.backoff.get(addr) ?? { next: 0, delay: this.opts.reconnectMinMs ?? 100 };
    const now = performance.now();
    if (now < b.next) return;
    b.next = now + b.delay;
    b.delay = Math.min(b.delay * 2, this.opts.reconnectMaxMs ?? 2000);
    this.backoff.set(addr, b);
    const m = /^(.*):(\d+)$/.exec(addr);
    if (!m) return;
    this.dialing.add(addr);
    const socket = createConnection({ host: m[1]!, port: Number(m[2]) });
    socket.setTimeout(1500, () => socket.destroy());
    socket.once("connect", () => socket.setTimeout(0));
    this.adopt(socket, true, addr);
  }

  private adopt(socket: Socket, dialer: boolean, target: string | null): void {
    socket.setNoDelay(true);
    const conn = new Conn(socket, dialer, new FrameDecoder(this.maxFrame), target);
    this.all.add(conn);
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("error", () => {}); // "close" follows; errors are normal for a cluster transport
    socket.on("close", () => this.onClose(conn));
    if (dialer) socket.once("connect", () => this.sendHello(conn));
  }

  private sendHello(conn: Conn): void {
    const hello: Hello = {
      v: 1,
      cluster: this.opts.clusterName,
      id: this.localId,
      addr: this.advertise,
      nonce: conn.myNonce.toString("hex"),
      echo: conn.theirNonce?.toString("hex"),
    };
    const json = Buffer.from(JSON.stringify(hello));
    const body = seal(this.key, json, HELLO_CONTEXT);
    this.stats.frames_out!++;
    conn.socket.write(encodeFrame(body));
  }

  private onData(conn: Conn, chunk: Buffer): void {
    let frames: Buffer[];
    try {
      frames = conn.decoder.push(chunk);
    } catch (err) {
      if (err instanceof FrameTooLargeError) {
        this.stats.oversize!++;
        this.log.warn(`closing connection from ${conn.peerId ?? conn.socket.remoteAddress}: ${err.message}`);
      }
      conn.socket.destroy();
      return;
    }
    for (const body of frames) {
      if (conn.closed) return;
      this.stats.frames_in!++;
      if (conn.phase === "hello") this.onHello(conn, body);
      else this.onSealed(conn, body);
    }
  }

  private onHello(conn: Conn, body: Buffer): void {
    const payload = open(this.key, body, HELLO_CONTEXT);
    if (!payload) {
      // Tell "another cluster on the same port" apart from "someone without our secret".
      let cluster: unknown;
      try {
        cluster = (JSON.parse(body.subarray(0, Math.max(0, body.length - 16)).toString("utf8")) as Hello).cluster;
      } catch {
        cluster = undefined;
      }
      if (typeof cluster === "string" && cluster !== this.opts.clusterName) this.stats.other_cluster!++;
      else this.stats.auth_failed!++;
      conn.socket.destroy();
      return;
    }
    let hello: Hello;
    try {
      hello = JSON.parse(Buffer.from(payload).toString("utf8")) as Hello;
    } catch {
      this.stats.malformed!++;
      conn.socket.destroy();
      return;
    }
    if (
      hello.v !== 1 ||
      typeof hello.id !== "number" ||
      typeof hello.nonce !== "string" ||
      hello.cluster !== this.opts.clusterName
    ) {
      this.stats.malformed!++;
      conn.socket.destroy();
      return;
    }
    if (hello.id === this.localId) {
      conn.socket.destroy(); // dialled ourselves (e.g. our own address in static peers)
      return;
    }
    conn.lastRecv = performance.now();
    conn.peerId = hello.id;
    conn.peerAddr = typeof hello.addr === "string" ? hello.addr : "";
    conn.theirNonce = Buffer.from(hello.nonce, "hex");
    if (conn.dialer) {
      if (hello.echo !== conn.myNonce.toString("hex")) {
        this.stats.auth_failed!++; // a replayed hello
        conn.socket.destroy();
        return;
      }
      conn.key = sessionKey(this.key, conn.myNonce, conn.theirNonce);
      conn.phase = "open";
      this.write(conn, KIND_READY, 0, Buffer.alloc(0));
      this.register(conn);
    } else {
      conn.key = sessionKey(this.key, conn.theirNonce, conn.myNonce);
      conn.phase = "ready-wait";
      this.sendHello(conn);
    }
  }

  private onSealed(conn: Conn, body: Buffer): void {
    const payload = open(conn.key!, body, frameContext(conn.dialer ? 1 : 0, conn.recvSeq++));
    if (!payload || payload.length < 5) {
      this.stats.auth_failed!++;
      if (conn.phase === "ready-wait" || ++conn.authFailures >= 4) conn.socket.destroy();
      return;
    }
    conn.lastRecv = performance.now();
    const view = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const kind = view.readUInt8(0);
    const reqId = view.readUInt32BE(1);
    if (conn.phase === "ready-wait") {
      if (kind !== KIND_READY) {
        this.stats.malformed!++;
        conn.socket.destroy();
        return;
      }
      conn.phase = "open";
      this.register(conn);
      return;
    }
    if (kind === KIND_READY) return;
    let msg: Message;
    try {
      msg = decodeMessage(view.subarray(5));
    } catch (err) {
      this.stats.malformed!++;
      this.log.warn(`dropping a malformed message from node ${conn.peerId}: ${(err as Error).message}`);
      return;
    }
    const from = conn.peerId!;
    if (this.conns.get(from) !== conn) return; // a losing duplicate connection
    if (kind === KIND_RESPONSE) {
      const p = this.pending.get(reqId);
      if (p && p.conn === conn) {
        this.pending.delete(reqId);
        clearTimeout(p.timer);
        p.done(msg);
      }
      return;
    }
    const reply =
      kind === KIND_REQUEST
        ? (answer: Message) => {
            this.write(conn, KIND_RESPONSE, reqId, encodeMessage(answer));
          }
        : undefined;
    this.handler?.(from, msg, reply);
  }

  /** Makes `conn` the connection for its peer, resolving duplicates deterministically. */
  private register(conn: Conn): void {
    const id = conn.peerId!;
    const existing = this.conns.get(id);
    if (existing && existing !== conn) {
      const dialerOf = (c: Conn) => (c.dialer ? this.localId : id);
      const preferred = Math.min(this.localId, id);
      const keepNew = dialerOf(conn) === preferred || dialerOf(existing) !== preferred;
      if (!keepNew) {
        conn.socket.destroy();
        return;
      }
      existing.socket.destroy();
    }
    this.conns.set(id, conn);
    this.stats.connects!++;
    if (conn.target) {
      this.backoff.delete(conn.target);
      if (this.statics.has(conn.target)) this.statics.set(conn.target, id);
    }
    if (conn.peerAddr) this.peerAddrs.set(id, conn.peerAddr);
    this.opts.onPeer?.(id, conn.peerAddr);
  }

  private onClose(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.all.delete(conn);
    if (conn.target) this.dialing.delete(conn.target);
    if (conn.peerId !== null && this.conns.get(conn.peerId) === conn) {
      this.conns.delete(conn.peerId);
      this.stats.disconnects!++;
    }
    for (const [id, p] of this.pending) {
      if (p.conn !== conn) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.done(undefined);
    }
  }
}
