/**
 * The Noise IK handshake of WireGuard (whitepaper §5.4.2–5.4.5), wire-compatible with it:
 * initiation (148 bytes) and response (92 bytes), giving per-direction ChaCha20-Poly1305 keys with
 * forward secrecy (ephemeral X25519). Pure logic: no sockets, no clocks except the `now` passed in.
 *
 * What it refuses (each returns a reason, never throws on packet contents):
 *  - an initiation whose static key is not a known peer ("unknown-peer"): strangers get no answer;
 *  - an initiation whose TAI64N timestamp is not newer than the last accepted one from that peer
 *    ("replayed-initiation"): a captured initiation cannot be replayed;
 *  - initiations faster than 50/s per peer ("initiation-flood");
 *  - a response that does not match an initiation we sent ("unexpected-response").
 * mac1/mac2 are checked before any of this by cookie.ts.
 */
import {
  aeadOpen,
  aeadSeal,
  CONSTRUCTION,
  compareTai64n,
  dh,
  generatePrivateKey,
  hash,
  IDENTIFIER,
  kdf1,
  kdf2,
  kdf3,
  KEY_BYTES,
  publicKeyOf,
  tai64n,
} from "./noise.ts";

export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_DATA = 4;

export const INITIATION_BYTES = 148;
export const RESPONSE_BYTES = 92;
export const COOKIE_REPLY_BYTES = 64;
export const DATA_HEADER_BYTES = 16;

/** Offsets of mac1 in each handshake message (mac2 follows at +16). */
export const INITIATION_MAC1_OFFSET = 116;
export const RESPONSE_MAC1_OFFSET = 60;

/** WireGuard's minimum spacing of accepted initiations from one peer. */
export const INITIATION_MIN_INTERVAL_MS = 1000 / 50;

const INITIAL_CHAINING_KEY = hash(CONSTRUCTION);
const INITIAL_HASH = hash(INITIAL_CHAINING_KEY, IDENTIFIER);
const ZERO_KEY = new Uint8Array(KEY_BYTES);
const EMPTY = new Uint8Array(0);

export interface StaticIdentity {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

/** Per-peer handshake state (one per peer, reused for every handshake with it). */
export class HandshakeState {
  state: "none" | "initiation-created" | "initiation-consumed" | "response-created" | "response-consumed" = "none";
  hash: Uint8Array = new Uint8Array(32);
  chainingKey: Uint8Array = new Uint8Array(32);
  localEphemeralPrivate: Uint8Array = new Uint8Array(32);
  remoteEphemeral: Uint8Array = new Uint8Array(32);
  localIndex = 0;
  remoteIndex = 0;
  /** Greatest TAI64N timestamp accepted from this peer (replay protection). */
  latestTimestamp: Uint8Array = new Uint8Array(12);
  /** When we last accepted an initiation from this peer (flood protection). */
  lastInitiationConsumedMs = -Infinity;
  readonly precomputedStaticStatic: Uint8Array;

  constructor(
    readonly local: StaticIdentity,
    readonly remoteStatic: Uint8Array,
    readonly presharedKey: Uint8Array = ZERO_KEY,
    precomputedStaticStatic?: Uint8Array,
  ) {
    this.precomputedStaticStatic = precomputedStaticStatic ?? dh(local.privateKey, remoteStatic);
  }

  /** After writing a message: the transcript so far and our ephemeral key and index, for the answer. */
  created(
    state: "initiation-created" | "response-created",
    chainingKey: Uint8Array,
    hash: Uint8Array,
    ephemeralPrivate: Uint8Array,
    localIndex: number,
  ): void {
    this.state = state;
    this.chainingKey = chainingKey;
    this.hash = hash;
    this.localEphemeralPrivate = ephemeralPrivate;
    this.localIndex = localIndex >>> 0;
  }

  /** After reading a message: the transcript so far and the peer's ephemeral key and index. */
  consumed(
    state: "initiation-consumed" | "response-consumed",
    chainingKey: Uint8Array,
    hash: Uint8Array,
    remoteEphemeral: Uint8Array,
    remoteIndex: number,
  ): void {
    this.state = state;
    this.chainingKey = chainingKey;
    this.hash = hash;
    this.remoteEphemeral = remoteEphemeral;
    this.remoteIndex = remoteIndex;
  }

