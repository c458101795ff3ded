/**
 * Session state shared between the control thread (handshakes, timers) and the data-plane Workers,
 * in SharedArrayBuffers so the Workers never wait for a message: keypair slots (keys, indices,
 * 64-bit send counter, replay window) and peer slots (current/previous/next keypair, endpoint,
 * counters, timestamps), plus global drop counters.
 *
 * Rules that keep the crypto safe across threads:
 *  - a keypair's send counter only ever grows (Atomics.add); a slot gets a new key only with a
 *    fresh handshake, so no (key, counter) pair is ever used twice;
 *  - every change to a slot bumps its generation; a Worker reads the generation before and after
 *    using a slot and drops the packet if it changed (seqlock), so it never sends or accepts a
 *    packet under a half-written key;
 *  - the local index encodes the slot (low bits) plus random high bits, so the receive path finds
 *    the slot without a map and checks the full index.
 */
import { REPLAY_WORDS, ReplayWindow } from "./replay.ts";

// WireGuard's timing constants (whitepaper §6.1).
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/** Stricter than WireGuard's 2^64-2^13-1 so counters stay exact as Numbers; unreachable in 180 s anyway. */
export const REJECT_AFTER_MESSAGES = 2 ** 53 - 2 ** 13;
export const REKEY_AFTER_TIME_MS = 120_000;
export const REJECT_AFTER_TIME_MS = 180_000;
export const REKEY_ATTEMPT_TIME_MS = 90_000;
export const REKEY_TIMEOUT_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 10_000;

export const MAX_PEERS = 512;
export const KEYPAIR_SLOT_BITS = 11;
export const MAX_KEYPAIRS = 1 << KEYPAIR_SLOT_BITS;
export const KEYPAIR_SLOT_MASK = MAX_KEYPAIRS - 1;

// Keypair slot layout (bytes).
const KP_STRIDE = 640;
const KP_GEN = 0; // i32
const KP_STATE = 4; // i32: 0 free, 1 reserved (handshake in flight), 2 valid
const KP_PEER = 8; // i32
const KP_LOCAL_INDEX = 12; // u32
const KP_REMOTE_INDEX = 16; // u32
const KP_INITIATOR = 20; // i32
const KP_RECEIVED = 24; // i32: 1 once a packet authenticated under it
const KP_CREATED = 32; // f64 ms
const KP_REPLAY_GREATEST = 40; // f64
const KP_SEND_COUNTER = 48; // i64
const KP_SEND_KEY = 64; // 32 bytes
const KP_RECV_KEY = 96; // 32 bytes
const KP_RING = 128; // REPLAY_WORDS u32

export const KP_FREE = 0;
export const KP_RESERVED = 1;
export const KP_VALID = 2;

// Peer slot layout (bytes).
const PEER_STRIDE = 128;
const P_STATE = 0; // i32: 0 free, 1 active
const P_CURRENT = 4; // i32 keypair slot or -1
const P_PREVIOUS = 8;
const P_NEXT = 12;
const P_ALLOWED_IP = 16; // u32
const P_ALLOWED_PREFIX = 20; // i32
const P_ENDPOINT = 24; // i64: ip << 16 | port, 0 = unknown
const P_LAST_TX = 32; // f64: last transport packet sent (incl. keepalive)
const P_LAST_RX = 40; // f64: last authenticated transport packet received (incl. keepalive)
const P_LAST_TX_DATA = 48; // f64: last non-keepalive sent
const P_LAST_RX_DATA = 56; // f64: last non-keepalive received
const P_RX_BYTES = 64; // f64
const P_TX_BYTES = 72;
const P_RX_PACKETS = 80;
const P_TX_PACKETS = 88;
const P_HANDSHAKE_WANTED = 96; // i32: set by the data plane when it has no usable key

