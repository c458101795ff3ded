/**
 * Framing, authentication and the TCP transport over real sockets on 127.0.0.1: correlation of
 * concurrent requests, tampered / forged / oversized frames, other clusters, reconnects.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { connect, type Socket } from "node:net";
import { clusterKey, frameContext, HELLO_CONTEXT, nonce, open, seal, sessionKey } from "../../../lib/cluster/auth.ts";
import { decodeMessage, encodeMessage } from "../../../lib/cluster/codec.ts";
import { encodeFrame, FrameDecoder, FrameTooLargeError } from "../../../lib/cluster/framing.ts";
import { KIND_MESSAGE, KIND_READY, TcpTransport } from "../../../lib/cluster/transport-tcp.ts";
import type { Message, Ping } from "../../../lib/cluster/types.ts";
import { waitUntil } from "../../../lib/common/wait.ts";

const SECRET = "a".repeat(64);
const OTHER_SECRET = "b".repeat(64);
const open_: TcpTransport[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const t of open_.splice(0)) t.close();
  for (const s of sockets.splice(0)) s.destroy();
});

async function transport(id: number, opts: Partial<ConstructorParameters<typeof TcpTransport>[0]> = {}) {
  const t = new TcpTransport({ id, clusterName: "test", secret: SECRET, bindHost: "127.0.0.1", port: 0, ...opts });
  open_.push(t);
  await t.listen();
  return t;
}

function ping(id: number, lastLsn = 0): Ping {
  return {
    type: "ping",
    term: 1,
    info: {
      id,
      addr: "",
      state: "Active",
      role: "follower",
      leader: null,
      lastLsn,
      lastTerm: 0,
      commitLsn: 0,
      appliedLsn: 0,
      neverLeader: false,
      voter: true,
    },
  };
}

/** A hand-rolled client: does the handshake itself so tests can send arbitrary frames afterwards. */
async function rawClient(port: number, opts: { secret?: string; cluster?: string; id?: number } = {}) {
  const key = clusterKey(opts.secret ?? SECRET, opts.cluster ?? "test");
  const socket = connect({ host: "127.0.0.1", port });
  sockets.push(socket);
  socket.on("error", () => {});
  const decoder = new FrameDecoder();
  const frames: Buffer[] = [];
  let closed = false;
  socket.on("data", (c: Buffer) => frames.push(...decoder.push(c)));
  socket.on("close", () => (closed = true));
  await new Promise<void>((r) => socket.once("connect", () => r()));
  const my = nonce();
  const hello = Buffer.from(
    JSON.stringify({ v: 1, cluster: opts.cluster ?? "test", id: opts.id ?? 9, addr: "", nonce: my.toString("hex") }),
  );
  socket.write(encodeFrame(seal(key, hello, HELLO_CONTEXT)));
  const client = {
    socket,
    frames,
    get closed() {
      return closed;
    },
    session: null as Buffer | null,
    seq: 0,
    /** Sends a sealed frame (kind + reqId + message bytes) under the session key. */
    sendSealed(kind: number, body: Uint8Array, tamper = false) {
      const payload = Buffer.alloc(5 + body.length);
      payload.writeUInt8(kind, 0);
      payload.set(body, 5);
      const sealed = seal(client.session!, payload, frameContext(0, client.seq++));
      if (tamper) sealed[7] = sealed[7]! ^ 0x01;
      socket.write(encodeFrame(sealed));
    },
  };
  return {
    client,
    async handshake() {
      await waitUntil(() => frames.length > 0 || closed, { timeoutMs: 3000, what: "the server's hello" });
      if (closed) return false;
      const reply = open(key, frames.shift()!, HELLO_CONTEXT)!;
      const their = Buffer.from(JSON.parse(Buffer.from(reply).toString()).nonce, "hex");
      client.session = sessionKey(key, my, their);
      client.sendSealed(KIND_READY, new Uint8Array(0));
      return true;
    },
  };
}

