/**
 * The handshake half of the device (wireguard-go's peer.go and timers.go): the peer set, handshakes, keypair
 * rotation and timers. It runs on the daemon's main thread; the data plane (router.ts in Workers)
 * reads what it installs in the shared SessionTable. No sockets here: packets go out through the
 * `send` callback, time comes from `now`, so two PeerSets can be wired together in a unit test.
 */
import type { Aead } from "../../../native/sodium.ts";
import { formatIPv4 } from "./allowedips.ts";
import { CookieChecker, CookieGenerator } from "./cookie.ts";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSessionKeys,
  HandshakeState,
  INITIATION_MAC1_OFFSET,
  messageType,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  RESPONSE_MAC1_OFFSET,
} from "./handshake.ts";
import { encodeKey, type KeyPair } from "./keys.ts";
import { equalBytes } from "./noise.ts";
import { OUT_SEND, PAYLOAD_OFFSET, Router, TAG_BYTES } from "./router.ts";
import {
  G_RX_HANDSHAKE,
  KP_RESERVED,
  KP_VALID,
  MAX_PEERS,
  packEndpoint,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_TIME_MS,
  type SessionTable,
  unpackEndpoint,
} from "./session.ts";
import { decideTimers } from "./timers.ts";

export interface PeerSpec {
  publicKey: Uint8Array;
  name: string;
  allowedIp: number;
  allowedPrefix: number;
  /** Resolved endpoint (packed ip:port), 0n if unknown until the peer contacts us. */
  endpoint: bigint;
}

export class Peer {
  /**
   * Two handshake states, so simultaneous initiations from both sides both complete: `hs` answers
   * the peer's initiations (and keeps its latest timestamp), `initiatorHs` holds ours in flight.
   */
  readonly hs: HandshakeState;
  readonly initiatorHs: HandshakeState;
  readonly cookies: CookieGenerator;
  readonly publicKeyText: string;
  initiationInFlight = false;
  lastInitiationSentMs = -Infinity;
  attemptsStartedMs = 0;
  /** Slot reserved by our in-flight initiation (or -1). */
  initiationSlot = -1;
  lastHandshakeMs = 0;
  handshakes = 0;

  constructor(
    readonly index: number,
    public spec: PeerSpec,
    local: KeyPair,
  ) {
    this.hs = new HandshakeState(local, spec.publicKey);
    this.initiatorHs = new HandshakeState(local, spec.publicKey, undefined, this.hs.precomputedStaticStatic);
    this.cookies = new CookieGenerator(spec.publicKey);
    this.publicKeyText = encodeKey(spec.publicKey);
  }
}

export interface PeerSetEvents {
  /** A handshake completed with `peer` (keys installed). */
  onHandshake?(peer: Peer, asInitiator: boolean): void;
  /** A packet was refused: reason for logs and counters. */
  onReject?(reason: string, source: bigint): void;
}

/** Handshake messages per second above which we demand mac2 (a cookie round trip) first. */
const UNDER_LOAD_PER_SECOND = 200;

export class PeerSet {
  private readonly peersByIndex: (Peer | undefined)[] = [];
  private readonly peersByKey = new Map<string, Peer>();
  private readonly checker: CookieChecker;
  private readonly router: Router;
  private readonly keepaliveBuf: Uint8Array;
  private loadWindowStartMs = 0;
  private loadCount = 0;
  readonly rejects = new Map<string, number>();

  constructor(
    readonly local: KeyPair,
    readonly table: SessionTable,
    aead: Aead,
    private readonly send: (packet: Uint8Array, endpoint: bigint) => void,
    private readonly now: () => number = Date.now,
    private readonly events: PeerSetEvents = {},
  ) {
    this.checker = new CookieChecker(local.publicKey);
    this.router = new Router(table, aead, 1500);
    this.keepaliveBuf = new Uint8Array(PAYLOAD_OFFSET + 16 + TAG_BYTES);
  }

  get peers(): Peer[] {
    return this.peersByIndex.filter((p): p is Peer => p !== undefined);
  }

  byKey(publicKey: Uint8Array | string): Peer | undefined {
    return this.peersByKey.get(typeof publicKey === "string" ? publicKey : encodeKey(publicKey));
  }