// Global counters (i32 index into the header).
export const G_ROUTES_GEN = 0;
export const G_DROP_NO_ROUTE = 1;
/** Staged packets dropped because no session came up within 10 s. */
export const G_DROP_NO_KEY = 2;
export const G_DROP_UNKNOWN_INDEX = 3;
export const G_DROP_AUTH = 4;
export const G_DROP_REPLAY = 5;
export const G_DROP_SPOOFED_SOURCE = 6;
export const G_DROP_EXPIRED_KEY = 7;
export const G_DROP_MALFORMED = 8;
export const G_DROP_NO_ENDPOINT = 9;
export const G_DROP_RACE = 10;
export const G_RX_HANDSHAKE = 11;
export const G_STAGED = 12;
export const G_WORKERS_READY = 13;
const G_COUNT = 32;

export const DROP_COUNTER_NAMES: Record<string, number> = {
  no_route: G_DROP_NO_ROUTE,
  no_session: G_DROP_NO_KEY,
  unknown_index: G_DROP_UNKNOWN_INDEX,
  auth_failed: G_DROP_AUTH,
  replayed: G_DROP_REPLAY,
  spoofed_source: G_DROP_SPOOFED_SOURCE,
  expired_key: G_DROP_EXPIRED_KEY,
  malformed: G_DROP_MALFORMED,
  no_endpoint: G_DROP_NO_ENDPOINT,
  key_changed: G_DROP_RACE,
};

export interface SharedBuffers {
  keypairs: SharedArrayBuffer;
  peers: SharedArrayBuffer;
  global: SharedArrayBuffer;
}

export function packEndpoint(ip: number, port: number): bigint {
  return (BigInt(ip >>> 0) << 16n) | BigInt(port & 0xffff);
}
export function unpackEndpoint(value: bigint): { ip: number; port: number } | undefined {
  if (value === 0n) return undefined;
  return { ip: Number(value >> 16n) >>> 0, port: Number(value & 0xffffn) };
}

export class SessionTable {
  readonly kpI32: Int32Array;
  readonly kpU32: Uint32Array;
  readonly kpF64: Float64Array;
  readonly kpI64: BigInt64Array;
  readonly kpU8: Uint8Array;
  readonly peerI32: Int32Array;
  readonly peerU32: Uint32Array;
  readonly peerF64: Float64Array;
  readonly peerI64: BigInt64Array;
  readonly global: Int32Array;
  private readonly replayWindows: (ReplayWindow | undefined)[] = [];
  private readonly sendKeys: (Uint8Array | undefined)[] = [];
  private readonly recvKeys: (Uint8Array | undefined)[] = [];
  private allocCursor = 0;

  constructor(readonly buffers: SharedBuffers = SessionTable.allocate()) {
    const kp = buffers.keypairs;
    this.kpI32 = new Int32Array(kp);
    this.kpU32 = new Uint32Array(kp);
    this.kpF64 = new Float64Array(kp);
    this.kpI64 = new BigInt64Array(kp);
    this.kpU8 = new Uint8Array(kp);
    const p = buffers.peers;
    this.peerI32 = new Int32Array(p);
    this.peerU32 = new Uint32Array(p);
    this.peerF64 = new Float64Array(p);
    this.peerI64 = new BigInt64Array(p);
    this.global = new Int32Array(buffers.global);
  }

  static allocate(): SharedBuffers {
    const table = {
      keypairs: new SharedArrayBuffer(KP_STRIDE * MAX_KEYPAIRS),
      peers: new SharedArrayBuffer(PEER_STRIDE * MAX_PEERS),
      global: new SharedArrayBuffer(4 * G_COUNT),
    };
    const peerI32 = new Int32Array(table.peers);
    for (let p = 0; p < MAX_PEERS; p++) {
      const b = (p * PEER_STRIDE) >> 2;
      peerI32[b + (P_CURRENT >> 2)] = -1;
      peerI32[b + (P_PREVIOUS >> 2)] = -1;
      peerI32[b + (P_NEXT >> 2)] = -1;
    }
    return table;
  }

