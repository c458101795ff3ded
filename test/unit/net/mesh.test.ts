/**
 * Two (or three) PeerSets and Routers wired together in memory: handshakes, data, keepalive
 * confirmation, and the attacks from the issue at the unit level (replay, tamper, spoofed inner
 * source, forged roaming, unknown keys, expired keys, restart without counter reuse).
 */
import { describe, expect, test } from "bun:test";
import { nobleAead } from "../../../native/sodium.ts";
import { parseIPv4 } from "../../../lib/net/device/allowedips.ts";
import { createInitiation, HandshakeState, INITIATION_MAC1_OFFSET } from "../../../lib/net/device/handshake.ts";
import { CookieGenerator } from "../../../lib/net/device/cookie.ts";
import { type KeyPair, newKeyPair } from "../../../lib/net/device/keys.ts";
import { PeerSet } from "../../../lib/net/device/peers.ts";
import {
  IN_DELIVER,
  IN_DROP,
  IN_KEEPALIVE,
  OUT_SEND,
  OUT_STAGE,
  PAYLOAD_OFFSET,
  Router,
} from "../../../lib/net/device/router.ts";
import {
  G_DROP_AUTH,
  G_DROP_EXPIRED_KEY,
  G_DROP_REPLAY,
  G_DROP_SPOOFED_SOURCE,
  G_DROP_UNKNOWN_INDEX,
  packEndpoint,
  SessionTable,
} from "../../../lib/net/device/session.ts";

const ip = (s: string) => parseIPv4(s)!;

function ipPacket(src: string, dst: string, payload = 40): Uint8Array {
  const total = 20 + payload;
  const buf = new Uint8Array(PAYLOAD_OFFSET + total + 64);
  const v = new DataView(buf.buffer);
  buf[PAYLOAD_OFFSET] = 0x45;
  v.setUint16(PAYLOAD_OFFSET + 2, total, false);
  buf[PAYLOAD_OFFSET + 9] = 17;
  v.setUint32(PAYLOAD_OFFSET + 12, ip(src), false);
  v.setUint32(PAYLOAD_OFFSET + 16, ip(dst), false);
  for (let i = 0; i < payload; i++) buf[PAYLOAD_OFFSET + 20 + i] = i & 255;
  return buf;
}

interface Node {
  name: string;
  keys: KeyPair;
  address: string;
  endpoint: bigint;
  table: SessionTable;
  set: PeerSet;
  router: Router;
  delivered: Uint8Array[];
}

class Wire {
  nodes = new Map<bigint, Node>();
  clock = 1_000_000;
  /** Every datagram that crossed the wire: [from, to, bytes]. */
  log: { from: bigint; to: bigint; data: Uint8Array }[] = [];
  drop = false;
  /** When set, datagrams queue here instead of arriving (to reorder or cross them). */
  held: { from: bigint; to: bigint; data: Uint8Array }[] | undefined;

  node(name: string, address: string, port: number, keys = newKeyPair()): Node {
    const endpoint = packEndpoint(ip("192.168.0.1") + port, 9600);
    const table = new SessionTable();
    const node: Node = {
      name,
      keys,
      address,
      endpoint,
      table,
      set: undefined as unknown as PeerSet,
      router: new Router(table, nobleAead, 1420),
      delivered: [],
    };
    node.set = new PeerSet(
      keys,
      table,
      nobleAead,
      (data, to) => this.deliver(node.endpoint, to, data),
      () => this.clock,
    );
    this.nodes.set(endpoint, node);
    return node;
  }

  link(a: Node, b: Node): void {
    a.set.addPeer({
      publicKey: b.keys.publicKey,
      name: b.name,
      allowedIp: ip(b.address),
      allowedPrefix: 32,
      endpoint: b.endpoint,
    });
    b.set.addPeer({
      publicKey: a.keys.publicKey,
      name: a.name,
      allowedIp: ip(a.address),
      allowedPrefix: 32,
      endpoint: a.endpoint,
    });
  }

  deliver(from: bigint, to: bigint, data: Uint8Array): void {
    this.log.push({ from, to, data: data.slice() });
    if (this.drop) return;
    if (this.held) return void this.held.push({ from, to, data: data.slice() });
    this.receive(from, to, data.slice());
  }

  /** What a node's receive path does with a datagram (the data-plane worker's job, minus sockets). */
  receive(from: bigint, to: bigint, data: Uint8Array): number {
    const node = this.nodes.get(to);
    if (!node) return IN_DROP;
    if (data[0] === 4) {
      const buf = new Uint8Array(data.length + 64);
      buf.set(data);
      const result = node.router.decrypt(buf, data.length, from, this.clock);
      if (result === IN_DELIVER) node.delivered.push(buf.slice(PAYLOAD_OFFSET, PAYLOAD_OFFSET + node.router.inLength));
      if (node.router.confirmedSlot >= 0) node.set.confirm(node.router.confirmedSlot);
      return result;
    }
    node.set.handlePacket(data, from);
    return -100;
  }