describe("framing", () => {
  test("frames split across chunks and packed into one chunk decode exactly", () => {
    const a = encodeFrame(Buffer.from("hello"));
    const b = encodeFrame(Buffer.alloc(3000, 7));
    const c = encodeFrame(Buffer.alloc(0));
    const all = Buffer.concat([a, b, c]);
    const dec = new FrameDecoder(4096);
    const out: Buffer[] = [];
    for (let i = 0; i < all.length; i += 7) out.push(...dec.push(all.subarray(i, i + 7)));
    expect(out.map((f) => f.length)).toEqual([5, 3000, 0]);
    expect(out[0]!.toString()).toBe("hello");
    expect(new FrameDecoder(4096).push(all).length).toBe(3);
  });

  test("an oversized length is refused before buffering", () => {
    const dec = new FrameDecoder(1024);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(1025);
    expect(() => dec.push(head)).toThrow(FrameTooLargeError);
  });

  test("codec round-trips appends with binary data and rejects malformed input", () => {
    const msg: Message = {
      type: "append",
      term: 3,
      prevLsn: 9,
      prevTerm: 2,
      commitLsn: 8,
      leaderLastLsn: 11,
      entries: [
        { lsn: 10, term: 3, kind: "data", data: new Uint8Array([0, 1, 2, 255]) },
        { lsn: 11, term: 3, kind: "noop", data: new Uint8Array(0) },
      ],
    };
    expect(decodeMessage(encodeMessage(msg))).toEqual(msg);
    expect(() => decodeMessage(Buffer.from("garbage!"))).toThrow(/malformed/);
    const wrong = encodeMessage({ ...msg, entries: [{ ...msg.entries[0]!, lsn: 12 }] });
    expect(() => decodeMessage(wrong)).toThrow(/prevLsn/);
  });

  test("session MACs bind direction and sequence: a replayed or reordered frame fails", () => {
    const key = Buffer.alloc(32, 1);
    const sealed = seal(key, Buffer.from("x"), frameContext(0, 5));
    expect(open(key, sealed, frameContext(0, 5))).toBeDefined();
    expect(open(key, sealed, frameContext(0, 6))).toBeUndefined();
    expect(open(key, sealed, frameContext(1, 5))).toBeUndefined();
    expect(open(Buffer.alloc(32, 2), sealed, frameContext(0, 5))).toBeUndefined();
  });
});