  // ----- keypair slots -----------------------------------------------------------------------
  private kpWord(slot: number, off: number): number {
    return (slot * KP_STRIDE + off) >> 2;
  }
  kpGen(slot: number): number {
    return Atomics.load(this.kpI32, this.kpWord(slot, KP_GEN));
  }
  kpState(slot: number): number {
    return Atomics.load(this.kpI32, this.kpWord(slot, KP_STATE));
  }
  kpPeer(slot: number): number {
    return this.kpI32[this.kpWord(slot, KP_PEER)]!;
  }
  kpLocalIndex(slot: number): number {
    return this.kpU32[this.kpWord(slot, KP_LOCAL_INDEX)]!;
  }
  kpRemoteIndex(slot: number): number {
    return this.kpU32[this.kpWord(slot, KP_REMOTE_INDEX)]!;
  }
  kpIsInitiator(slot: number): boolean {
    return this.kpI32[this.kpWord(slot, KP_INITIATOR)] === 1;
  }
  kpCreatedMs(slot: number): number {
    return this.kpF64[(slot * KP_STRIDE + KP_CREATED) >> 3]!;
  }
  kpReceivedAny(slot: number): boolean {
    return Atomics.load(this.kpI32, this.kpWord(slot, KP_RECEIVED)) === 1;
  }
  /** Marks that a packet authenticated under this keypair; true the first time. */
  kpMarkReceived(slot: number): boolean {
    return Atomics.compareExchange(this.kpI32, this.kpWord(slot, KP_RECEIVED), 0, 1) === 0;
  }
  /** Reserves the next counter value for sending (never returns the same value twice per key). */
  kpNextSendCounter(slot: number): bigint {
    return Atomics.add(this.kpI64, (slot * KP_STRIDE + KP_SEND_COUNTER) >> 3, 1n);
  }
  kpSendCounter(slot: number): bigint {
    return Atomics.load(this.kpI64, (slot * KP_STRIDE + KP_SEND_COUNTER) >> 3);
  }
  /** Views into shared memory (cached per slot; the slot's bytes change only with its generation). */
  kpSendKey(slot: number): Uint8Array {
    let key = this.sendKeys[slot];
    if (!key) this.sendKeys[slot] = key = new Uint8Array(this.buffers.keypairs, slot * KP_STRIDE + KP_SEND_KEY, 32);
    return key;
  }
  kpRecvKey(slot: number): Uint8Array {
    let key = this.recvKeys[slot];
    if (!key) this.recvKeys[slot] = key = new Uint8Array(this.buffers.keypairs, slot * KP_STRIDE + KP_RECV_KEY, 32);
    return key;
  }
  kpReplay(slot: number): ReplayWindow {
    let w = this.replayWindows[slot];
    if (!w) {
      const base = slot * KP_STRIDE;
      w = new ReplayWindow(
        new Uint32Array(this.buffers.keypairs, base + KP_RING, REPLAY_WORDS),
        new Float64Array(this.buffers.keypairs, base + KP_REPLAY_GREATEST, 1),
      );
      this.replayWindows[slot] = w;
    }
    return w;
  }
  /** Finds the valid keypair slot for a receiver index from the wire, or -1. */
  slotForIndex(localIndex: number): number {
    const slot = localIndex & KEYPAIR_SLOT_MASK;
    if (this.kpLocalIndex(slot) !== localIndex >>> 0) return -1;
    return slot;
  }

  /** Control thread: reserves a free slot for a handshake and returns its new random local index. */
  reserveSlot(peer: number): { slot: number; localIndex: number } {
    for (let n = 0; n < MAX_KEYPAIRS; n++) {
      const slot = (this.allocCursor + n) % MAX_KEYPAIRS;
      if (this.kpState(slot) !== KP_FREE) continue;
      this.allocCursor = (slot + 1) % MAX_KEYPAIRS;
      const random = crypto.getRandomValues(new Uint32Array(1))[0]!;
      const localIndex = ((random & ~KEYPAIR_SLOT_MASK) | slot) >>> 0;
      Atomics.add(this.kpI32, this.kpWord(slot, KP_GEN), 1);
      this.kpI32[this.kpWord(slot, KP_PEER)] = peer;
      this.kpU32[this.kpWord(slot, KP_LOCAL_INDEX)] = localIndex;
      Atomics.store(this.kpI32, this.kpWord(slot, KP_STATE), KP_RESERVED);
      return { slot, localIndex };
    }
    throw new Error("no free keypair slots");
  }

