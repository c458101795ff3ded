/**
 * Per-packet transport logic (WireGuard whitepaper §5.4.6), pure and allocation-free so the
 * data-plane Workers can run it at line rate and unit tests can run it without sockets:
 *  - outgoing: IP packet from the TUN → peer by destination (allowed IPs) → current keypair →
 *    fresh 64-bit counter → pad to 16 → ChaCha20-Poly1305 in place → type-4 header;
 *  - incoming: type-4 datagram → keypair by receiver index → not expired → decrypt in place →
 *    replay window → inner IPv4 source must belong to that same peer → endpoint roams only now.
 *
 * Buffers are laid out so nothing is copied: the IP packet sits at offset 16, right after the
 * space for the transport header, and the tag goes right after the (padded) packet.
 */
import type { Aead } from "../../../native/sodium.ts";
import { AllowedIps, maskOf } from "./allowedips.ts";
import { DATA_HEADER_BYTES, MSG_DATA } from "./handshake.ts";
import {
  G_DROP_AUTH,
  G_DROP_EXPIRED_KEY,
  G_DROP_MALFORMED,
  G_DROP_NO_ENDPOINT,
  G_DROP_NO_ROUTE,
  G_DROP_RACE,
  G_DROP_REPLAY,
  G_DROP_SPOOFED_SOURCE,
  G_DROP_UNKNOWN_INDEX,
  G_ROUTES_GEN,
  KP_VALID,
  MAX_PEERS,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME_MS,
  type SessionTable,
} from "./session.ts";

export const TAG_BYTES = 16;
/** Offset of the IP packet inside a data-plane buffer. */
export const PAYLOAD_OFFSET = DATA_HEADER_BYTES;

// Outgoing results (>= 0 means "send router.outLength bytes to router.outEndpoint").
export const OUT_SEND = 0;
export const OUT_DROP = -1;
/** No usable key: keep the packet for router.outPeer until a handshake completes. */
export const OUT_STAGE = -2;

// Incoming results.
export const IN_DELIVER = 0;
export const IN_KEEPALIVE = 1;
export const IN_DROP = -1;
export const IN_NOT_DATA = -2;

export class Router {
  private routes = new AllowedIps<number>();
  private routesGen = -1;
  private readonly nonce = new Uint8Array(12);
  private viewBuf: Uint8Array | undefined;
  private view: DataView = new DataView(new ArrayBuffer(16));

  // Results of the last call (kept in fields so the hot path allocates nothing).
  outLength = 0;
  outEndpoint = 0n;
  outPeer = -1;
  /** After an incoming packet: the peer, the IP packet length at PAYLOAD_OFFSET, whether the endpoint changed. */
  inPeer = -1;
  inLength = 0;
  inRoamed = false;
  /** A handshake should be started for outPeer/inPeer (key old or missing). */
  wantHandshake = false;
  /** The keypair slot that authenticated its first packet just now (the peer's "next" becomes current). */
  confirmedSlot = -1;

  constructor(
    readonly table: SessionTable,
    readonly aead: Aead,
    readonly mtu: number,
  ) {}