  addPeer(spec: PeerSpec): Peer {
    if (equalBytes(spec.publicKey, this.local.publicKey))
      throw new Error("a peer cannot have this node's own public key");
    const existing = this.byKey(spec.publicKey);
    if (existing) {
      this.updatePeer(existing, spec);
      return existing;
    }
    for (const other of this.peers) {
      if (other.spec.allowedIp === spec.allowedIp && spec.allowedIp !== 0) {
        throw new Error(
          `allowed_ip ${formatIPv4(spec.allowedIp)} is already used by peer ${other.spec.name || other.publicKeyText}`,
        );
      }
    }
    let index = this.peersByIndex.indexOf(undefined);
    if (index < 0) index = this.peersByIndex.length;
    if (index >= MAX_PEERS) throw new Error(`too many peers (max ${MAX_PEERS})`);
    const peer = new Peer(index, spec, this.local);
    this.peersByIndex[index] = peer;
    this.peersByKey.set(peer.publicKeyText, peer);
    this.table.resetPeerStats(index);
    this.table.setSlots(index, { current: -1, previous: -1, next: -1 });
    this.table.setEndpoint(index, spec.endpoint);
    this.table.setPeerActive(index, true, spec.allowedIp, spec.allowedPrefix);
    return peer;
  }

  private updatePeer(peer: Peer, spec: PeerSpec): void {
    peer.spec = { ...spec, endpoint: spec.endpoint || this.table.endpoint(peer.index) };
    if (spec.endpoint) this.table.setEndpoint(peer.index, spec.endpoint);
    this.table.setPeerActive(peer.index, true, spec.allowedIp, spec.allowedPrefix);
  }

  removePeer(peer: Peer): void {
    const t = this.table;
    for (const slot of [
      t.currentSlot(peer.index),
      t.previousSlot(peer.index),
      t.nextSlot(peer.index),
      peer.initiationSlot,
    ])
      t.freeSlot(slot);
    t.setPeerActive(peer.index, false);
    this.peersByIndex[peer.index] = undefined;
    this.peersByKey.delete(peer.publicKeyText);
  }

  /** Sets a peer's endpoint (config or DNS re-resolution). */
  setEndpoint(peer: Peer, endpoint: bigint): void {
    this.table.setEndpoint(peer.index, endpoint);
  }

  private reject(reason: string, source: bigint): void {
    this.rejects.set(reason, (this.rejects.get(reason) ?? 0) + 1);
    this.events.onReject?.(reason, source);
  }

  private underLoad(nowMs: number): boolean {
    if (nowMs - this.loadWindowStartMs >= 1000) {
      this.loadWindowStartMs = nowMs;
      this.loadCount = 0;
    }
    return ++this.loadCount > UNDER_LOAD_PER_SECOND;
  }

  /** Starts (or retransmits) a handshake with `peer`. */
  initiate(peer: Peer): void {
    const nowMs = this.now();
    const endpoint = this.table.endpoint(peer.index);
    if (endpoint === 0n) return; // nowhere to send: the peer has to contact us
    if (!peer.initiationInFlight) peer.attemptsStartedMs = nowMs;
    if (peer.initiationSlot >= 0) this.table.freeSlot(peer.initiationSlot);
    const { slot, localIndex } = this.table.reserveSlot(peer.index);
    peer.initiationSlot = slot;
    const msg = createInitiation(peer.initiatorHs, localIndex, nowMs);
    peer.cookies.addMacs(msg, INITIATION_MAC1_OFFSET, nowMs);
    peer.initiationInFlight = true;
    peer.lastInitiationSentMs = nowMs;
    this.send(msg, endpoint);
  }

  /** Handles a handshake-class datagram (types 1–3) from `source`. Never throws on bad input. */
  handlePacket(packet: Uint8Array, source: bigint): void {
    const nowMs = this.now();
    this.table.count(G_RX_HANDSHAKE);
    switch (messageType(packet)) {
      case MSG_INITIATION:
        return this.handleInitiation(packet, source, nowMs);
      case MSG_RESPONSE:
        return this.handleResponse(packet, source, nowMs);
      case MSG_COOKIE_REPLY:
        return this.handleCookieReply(packet);
      default:
        this.reject("unknown-message-type", source);
    }
  }