describe("TCP transport", () => {
  test("200 concurrent requests, answered out of order, each get their own reply", async () => {
    const a = await transport(1);
    const b = await transport(2);
    b.setHandler((_from, msg, reply) => {
      if (msg.type !== "ping" || !reply) return;
      // Answer in random order: correlation must not depend on ordering.
      setTimeout(() => reply(ping(2, msg.info.lastLsn * 10)), Math.random() * 30);
    });
    a.setPeerAddress(2, b.address());
    await waitUntil(() => a.connectedPeers().includes(2), { timeoutMs: 5000, what: "connection 1->2" });
    const results = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) =>
          new Promise<number>((resolve, reject) =>
            a.request(2, ping(1, i + 1), 5000, (r) =>
              r && r.type === "ping" ? resolve(r.info.lastLsn) : reject(new Error("no reply")),
            ),
          ),
      ),
    );
    expect(results).toEqual(Array.from({ length: 200 }, (_, i) => (i + 1) * 10));
    expect(a.counters().connections).toBe(1);
    expect(b.counters().connections).toBe(1);
  });

  test("one connection per pair even when both sides know each other, and it reconnects", async () => {
    const a = await transport(1, { reconnectMinMs: 20 });
    const b = await transport(2);
    a.setPeerAddress(2, b.address());
    b.setPeerAddress(1, a.address());
    await waitUntil(() => a.connectedPeers().includes(2) && b.connectedPeers().includes(1), {
      timeoutMs: 5000,
      what: "connected",
    });
    expect(a.counters().connects).toBe(1);
    // Kill the connection from the outside: it must come back by itself.
    const before = a.counters().connects!;
    (a as unknown as { conns: Map<number, { socket: Socket }> }).conns.get(2)!.socket.destroy();
    await waitUntil(() => a.counters().connects! > before && a.connectedPeers().includes(2), {
      timeoutMs: 5000,
      what: "reconnect",
    });
    const got: Message[] = [];
    b.setHandler((_from, msg) => got.push(msg));
    a.send(2, ping(1, 42));
    await waitUntil(() => got.length === 1, { timeoutMs: 3000, what: "a message after reconnect" });
  });

  test("a static peer address with an unknown ID is found through the handshake", async () => {
    const b = await transport(2);
    const seen: [number, string][] = [];
    const a = await transport(3, { onPeer: (id, addr) => seen.push([id, addr]) });
    a.addStaticPeer(b.address());
    await waitUntil(() => a.connectedPeers().includes(2), { timeoutMs: 5000, what: "static peer" });
    expect(seen).toEqual([[2, b.address()]]);
  });

  test("a node with the wrong secret is refused and counted; nothing reaches the handler", async () => {
    const a = await transport(1);
    let delivered = 0;
    a.setHandler(() => delivered++);
    const intruder = await transport(2, { secret: OTHER_SECRET });
    intruder.setPeerAddress(1, a.address());
    intruder.addStaticPeer(a.address());
    await waitUntil(() => a.counters().auth_failed! >= 1, { timeoutMs: 5000, what: "auth failure counted" });
    intruder.send(1, ping(2));
    expect(intruder.connectedPeers()).toEqual([]);
    expect(a.connectedPeers()).toEqual([]);
    expect(delivered).toBe(0);
  });

  test("a node of another cluster is refused and counted separately", async () => {
    const a = await transport(1);
    const other = await transport(2, { clusterName: "other" });
    other.addStaticPeer(a.address());
    await waitUntil(() => a.counters().other_cluster! >= 1, { timeoutMs: 5000, what: "other cluster counted" });
    expect(a.connectedPeers()).toEqual([]);
  });

  test("a tampered frame is dropped and counted; the next valid frame still arrives", async () => {
    const a = await transport(1);
    const got: Message[] = [];
    a.setHandler((_from, msg) => got.push(msg));
    const raw = await rawClient(a.port());
    expect(await raw.handshake()).toBe(true);
    await waitUntil(() => a.connectedPeers().includes(9), { timeoutMs: 3000, what: "raw client registered" });
    raw.client.sendSealed(KIND_MESSAGE, encodeMessage(ping(9, 1)), true);
    raw.client.sendSealed(KIND_MESSAGE, encodeMessage(ping(9, 2)));
    await waitUntil(() => got.length === 1, { timeoutMs: 3000, what: "the valid frame" });
    expect((got[0] as Ping).info.lastLsn).toBe(2);
    expect(a.counters().auth_failed).toBe(1);
  });

  test("a forged hello (no secret) gets no session; an oversized frame closes the connection", async () => {
    const a = await transport(1, { maxFrameBytes: 64 * 1024 });
    const forged = await rawClient(a.port(), { secret: OTHER_SECRET });
    expect(await forged.handshake()).toBe(false);
    expect(a.counters().auth_failed).toBe(1);

    const raw = await rawClient(a.port());
    expect(await raw.handshake()).toBe(true);
    await waitUntil(() => a.connectedPeers().includes(9), { timeoutMs: 3000, what: "raw client registered" });
    const head = Buffer.alloc(4);
    head.writeUInt32BE(64 * 1024 + 1);
    raw.client.socket.write(head);
    await waitUntil(() => raw.client.closed, { timeoutMs: 3000, what: "connection closed" });
    expect(a.counters().oversize).toBe(1);
    expect(a.connectedPeers()).toEqual([]);
  });

  test("a sealed frame before the ready handshake step (hello replay) is refused", async () => {
    const a = await transport(1);
    // Replay: a raw client that sends a hello and then garbage instead of a valid sealed frame.
    const raw = await rawClient(a.port());
    await waitUntil(() => raw.client.frames.length > 0, { timeoutMs: 3000, what: "server hello" });
    raw.client.session = Buffer.alloc(32); // the attacker cannot derive the real session key
    raw.client.sendSealed(KIND_READY, new Uint8Array(0));
    await waitUntil(() => raw.client.closed, { timeoutMs: 3000, what: "connection closed" });
    expect(a.counters().auth_failed).toBe(1);
    expect(a.connectedPeers()).toEqual([]);
  });
});