  clear(): void {
    this.state = "none";
    this.hash.fill(0);
    this.chainingKey.fill(0);
    this.localEphemeralPrivate.fill(0);
    this.remoteEphemeral.fill(0);
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

export interface SessionKeys {
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
  localIndex: number;
  remoteIndex: number;
  isInitiator: boolean;
}

function mixHash(h: Uint8Array, data: Uint8Array): Uint8Array {
  return hash(h, data);
}

/** Builds a handshake initiation (mac1/mac2 left zero: cookie.ts fills them). */
export function createInitiation(
  hs: HandshakeState,
  localIndex: number,
  nowMs: number,
  ephemeralPrivate = generatePrivateKey(),
): Uint8Array {
  const msg = new Uint8Array(INITIATION_BYTES);
  const view = new DataView(msg.buffer);
  let c = INITIAL_CHAINING_KEY;
  let h = mixHash(INITIAL_HASH, hs.remoteStatic);
  const ephemeralPublic = publicKeyOf(ephemeralPrivate);
  c = kdf1(c, ephemeralPublic);
  h = mixHash(h, ephemeralPublic);
  let key: Uint8Array;
  [c, key] = kdf2(c, dh(ephemeralPrivate, hs.remoteStatic));
  const encryptedStatic = aeadSeal(key, 0n, hs.local.publicKey, h);
  h = mixHash(h, encryptedStatic);
  [c, key] = kdf2(c, hs.precomputedStaticStatic);
  const encryptedTimestamp = aeadSeal(key, 0n, tai64n(nowMs), h);
  h = mixHash(h, encryptedTimestamp);

  view.setUint32(0, MSG_INITIATION, true);
  view.setUint32(4, localIndex >>> 0, true);
  msg.set(ephemeralPublic, 8);
  msg.set(encryptedStatic, 40);
  msg.set(encryptedTimestamp, 88);

  hs.created("initiation-created", c, h, ephemeralPrivate, localIndex);
  return msg;
}

export type ConsumeInitiationResult =
  | { ok: true; remoteStatic: Uint8Array; hs: HandshakeState }
  | { ok: false; reason: "malformed" | "decrypt-failed" | "unknown-peer" | "replayed-initiation" | "initiation-flood" };

/**
 * Processes an initiation addressed to `local`. `lookupPeer` maps a static public key to that
 * peer's HandshakeState (undefined: not a peer we accept). On success the peer's state holds the
 * handshake, ready for createResponse.
 */
export function consumeInitiation(
  local: StaticIdentity,
  msg: Uint8Array,
  lookupPeer: (remoteStatic: Uint8Array) => HandshakeState | undefined,
  nowMs: number,
): ConsumeInitiationResult {
  if (msg.length !== INITIATION_BYTES || msg[0] !== MSG_INITIATION) return { ok: false, reason: "malformed" };
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const senderIndex = view.getUint32(4, true);
  const ephemeral = msg.slice(8, 40);
  let c = INITIAL_CHAINING_KEY;
  let h = mixHash(INITIAL_HASH, local.publicKey);
  c = kdf1(c, ephemeral);
  h = mixHash(h, ephemeral);
  let key: Uint8Array;
  let shared: Uint8Array;
  try {
    shared = dh(local.privateKey, ephemeral);
  } catch {
    return { ok: false, reason: "malformed" };
  }
  [c, key] = kdf2(c, shared);
  const encryptedStatic = msg.subarray(40, 88);
  const remoteStatic = aeadOpen(key, 0n, encryptedStatic, h);
  if (!remoteStatic) return { ok: false, reason: "decrypt-failed" };
  h = mixHash(h, encryptedStatic);

  const hs = lookupPeer(remoteStatic);
  if (!hs) return { ok: false, reason: "unknown-peer" };
  [c, key] = kdf2(c, hs.precomputedStaticStatic);
  const encryptedTimestamp = msg.subarray(88, 116);
  const timestamp = aeadOpen(key, 0n, encryptedTimestamp, h);
  if (!timestamp) return { ok: false, reason: "decrypt-failed" };
  h = mixHash(h, encryptedTimestamp);

  if (compareTai64n(timestamp, hs.latestTimestamp) <= 0) return { ok: false, reason: "replayed-initiation" };
  if (nowMs - hs.lastInitiationConsumedMs < INITIATION_MIN_INTERVAL_MS)
    return { ok: false, reason: "initiation-flood" };

  hs.latestTimestamp = timestamp;
  hs.lastInitiationConsumedMs = nowMs;
  hs.consumed("initiation-consumed", c, h, ephemeral, senderIndex);
  return { ok: true, remoteStatic, hs };
}

/** Builds the response to a consumed initiation (mac1/mac2 left zero). */
export function createResponse(
  hs: HandshakeState,
  localIndex: number,
  ephemeralPrivate = generatePrivateKey(),
): Uint8Array {
  if (hs.state !== "initiation-consumed") throw new Error(`createResponse in state ${hs.state}`);
  const msg = new Uint8Array(RESPONSE_BYTES);
  const view = new DataView(msg.buffer);
  let c = hs.chainingKey;
  let h = hs.hash;
  const ephemeralPublic = publicKeyOf(ephemeralPrivate);
  c = kdf1(c, ephemeralPublic);
  h = mixHash(h, ephemeralPublic);
  c = kdf1(c, dh(ephemeralPrivate, hs.remoteEphemeral));
  c = kdf1(c, dh(ephemeralPrivate, hs.remoteStatic));
  const [c3, tau, key] = kdf3(c, hs.presharedKey);
  c = c3;
  h = mixHash(h, tau);
  const encryptedNothing = aeadSeal(key, 0n, EMPTY, h);
  h = mixHash(h, encryptedNothing);

  view.setUint32(0, MSG_RESPONSE, true);
  view.setUint32(4, localIndex >>> 0, true);
  view.setUint32(8, hs.remoteIndex >>> 0, true);
  msg.set(ephemeralPublic, 12);
  msg.set(encryptedNothing, 44);

  hs.created("response-created", c, h, ephemeralPrivate, localIndex);
  return msg;
}

export type ConsumeResponseResult =
  | { ok: true; hs: HandshakeState }
  | { ok: false; reason: "malformed" | "unexpected-response" | "decrypt-failed" };

/** Processes a response; `lookupByIndex` maps our sender index (its receiver field) to the handshake. */
export function consumeResponse(
  local: StaticIdentity,
  msg: Uint8Array,
  lookupByIndex: (localIndex: number) => HandshakeState | undefined,
): ConsumeResponseResult {
  if (msg.length !== RESPONSE_BYTES || msg[0] !== MSG_RESPONSE) return { ok: false, reason: "malformed" };
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const senderIndex = view.getUint32(4, true);
  const receiverIndex = view.getUint32(8, true);
  const hs = lookupByIndex(receiverIndex);
  if (hs?.state !== "initiation-created" || hs.localIndex !== receiverIndex)
    return { ok: false, reason: "unexpected-response" };
  const ephemeral = msg.slice(12, 44);
  let c = hs.chainingKey;
  let h = hs.hash;
  c = kdf1(c, ephemeral);
  h = mixHash(h, ephemeral);
  try {
    c = kdf1(c, dh(hs.localEphemeralPrivate, ephemeral));
    c = kdf1(c, dh(local.privateKey, ephemeral));
  } catch {
    return { ok: false, reason: "malformed" };
  }
  const [c3, tau, key] = kdf3(c, hs.presharedKey);
  c = c3;
  h = mixHash(h, tau);
  const encryptedNothing = msg.subarray(44, 60);
  if (!aeadOpen(key, 0n, encryptedNothing, h)) return { ok: false, reason: "decrypt-failed" };
  h = mixHash(h, encryptedNothing);

  hs.consumed("response-consumed", c, h, ephemeral, senderIndex);
  return { ok: true, hs };
}

/**
 * Derives the transport keys once the handshake is complete (initiator after consuming the
 * response, responder after creating it) and wipes the handshake secrets.
 */
export function deriveSessionKeys(hs: HandshakeState): SessionKeys {
  let isInitiator: boolean;
  if (hs.state === "response-consumed") isInitiator = true;
  else if (hs.state === "response-created") isInitiator = false;
  else throw new Error(`deriveSessionKeys in state ${hs.state}`);
  const [first, second] = kdf2(hs.chainingKey, EMPTY);
  const keys: SessionKeys = {
    sendKey: isInitiator ? first : second,
    receiveKey: isInitiator ? second : first,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
    isInitiator,
  };
  const keepTimestamp = hs.latestTimestamp;
  const keepConsumed = hs.lastInitiationConsumedMs;
  hs.clear();
  hs.latestTimestamp = keepTimestamp;
  hs.lastInitiationConsumedMs = keepConsumed;
  return keys;
}

/** Reads the message type of a datagram (first byte, then three zero bytes), or 0 if malformed. */
export function messageType(packet: Uint8Array): number {
  if (packet.length < 4 || packet[1] !== 0 || packet[2] !== 0 || packet[3] !== 0) return 0;
  return packet[0]!;
}