  private sourceBytes(source: bigint): Uint8Array {
    const out = new Uint8Array(6);
    const view = new DataView(out.buffer);
    const ep = unpackEndpoint(source) ?? { ip: 0, port: 0 };
    view.setUint32(0, ep.ip, false);
    view.setUint16(4, ep.port, false);
    return out;
  }

  /** mac1 (always) and, under load, mac2 (else answer with a cookie). False: drop it. */
  private checkMacs(packet: Uint8Array, mac1Offset: number, source: bigint, nowMs: number): boolean {
    if (!this.checker.checkMac1(packet, mac1Offset)) {
      this.reject("bad-mac1", source);
      return false;
    }
    if (this.underLoad(nowMs)) {
      const src = this.sourceBytes(source);
      if (!this.checker.checkMac2(packet, mac1Offset, src, nowMs)) {
        this.send(this.checker.createReply(packet, mac1Offset, src, nowMs), source);
        this.reject("cookie-required", source);
        return false;
      }
    }
    return true;
  }

  private handleInitiation(packet: Uint8Array, source: bigint, nowMs: number): void {
    if (!this.checkMacs(packet, INITIATION_MAC1_OFFSET, source, nowMs)) return;
    const result = consumeInitiation(this.local, packet, (key) => this.byKey(key)?.hs, nowMs);
    if (!result.ok) {
      this.reject(result.reason, source);
      return;
    }
    const peer = this.byKey(result.remoteStatic)!;
    // Authenticated and fresh: the peer is at `source` now.
    this.table.setEndpoint(peer.index, source);
    const { slot, localIndex } = this.table.reserveSlot(peer.index);
    const response = createResponse(peer.hs, localIndex);
    peer.cookies.addMacs(response, RESPONSE_MAC1_OFFSET, nowMs);
    const keys = deriveSessionKeys(peer.hs);
    this.table.installKeys(slot, keys, nowMs);
    // Responder: the new keypair is "next" until the initiator proves it has it (first packet).
    const t = this.table;
    t.freeSlot(t.nextSlot(peer.index));
    t.freeSlot(t.previousSlot(peer.index));
    t.setSlots(peer.index, { current: t.currentSlot(peer.index), previous: -1, next: slot });
    peer.lastHandshakeMs = nowMs;
    peer.handshakes++;
    this.send(response, source);
    this.events.onHandshake?.(peer, false);
  }

  private handleResponse(packet: Uint8Array, source: bigint, nowMs: number): void {
    if (!this.checkMacs(packet, RESPONSE_MAC1_OFFSET, source, nowMs)) return;
    const result = consumeResponse(this.local, packet, (index) => this.peerForReservedIndex(index)?.initiatorHs);
    if (!result.ok) {
      this.reject(result.reason, source);
      return;
    }
    const peer = this.peerForReservedIndex(result.hs.localIndex)!;
    const slot = peer.initiationSlot;
    const keys = deriveSessionKeys(peer.initiatorHs);
    this.table.installKeys(slot, keys, nowMs);
    // Rotation as in WireGuard: an unconfirmed responder key ("next", from a simultaneous handshake
    // the other way) stays usable for receiving as "previous"; the peer may already send with it.
    const t = this.table;
    const oldCurrent = t.currentSlot(peer.index);
    const oldNext = t.nextSlot(peer.index);
    t.freeSlot(t.previousSlot(peer.index));
    if (oldNext >= 0) {
      t.freeSlot(oldCurrent);
      t.setSlots(peer.index, { current: slot, previous: oldNext, next: -1 });
    } else {
      t.setSlots(peer.index, { current: slot, previous: oldCurrent, next: -1 });
    }
    t.setEndpoint(peer.index, source);
    peer.initiationSlot = -1;
    peer.initiationInFlight = false;
    peer.lastHandshakeMs = nowMs;
    peer.handshakes++;
    this.events.onHandshake?.(peer, true);
    // Confirm the new key to the responder at once (it keeps it as "next" until then).
    this.sendKeepalive(peer);
  }

  private peerForReservedIndex(localIndex: number): Peer | undefined {
    const slot = this.table.slotForIndex(localIndex);
    if (slot < 0 || this.table.kpState(slot) !== KP_RESERVED) return undefined;
    const peer = this.peersByIndex[this.table.kpPeer(slot)];
    return peer && peer.initiationSlot === slot ? peer : undefined;
  }

