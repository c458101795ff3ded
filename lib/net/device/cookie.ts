/**
 * mac1/mac2 and cookie replies (WireGuard whitepaper §5.4.4, §5.4.7).
 *
 * mac1 = MAC(HASH("mac1----" || responder's public key), message up to mac1): only someone who knows
 * our public key can make us do any work; a datagram with a wrong mac1 is dropped silently.
 * Under load we also demand mac2 = MAC(cookie, message up to mac2), where the cookie is a MAC of the
 * sender's IP:port under a secret that changes every 2 minutes; it proves the sender can receive at
 * that address. The cookie travels encrypted (XChaCha20-Poly1305) in a cookie reply.
 */
import { COOKIE_REPLY_BYTES, MSG_COOKIE_REPLY } from "./handshake.ts";
import {
  equalBytes,
  hash,
  LABEL_COOKIE,
  LABEL_MAC1,
  mac,
  MAC_BYTES,
  randomBytes,
  xaeadOpen,
  xaeadSeal,
} from "./noise.ts";

export const COOKIE_SECRET_LIFETIME_MS = 120_000;
/** A cookie we received is used for this long (a bit less than the secret's lifetime). */
export const COOKIE_USE_MS = 120_000 - 5_000;

export function mac1KeyFor(publicKey: Uint8Array): Uint8Array {
  return hash(LABEL_MAC1, publicKey);
}
export function cookieKeyFor(publicKey: Uint8Array): Uint8Array {
  return hash(LABEL_COOKIE, publicKey);
}

/** Our side: validates mac1/mac2 on arriving handshake messages and makes cookie replies. */
export class CookieChecker {
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private secret = randomBytes(32);
  private secretSetMs = -Infinity;

  constructor(localPublicKey: Uint8Array) {
    this.mac1Key = mac1KeyFor(localPublicKey);
    this.cookieKey = cookieKeyFor(localPublicKey);
  }

  checkMac1(msg: Uint8Array, mac1Offset: number): boolean {
    if (msg.length < mac1Offset + 2 * MAC_BYTES) return false;
    const expected = mac(this.mac1Key, msg.subarray(0, mac1Offset));
    return equalBytes(expected, msg.subarray(mac1Offset, mac1Offset + MAC_BYTES));
  }

  /** `source` identifies the sender's address (e.g. 4 IP bytes + 2 port bytes). */
  checkMac2(msg: Uint8Array, mac1Offset: number, source: Uint8Array, nowMs: number): boolean {
    if (nowMs - this.secretSetMs > COOKIE_SECRET_LIFETIME_MS) return false;
    const cookie = mac(this.secret, source);
    const expected = mac(cookie, msg.subarray(0, mac1Offset + MAC_BYTES));
    return equalBytes(expected, msg.subarray(mac1Offset + MAC_BYTES, mac1Offset + 2 * MAC_BYTES));
  }

  /** A cookie reply to `msg` (whose sender index is at bytes 4..8). */
  createReply(msg: Uint8Array, mac1Offset: number, source: Uint8Array, nowMs: number): Uint8Array {
    if (nowMs - this.secretSetMs > COOKIE_SECRET_LIFETIME_MS) {
      this.secret = randomBytes(32);
      this.secretSetMs = nowMs;
    }
    const cookie = mac(this.secret, source);
    const reply = new Uint8Array(COOKIE_REPLY_BYTES);
    reply[0] = MSG_COOKIE_REPLY;
    reply.set(msg.subarray(4, 8), 4);
    const nonce = randomBytes(24);
    reply.set(nonce, 8);
    reply.set(xaeadSeal(this.cookieKey, nonce, cookie, msg.subarray(mac1Offset, mac1Offset + MAC_BYTES)), 32);
    return reply;
  }
}

/** Per peer: adds mac1/mac2 to what we send it and remembers the cookie it gave us. */
export class CookieGenerator {
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private cookie: Uint8Array | undefined;
  private cookieSetMs = -Infinity;
  private lastMac1: Uint8Array | undefined;

  constructor(peerPublicKey: Uint8Array) {
    this.mac1Key = mac1KeyFor(peerPublicKey);
    this.cookieKey = cookieKeyFor(peerPublicKey);
  }

  addMacs(msg: Uint8Array, mac1Offset: number, nowMs: number): void {
    const mac1 = mac(this.mac1Key, msg.subarray(0, mac1Offset));
    msg.set(mac1, mac1Offset);
    this.lastMac1 = mac1;
    if (this.cookie && nowMs - this.cookieSetMs < COOKIE_USE_MS) {
      msg.set(mac(this.cookie, msg.subarray(0, mac1Offset + MAC_BYTES)), mac1Offset + MAC_BYTES);
    } else {
      msg.fill(0, mac1Offset + MAC_BYTES, mac1Offset + 2 * MAC_BYTES);
    }
  }

  /** Accepts a cookie reply to the last message we sent; false if it does not authenticate. */
  consumeReply(reply: Uint8Array, nowMs: number): boolean {
    if (reply.length !== COOKIE_REPLY_BYTES || !this.lastMac1) return false;
    const cookie = xaeadOpen(this.cookieKey, reply.subarray(8, 32), reply.subarray(32, 64), this.lastMac1);
    if (!cookie) return false;
    this.cookie = cookie;
    this.cookieSetMs = nowMs;
    return true;
  }
}