  private viewOf(buf: Uint8Array): DataView {
    if (this.viewBuf !== buf) {
      this.viewBuf = buf;
      this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    return this.view;
  }

  /** Rebuilds the destination → peer map when the control thread changed peers. */
  refreshRoutes(): void {
    const gen = Atomics.load(this.table.global, G_ROUTES_GEN);
    if (gen === this.routesGen) return;
    this.routesGen = gen;
    const routes = new AllowedIps<number>();
    for (let p = 0; p < MAX_PEERS; p++) {
      if (!this.table.peerActive(p)) continue;
      const ip = this.table.peerAllowedIp(p);
      if (ip === 0) continue;
      routes.insert({ ip, length: this.table.peerAllowedPrefix(p) }, p);
    }
    this.routes = routes;
  }

  peerFor(ip: number): number {
    return this.routes.lookup(ip) ?? -1;
  }

  /** The slot to send with for `peer`, or -1 if none is usable now. */
  private sendingSlot(peer: number, nowMs: number): number {
    const t = this.table;
    const slot = t.currentSlot(peer);
    if (slot < 0 || t.kpState(slot) !== KP_VALID) return -1;
    if (nowMs - t.kpCreatedMs(slot) >= REJECT_AFTER_TIME_MS) return -1;
    if (Number(t.kpSendCounter(slot)) >= REJECT_AFTER_MESSAGES) return -1;
    return slot;
  }

  /**
   * Encrypts the IP packet of `length` bytes at buf[PAYLOAD_OFFSET]. `buf` must have room for
   * padding and the tag. The destination decides the peer unless `peer` is given (keepalives).
   */
  encrypt(buf: Uint8Array, length: number, nowMs: number, forcePeer = -1): number {
    const t = this.table;
    this.wantHandshake = false;
    let peer = forcePeer;
    if (peer < 0) {
      if (length < 20 || buf[PAYLOAD_OFFSET]! >> 4 !== 4) {
        // IPv6 (e.g. the kernel's router solicitations) has no route: the overlay is IPv4 only.
        t.count(length >= 40 && buf[PAYLOAD_OFFSET]! >> 4 === 6 ? G_DROP_NO_ROUTE : G_DROP_MALFORMED);
        return OUT_DROP;
      }
      this.refreshRoutes();
      const view = this.viewOf(buf);
      peer = this.peerFor(view.getUint32(PAYLOAD_OFFSET + 16, false));
      if (peer < 0) {
        t.count(G_DROP_NO_ROUTE);
        return OUT_DROP;
      }
    }
    this.outPeer = peer;
    const slot = this.sendingSlot(peer, nowMs);
    if (slot < 0) {
      this.wantHandshake = true;
      return OUT_STAGE;
    }
    const endpoint = t.endpoint(peer);
    if (endpoint === 0n) {
      t.count(G_DROP_NO_ENDPOINT);
      return OUT_DROP;
    }
    const gen = t.kpGen(slot);
    const counter = t.kpNextSendCounter(slot);
    let padded = (length + 15) & ~15;
    if (padded > this.mtu) padded = Math.max(length, this.mtu);
    buf.fill(0, PAYLOAD_OFFSET + length, PAYLOAD_OFFSET + padded);
    const view = this.viewOf(buf);
    view.setUint32(0, MSG_DATA, true);
    view.setUint32(4, t.kpRemoteIndex(slot), true);
    view.setBigUint64(8, counter, true);
    const nonce = this.nonce;
    nonce.set(buf.subarray(8, 16), 4);
    this.aead.sealInPlace(t.kpSendKey(slot), nonce, buf, PAYLOAD_OFFSET, padded);
    if (t.kpGen(slot) !== gen) {
      t.count(G_DROP_RACE);
      return OUT_DROP;
    }
    this.outLength = PAYLOAD_OFFSET + padded + TAG_BYTES;
    this.outEndpoint = endpoint;
    t.noteSent(peer, this.outLength, length > 0, nowMs);
    // Rekey from the initiator's side when the key gets old (the responder waits to be asked).
    if (
      t.kpIsInitiator(slot) &&
      (nowMs - t.kpCreatedMs(slot) >= REKEY_AFTER_TIME_MS || Number(counter) >= REKEY_AFTER_MESSAGES)
    ) {
      this.wantHandshake = true;
    }
    return OUT_SEND;
  }

  /**
   * Decrypts a datagram of `length` bytes in `buf` that came from `source` (packed ip:port).
   * On IN_DELIVER the IP packet is at buf[PAYLOAD_OFFSET, PAYLOAD_OFFSET + inLength).
   */
  decrypt(buf: Uint8Array, length: number, source: bigint, nowMs: number): number {
    const t = this.table;
    this.inRoamed = false;
    this.wantHandshake = false;
    this.confirmedSlot = -1;
    if (length < 4 || buf[0] !== MSG_DATA || buf[1] !== 0 || buf[2] !== 0 || buf[3] !== 0) return IN_NOT_DATA;
    if (length < PAYLOAD_OFFSET + TAG_BYTES) {
      t.count(G_DROP_MALFORMED);
      return IN_DROP;
    }
    const view = this.viewOf(buf);
    const slot = t.slotForIndex(view.getUint32(4, true));
    if (slot < 0 || t.kpState(slot) !== KP_VALID) {
      t.count(G_DROP_UNKNOWN_INDEX);
      return IN_DROP;
    }
    const created = t.kpCreatedMs(slot);
    if (nowMs - created >= REJECT_AFTER_TIME_MS) {
      t.count(G_DROP_EXPIRED_KEY);
      return IN_DROP;
    }
    const low = view.getUint32(8, true);
    const high = view.getUint32(12, true);
    if (high >= 0x200000) {
      t.count(G_DROP_REPLAY); // beyond 2^53: never legitimate within a key's lifetime
      return IN_DROP;
    }
    const counter = high * 0x100000000 + low;
    const gen = t.kpGen(slot);
    const nonce = this.nonce;
    nonce.set(buf.subarray(8, 16), 4);
    if (!this.aead.openInPlace(t.kpRecvKey(slot), nonce, buf, PAYLOAD_OFFSET, length - PAYLOAD_OFFSET)) {
      t.count(G_DROP_AUTH);
      return IN_DROP;
    }
    if (t.kpGen(slot) !== gen) {
      t.count(G_DROP_RACE);
      return IN_DROP;
    }
    if (!t.kpReplay(slot).accept(counter, REJECT_AFTER_MESSAGES)) {
      t.count(G_DROP_REPLAY);
      return IN_DROP;
    }
    const peer = t.kpPeer(slot);
    this.inPeer = peer;
    if (t.kpMarkReceived(slot)) this.confirmedSlot = slot;
    // Roaming: only an authenticated, never-seen packet may move the endpoint.
    if (t.endpoint(peer) !== source) {
      t.setEndpoint(peer, source);
      this.inRoamed = true;
    }
    const plain = length - PAYLOAD_OFFSET - TAG_BYTES;
    if (t.kpIsInitiator(slot) && nowMs - created >= REJECT_AFTER_TIME_MS - 15_000) this.wantHandshake = true;
    if (plain === 0) {
      t.noteReceived(peer, length, false, nowMs);
      return IN_KEEPALIVE;
    }
    if (plain < 20 || buf[PAYLOAD_OFFSET]! >> 4 !== 4) {
      t.count(G_DROP_MALFORMED);
      return IN_DROP;
    }
    const total = view.getUint16(PAYLOAD_OFFSET + 2, false);
    if (total < 20 || total > plain) {
      t.count(G_DROP_MALFORMED);
      return IN_DROP;
    }
    // Cryptokey routing: the inner source must be an address this peer owns.
    const src = view.getUint32(PAYLOAD_OFFSET + 12, false);
    const prefix = t.peerAllowedPrefix(peer);
    if ((src & maskOf(prefix)) >>> 0 !== t.peerAllowedIp(peer)) {
      t.count(G_DROP_SPOOFED_SOURCE);
      return IN_DROP;
    }
    t.noteReceived(peer, length, true, nowMs);
    this.inLength = total;
    return IN_DELIVER;
  }
}