  private handleCookieReply(packet: Uint8Array): void {
    if (packet.length < 8) return;
    const index = new DataView(packet.buffer, packet.byteOffset, packet.byteLength).getUint32(4, true);
    const slot = this.table.slotForIndex(index);
    if (slot < 0) return;
    const peer = this.peersByIndex[this.table.kpPeer(slot)];
    peer?.cookies.consumeReply(packet, this.now());
  }

  /** The data plane authenticated the first packet under `slot`: promote the responder's "next". */
  confirm(slot: number): void {
    const t = this.table;
    const peerIndex = t.kpPeer(slot);
    if (peerIndex < 0 || t.nextSlot(peerIndex) !== slot) return;
    t.freeSlot(t.previousSlot(peerIndex));
    t.setSlots(peerIndex, { current: slot, previous: t.currentSlot(peerIndex), next: -1 });
  }

  /** Sends an empty transport packet (keepalive) under the current key. */
  sendKeepalive(peer: Peer): boolean {
    const buf = this.keepaliveBuf;
    if (this.router.encrypt(buf, 0, this.now(), peer.index) !== OUT_SEND) return false;
    this.send(buf.slice(0, this.router.outLength), this.router.outEndpoint);
    return true;
  }

  /** Runs the timers of every peer (call every ~100 ms, and when the data plane asks). */
  tick(): void {
    const nowMs = this.now();
    const t = this.table;
    for (const peer of this.peers) {
      // Promote a responder key the data plane confirmed (its receive path marks slots).
      const next = t.nextSlot(peer.index);
      if (next >= 0 && t.kpReceivedAny(next)) this.confirm(next);
      // Drop keys past REJECT_AFTER_TIME: the data plane already refuses them.
      for (const slot of [t.previousSlot(peer.index), t.currentSlot(peer.index), t.nextSlot(peer.index)]) {
        if (slot >= 0 && t.kpState(slot) === KP_VALID && nowMs - t.kpCreatedMs(slot) >= REJECT_AFTER_TIME_MS) {
          t.freeSlot(slot);
          t.setSlots(peer.index, {
            current: t.currentSlot(peer.index) === slot ? -1 : t.currentSlot(peer.index),
            previous: t.previousSlot(peer.index) === slot ? -1 : t.previousSlot(peer.index),
            next: t.nextSlot(peer.index) === slot ? -1 : t.nextSlot(peer.index),
          });
        }
      }
      const current = t.currentSlot(peer.index);
      const hasSession = current >= 0 && t.kpState(current) === KP_VALID;
      // The data plane asks when it has no key or its key is old; a key confirmed since then
      // (the responder's "next", promoted above) answers the first kind of request.
      let wanted = t.takeHandshakeWanted(peer.index);
      if (wanted && hasSession && !(t.kpIsInitiator(current) && nowMs - t.kpCreatedMs(current) >= REKEY_AFTER_TIME_MS))
        wanted = false;
      const actions = decideTimers({
        nowMs,
        lastTxMs: t.lastTx(peer.index),
        lastRxMs: t.lastRx(peer.index),
        lastTxDataMs: t.lastTxData(peer.index),
        lastRxDataMs: t.lastRxData(peer.index),
        handshakeWanted: wanted,
        initiationInFlight: peer.initiationInFlight,
        lastInitiationSentMs: peer.lastInitiationSentMs,
        attemptsStartedMs: peer.attemptsStartedMs,
        hasSession,
        jitterMs: Math.floor(Math.random() * 334),
      });
      if (actions.giveUp) {
        peer.initiationInFlight = false;
        t.freeSlot(peer.initiationSlot);
        peer.initiationSlot = -1;
      } else if (actions.initiate) {
        this.initiate(peer);
      }
      if (actions.sendKeepalive) this.sendKeepalive(peer);
    }
  }

  /** Starts handshakes with every peer whose endpoint we know (on startup: a mesh wants all links). */
  initiateAll(): void {
    for (const peer of this.peers)
      if (this.table.endpoint(peer.index) !== 0n && !peer.initiationInFlight) this.initiate(peer);
  }
}

export { packEndpoint, unpackEndpoint };