  /** Control thread: puts fresh transport keys into a reserved slot and makes it usable. */
  installKeys(
    slot: number,
    keys: { sendKey: Uint8Array; receiveKey: Uint8Array; remoteIndex: number; isInitiator: boolean },
    nowMs: number,
  ): void {
    const base = slot * KP_STRIDE;
    Atomics.store(this.kpI32, this.kpWord(slot, KP_STATE), KP_RESERVED);
    Atomics.add(this.kpI32, this.kpWord(slot, KP_GEN), 1);
    this.kpU8.set(keys.sendKey, base + KP_SEND_KEY);
    this.kpU8.set(keys.receiveKey, base + KP_RECV_KEY);
    this.kpU32[this.kpWord(slot, KP_REMOTE_INDEX)] = keys.remoteIndex >>> 0;
    this.kpI32[this.kpWord(slot, KP_INITIATOR)] = keys.isInitiator ? 1 : 0;
    Atomics.store(this.kpI32, this.kpWord(slot, KP_RECEIVED), 0);
    this.kpF64[(base + KP_CREATED) >> 3] = nowMs;
    Atomics.store(this.kpI64, (base + KP_SEND_COUNTER) >> 3, 0n);
    this.kpReplay(slot).reset();
    Atomics.add(this.kpI32, this.kpWord(slot, KP_GEN), 1);
    Atomics.store(this.kpI32, this.kpWord(slot, KP_STATE), KP_VALID);
  }

  /** Control thread: wipes a slot (keys zeroed) and frees it. */
  freeSlot(slot: number): void {
    if (slot < 0) return;
    const base = slot * KP_STRIDE;
    Atomics.store(this.kpI32, this.kpWord(slot, KP_STATE), KP_FREE);
    Atomics.add(this.kpI32, this.kpWord(slot, KP_GEN), 1);
    this.kpU8.fill(0, base + KP_SEND_KEY, base + KP_RECV_KEY + 32);
    this.kpU32[this.kpWord(slot, KP_LOCAL_INDEX)] = 0;
    this.kpI32[this.kpWord(slot, KP_PEER)] = -1;
  }

