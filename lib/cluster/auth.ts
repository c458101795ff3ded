/**
 * Authentication with the cluster secret (HMAC-SHA256, truncated to 16 bytes).
 *
 * The cluster key is derived from the secret *and* the cluster name, so two clusters never accept
 * each other's frames even with the same secret. TCP connections start with a challenge-response
 * (both sides send a fresh nonce; each side's hello is MACed with the cluster key and the acceptor
 * echoes the dialer's nonce), then every frame carries a MAC under a per-connection session key
 * derived from both nonces, over a direction byte and an implicit sequence number: a tampered,
 * replayed, reordered or injected frame fails verification and is dropped and counted.
 * Discovery beacons are MACed with the cluster key and carry a timestamp and sequence number.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { ConfigError } from "../common/errors.ts";

export const MAC_BYTES = 16;

export function clusterKey(secretHex: string, clusterName: string): Buffer {
  if (!/^[0-9a-f]{32,}$/.test(secretHex) || secretHex.length % 2 !== 0) {
    throw new ConfigError("cluster.secret must be an even number (>= 32) of lowercase hex characters", {
      key: "cluster.secret",
      hint: "run `wolf <sub> init` to generate one and copy it to every node",
    });
  }
  return createHmac("sha256", Buffer.from(secretHex, "hex")).update(`wolf-cluster-v1\0${clusterName}`).digest();
}

export function mac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac("sha256", key);
  for (const p of parts) h.update(p);
  return h.digest().subarray(0, MAC_BYTES);
}

export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function nonce(): Buffer {
  return randomBytes(16);
}

export function sessionKey(key: Uint8Array, dialerNonce: Uint8Array, acceptorNonce: Uint8Array): Buffer {
  return createHmac("sha256", key).update("session").update(dialerNonce).update(acceptorNonce).digest();
}

/** Appends a MAC to `payload` under `key`, bound to `context` (not sent). */
export function seal(key: Uint8Array, payload: Uint8Array, context: Uint8Array): Buffer {
  return Buffer.concat([payload, mac(key, context, payload)]);
}

/** Returns the payload if the MAC verifies, else undefined. */
export function open(key: Uint8Array, body: Uint8Array, context: Uint8Array): Uint8Array | undefined {
  if (body.length < MAC_BYTES) return undefined;
  const payload = body.subarray(0, body.length - MAC_BYTES);
  const tag = body.subarray(body.length - MAC_BYTES);
  return macEqual(tag, mac(key, context, payload)) ? payload : undefined;
}

/** Per-frame context: direction and sequence number (never sent, so replays and reorders fail). */
export function frameContext(direction: 0 | 1, seq: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b.writeUInt8(direction, 0);
  b.writeBigUInt64BE(BigInt(seq), 1);
  return b;
}

export const HELLO_CONTEXT = Buffer.from("wolf-hello-v1");
export const BEACON_CONTEXT = Buffer.from("wolf-beacon-v1");