  /** What the send path does: encrypt, or ask for a handshake and retry after it (staging). */
  send(node: Node, packet: Uint8Array, payloadLength: number): number {
    let result = node.router.encrypt(packet, payloadLength, this.clock);
    if (result === OUT_STAGE) {
      node.table.wantHandshake(node.router.outPeer);
      node.set.tick();
      result = node.router.encrypt(packet, payloadLength, this.clock);
    }
    if (result === OUT_SEND)
      this.deliver(node.endpoint, node.router.outEndpoint, packet.slice(0, node.router.outLength));
    return result;
  }
}

function twoNodes() {
  const wire = new Wire();
  const a = wire.node("a", "10.0.10.1", 1);
  const b = wire.node("b", "10.0.10.2", 2);
  wire.link(a, b);
  return { wire, a, b };
}

describe("mesh in memory", () => {
  test("first packet triggers a handshake; data flows both ways; the responder's key is confirmed", () => {
    const { wire, a, b } = twoNodes();
    expect(wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60)).toBe(OUT_SEND);
    expect(b.delivered.length).toBe(1);
    expect(b.delivered[0]!.length).toBe(60);
    // b's key became current after a's keepalive/data; b can answer.
    b.set.tick();
    expect(wire.send(b, ipPacket("10.0.10.2", "10.0.10.1"), 60)).toBe(OUT_SEND);
    expect(a.delivered.length).toBe(1);
    const peerOfA = b.set.peers[0]!;
    expect(peerOfA.handshakes).toBe(1);
    expect(b.table.traffic(peerOfA.index).rxPackets).toBeGreaterThanOrEqual(2);
  });

  test("a replayed data packet is dropped", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    const data = wire.log.filter((e) => e.data[0] === 4 && e.data.length > 32).at(-1)!;
    expect(wire.receive(data.from, data.to, data.data.slice())).toBe(IN_DROP);
    expect(b.table.counter(G_DROP_REPLAY)).toBe(1);
    expect(b.delivered.length).toBe(1);
  });

  test("a tampered data packet is dropped", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    wire.drop = true;
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    const data = wire.log.at(-1)!.data.slice();
    data[40]! ^= 0x01;
    expect(wire.receive(a.endpoint, b.endpoint, data)).toBe(IN_DROP);
    expect(b.table.counter(G_DROP_AUTH)).toBe(1);
  });

  test("a peer sending a spoofed inner source address is dropped", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    expect(wire.send(a, ipPacket("10.0.10.77", "10.0.10.2"), 60)).toBe(OUT_SEND);
    expect(b.table.counter(G_DROP_SPOOFED_SOURCE)).toBe(1);
    expect(b.delivered.length).toBe(1);
  });

  test("a forged or replayed packet cannot move a peer's endpoint; an authenticated one can (roaming)", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    const peerA = b.set.peers[0]!;
    const attacker = packEndpoint(ip("172.16.6.6"), 6666);
    const captured = wire.log.filter((e) => e.data[0] === 4 && e.data.length > 32).at(-1)!.data;
    // Replayed from the attacker's address.
    expect(wire.receive(attacker, b.endpoint, captured.slice())).toBe(IN_DROP);
    // Forged: right receiver index, garbage ciphertext.
    const forged = captured.slice();
    forged.fill(0x41, 16);
    forged[8] = 200;
    expect(wire.receive(attacker, b.endpoint, forged)).toBe(IN_DROP);
    expect(b.table.endpoint(peerA.index)).toBe(a.endpoint);
    // a really moves: its next authenticated packet comes from a new address.
    wire.drop = true;
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    const moved = packEndpoint(ip("192.168.77.1"), 40000);
    expect(wire.receive(moved, b.endpoint, wire.log.at(-1)!.data.slice())).toBe(IN_DELIVER);
    expect(b.table.endpoint(peerA.index)).toBe(moved);
  });

  test("an initiation from an unknown key, or with a bad mac1, gets no answer", () => {
    const { wire, b } = twoNodes();
    const mallory = newKeyPair();
    const state = new HandshakeState(mallory, b.keys.publicKey);
    const init = createInitiation(state, 1234, wire.clock);
    new CookieGenerator(b.keys.publicKey).addMacs(init, INITIATION_MAC1_OFFSET, wire.clock);
    const before = wire.log.length;
    const from = packEndpoint(ip("172.16.6.6"), 6666);
    wire.receive(from, b.endpoint, init);
    const badMac = createInitiation(state, 1235, wire.clock + 1000);
    wire.receive(from, b.endpoint, badMac);
    expect(wire.log.length).toBe(before);
    expect(b.set.rejects.get("unknown-peer")).toBe(1);
    expect(b.set.rejects.get("bad-mac1")).toBe(1);
  });

  test("a replayed initiation gets no answer and does not disturb the session", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    const init = wire.log.find((e) => e.data[0] === 1)!;
    const before = wire.log.length;
    wire.clock += 30_000;
    wire.receive(init.from, init.to, init.data.slice());
    expect(wire.log.length).toBe(before);
    expect(b.set.rejects.get("replayed-initiation")).toBe(1);
    expect(wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60)).toBe(OUT_SEND);
    expect(b.delivered.length).toBe(2);
  });

  test("keys are refused after 180 s; the initiator rekeys after 120 s", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    wire.drop = true;
    wire.clock += 121_000;
    expect(a.router.encrypt(ipPacket("10.0.10.1", "10.0.10.2"), 60, wire.clock)).toBe(OUT_SEND);
    expect(a.router.wantHandshake).toBe(true);
    wire.clock += 60_000;
    const late = ipPacket("10.0.10.1", "10.0.10.2");
    expect(a.router.encrypt(late, 60, wire.clock)).toBe(OUT_STAGE);
    // An old packet delivered late is refused on the receiving side too.
    const old = wire.log.at(-1)!.data.slice();
    expect(wire.receive(a.endpoint, b.endpoint, old)).toBe(IN_DROP);
    expect(b.table.counter(G_DROP_EXPIRED_KEY)).toBe(1);
  });

  test("a restarted node gets fresh keys; its old packets are refused; counters never repeat under one key", () => {
    const { wire, a, b } = twoNodes();
    for (let i = 0; i < 5; i++) wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    const oldData = wire.log.filter((e) => e.data[0] === 4 && e.data.length > 32).map((e) => e.data);
    // "Restart" a: same static key, all session state lost.
    wire.nodes.delete(a.endpoint);
    const a2 = wire.node("a", "10.0.10.1", 1, a.keys);
    a2.set.addPeer({
      publicKey: b.keys.publicKey,
      name: "b",
      allowedIp: ip("10.0.10.2"),
      allowedPrefix: 32,
      endpoint: b.endpoint,
    });
    wire.clock += 1000;
    a2.set.initiateAll();
    expect(b.set.peers[0]!.handshakes).toBe(2);
    // Old traffic from before the restart, replayed: the old key may still decrypt but every counter was seen.
    for (const d of oldData) expect(wire.receive(a.endpoint, b.endpoint, d.slice())).toBe(IN_DROP);
    // New session works, and (key, counter) pairs are all distinct across both sessions.
    for (let i = 0; i < 5; i++) expect(wire.send(a2, ipPacket("10.0.10.1", "10.0.10.2"), 60)).toBe(OUT_SEND);
    const pairs = wire.log
      .filter((e) => e.data[0] === 4 && e.from === a.endpoint)
      .map((e) => Buffer.from(e.data.subarray(4, 16)).toString("hex"));
    expect(new Set(pairs).size).toBe(pairs.length);
    expect(b.delivered.length).toBe(10);
    // b's old key slot for a was retired.
    expect(b.table.counter(G_DROP_UNKNOWN_INDEX) + b.table.counter(G_DROP_REPLAY)).toBeGreaterThanOrEqual(5);
  });

  test("keepalive: after receiving data and sending nothing for 10 s, a keepalive goes out", () => {
    const { wire, a, b } = twoNodes();
    wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60);
    b.set.tick();
    const before = wire.log.length;
    wire.clock += 10_500;
    b.set.tick();
    const sent = wire.log.slice(before);
    expect(sent.length).toBe(1);
    expect(sent[0]!.data.length).toBe(32);
    expect(wire.receive(sent[0]!.from, sent[0]!.to, sent[0]!.data.slice())).toBe(IN_DROP); // a already got it once: replay
    void IN_KEEPALIVE;
  });

  test("simultaneous initiations from both sides both complete: no retransmit needed", () => {
    const { wire, a, b } = twoNodes();
    wire.held = [];
    a.set.initiateAll();
    b.set.initiateAll();
    // Deliver the crossing initiations, then whatever they caused, until the wire is quiet.
    while (wire.held.length > 0) {
      const batch = wire.held;
      wire.held = [];
      for (const p of batch) wire.receive(p.from, p.to, p.data);
    }
    wire.held = undefined;
    expect(a.set.rejects.size + b.set.rejects.size).toBe(0);
    a.set.tick();
    b.set.tick();
    expect(wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60)).toBe(OUT_SEND);
    expect(wire.send(b, ipPacket("10.0.10.2", "10.0.10.1"), 60)).toBe(OUT_SEND);
    expect(a.delivered.length).toBe(1);
    expect(b.delivered.length).toBe(1);
    expect(a.set.peers[0]!.handshakes).toBe(2);
  });

  test("three nodes: traffic goes to the peer that owns the destination", () => {
    const wire = new Wire();
    const a = wire.node("a", "10.0.10.1", 1);
    const b = wire.node("b", "10.0.10.2", 2);
    const c = wire.node("c", "10.0.10.3", 3);
    wire.link(a, b);
    wire.link(a, c);
    wire.link(b, c);
    expect(wire.send(a, ipPacket("10.0.10.1", "10.0.10.3"), 60)).toBe(OUT_SEND);
    expect(wire.send(a, ipPacket("10.0.10.1", "10.0.10.2"), 60)).toBe(OUT_SEND);
    expect(wire.send(b, ipPacket("10.0.10.2", "10.0.10.3"), 60)).toBe(OUT_SEND);
    expect(c.delivered.length).toBe(2);
    expect(b.delivered.length).toBe(1);
    expect(wire.send(a, ipPacket("10.0.10.1", "10.0.10.9"), 60)).toBe(-1);
  });
});