  // ----- peer slots --------------------------------------------------------------------------
  private pWord(peer: number, off: number): number {
    return (peer * PEER_STRIDE + off) >> 2;
  }
  private pDouble(peer: number, off: number): number {
    return (peer * PEER_STRIDE + off) >> 3;
  }
  peerActive(peer: number): boolean {
    return Atomics.load(this.peerI32, this.pWord(peer, P_STATE)) === 1;
  }
  setPeerActive(peer: number, active: boolean, allowedIp = 0, prefix = 32): void {
    this.peerU32[this.pWord(peer, P_ALLOWED_IP)] = allowedIp >>> 0;
    this.peerI32[this.pWord(peer, P_ALLOWED_PREFIX)] = prefix;
    if (!active) {
      for (const off of [P_CURRENT, P_PREVIOUS, P_NEXT]) Atomics.store(this.peerI32, this.pWord(peer, off), -1);
      Atomics.store(this.peerI64, this.pDouble(peer, P_ENDPOINT), 0n);
    }
    Atomics.store(this.peerI32, this.pWord(peer, P_STATE), active ? 1 : 0);
    Atomics.add(this.global, G_ROUTES_GEN, 1);
  }
  peerAllowedIp(peer: number): number {
    return this.peerU32[this.pWord(peer, P_ALLOWED_IP)]!;
  }
  peerAllowedPrefix(peer: number): number {
    return this.peerI32[this.pWord(peer, P_ALLOWED_PREFIX)]!;
  }
  currentSlot(peer: number): number {
    return Atomics.load(this.peerI32, this.pWord(peer, P_CURRENT));
  }
  previousSlot(peer: number): number {
    return Atomics.load(this.peerI32, this.pWord(peer, P_PREVIOUS));
  }
  nextSlot(peer: number): number {
    return Atomics.load(this.peerI32, this.pWord(peer, P_NEXT));
  }
  setSlots(peer: number, slots: { current: number; previous: number; next: number }): void {
    Atomics.store(this.peerI32, this.pWord(peer, P_CURRENT), slots.current);
    Atomics.store(this.peerI32, this.pWord(peer, P_PREVIOUS), slots.previous);
    Atomics.store(this.peerI32, this.pWord(peer, P_NEXT), slots.next);
  }
  endpoint(peer: number): bigint {
    return Atomics.load(this.peerI64, this.pDouble(peer, P_ENDPOINT));
  }
  setEndpoint(peer: number, packed: bigint): void {
    Atomics.store(this.peerI64, this.pDouble(peer, P_ENDPOINT), packed);
  }
  lastTx(peer: number): number {
    return this.peerF64[this.pDouble(peer, P_LAST_TX)]!;
  }
  lastRx(peer: number): number {
    return this.peerF64[this.pDouble(peer, P_LAST_RX)]!;
  }
  lastTxData(peer: number): number {
    return this.peerF64[this.pDouble(peer, P_LAST_TX_DATA)]!;
  }
  lastRxData(peer: number): number {
    return this.peerF64[this.pDouble(peer, P_LAST_RX_DATA)]!;
  }
  noteSent(peer: number, bytes: number, isData: boolean, nowMs: number): void {
    const f = this.peerF64;
    f[this.pDouble(peer, P_LAST_TX)] = nowMs;
    if (isData) f[this.pDouble(peer, P_LAST_TX_DATA)] = nowMs;
    f[this.pDouble(peer, P_TX_BYTES)]! += bytes;
    f[this.pDouble(peer, P_TX_PACKETS)]! += 1;
  }
  noteReceived(peer: number, bytes: number, isData: boolean, nowMs: number): void {
    const f = this.peerF64;
    f[this.pDouble(peer, P_LAST_RX)] = nowMs;
    if (isData) f[this.pDouble(peer, P_LAST_RX_DATA)] = nowMs;
    f[this.pDouble(peer, P_RX_BYTES)]! += bytes;
    f[this.pDouble(peer, P_RX_PACKETS)]! += 1;
  }
  traffic(peer: number): { rxBytes: number; txBytes: number; rxPackets: number; txPackets: number } {
    const f = this.peerF64;
    return {
      rxBytes: f[this.pDouble(peer, P_RX_BYTES)]!,
      txBytes: f[this.pDouble(peer, P_TX_BYTES)]!,
      rxPackets: f[this.pDouble(peer, P_RX_PACKETS)]!,
      txPackets: f[this.pDouble(peer, P_TX_PACKETS)]!,
    };
  }
  resetPeerStats(peer: number): void {
    for (const off of [
      P_LAST_TX,
      P_LAST_RX,
      P_LAST_TX_DATA,
      P_LAST_RX_DATA,
      P_RX_BYTES,
      P_TX_BYTES,
      P_RX_PACKETS,
      P_TX_PACKETS,
    ]) {
      this.peerF64[this.pDouble(peer, off)] = 0;
    }
  }
  /** Data plane: asks the control thread for a handshake; true if it was not already asked. */
  wantHandshake(peer: number): boolean {
    return Atomics.exchange(this.peerI32, this.pWord(peer, P_HANDSHAKE_WANTED), 1) === 0;
  }
  takeHandshakeWanted(peer: number): boolean {
    return Atomics.exchange(this.peerI32, this.pWord(peer, P_HANDSHAKE_WANTED), 0) === 1;
  }

  count(counter: number, n = 1): void {
    Atomics.add(this.global, counter, n);
  }
  counter(counter: number): number {
    return Atomics.load(this.global, counter);
  }
  dropCounters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, index] of Object.entries(DROP_COUNTER_NAMES)) out[name] = this.counter(index);
    return out;
  }
}
