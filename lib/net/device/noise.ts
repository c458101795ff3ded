/**
 * The Noise primitives of WireGuard's Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, byte-compatible with
 * WireGuard (whitepaper §5.4): HASH = BLAKE2s-256, MAC = keyed BLAKE2s-128, HMAC = HMAC-BLAKE2s,
 * KDFn = HKDF over HMAC-BLAKE2s, DH = X25519, AEAD = ChaCha20-Poly1305 with a 64-bit LE counter
 * nonce, XAEAD = XChaCha20-Poly1305 (cookies), TAI64N timestamps.
 */
import { chacha20poly1305, xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { blake2s } from "@noble/hashes/blake2.js";
import { hmac } from "@noble/hashes/hmac.js";
import type { CHash } from "@noble/hashes/utils.js";
import { concatBytes } from "../../common/bytes.ts";

export const KEY_BYTES = 32;
export const MAC_BYTES = 16;

export const CONSTRUCTION = new TextEncoder().encode("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s");
export const IDENTIFIER = new TextEncoder().encode("WireGuard v1 zx2c4 Jason@zx2c4.com");
export const LABEL_MAC1 = new TextEncoder().encode("mac1----");
export const LABEL_COOKIE = new TextEncoder().encode("cookie--");

export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(parts);
}

export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = blake2s.create();
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Keyed BLAKE2s with a 16-byte output (WireGuard's MAC). */
export function mac(key: Uint8Array, data: Uint8Array): Uint8Array {
  return blake2s(data, { key, dkLen: MAC_BYTES });
}

/**
 * HKDF (RFC 5869) with `n` 32-byte outputs and empty info, generic over the hash so the RFC's
 * SHA-256 vectors test the same code WireGuard's KDF1/2/3 use with BLAKE2s.
 */
export function hkdf(
  h: CHash,
  salt: Uint8Array,
  ikm: Uint8Array,
  n: number,
  info: Uint8Array = new Uint8Array(0),
): Uint8Array[] {
  const prk = hmac(h, salt, ikm);
  const out: Uint8Array[] = [];
  let prev = new Uint8Array(0);
  for (let i = 1; i <= n; i++) {
    prev = hmac(h, prk, concat(prev, info, Uint8Array.of(i))) as Uint8Array<ArrayBuffer>;
    out.push(prev);
  }
  return out;
}

export function kdf1(key: Uint8Array, input: Uint8Array): Uint8Array {
  return hkdf(blake2s, key, input, 1)[0]!;
}
export function kdf2(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const [a, b] = hkdf(blake2s, key, input, 2);
  return [a!, b!];
}
export function kdf3(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const [a, b, c] = hkdf(blake2s, key, input, 3);
  return [a!, b!, c!];
}

export function generatePrivateKey(): Uint8Array {
  return x25519.utils.randomSecretKey();
}

export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(privateKey);
}

/** X25519; throws on an all-zero result (a low-order point), as WireGuard refuses those. */
export function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const shared = x25519.getSharedSecret(privateKey, publicKey);
  if (shared.every((b) => b === 0)) throw new Error("X25519 produced the all-zero secret (low-order point)");
  return shared;
}

/** The 12-byte AEAD nonce: 4 zero bytes then the 64-bit little-endian counter. */
export function counterNonce(counter: bigint, into = new Uint8Array(12)): Uint8Array {
  new DataView(into.buffer, into.byteOffset, 12).setBigUint64(4, counter, true);
  return into;
}

export function aeadSeal(key: Uint8Array, counter: bigint, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  return chacha20poly1305(key, counterNonce(counter), aad).encrypt(plaintext);
}

/** Returns the plaintext, or undefined if authentication fails. */
export function aeadOpen(
  key: Uint8Array,
  counter: bigint,
  ciphertext: Uint8Array,
  aad: Uint8Array,
): Uint8Array | undefined {
  try {
    return chacha20poly1305(key, counterNonce(counter), aad).decrypt(ciphertext);
  } catch {
    return undefined;
  }
}

export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

export function xaeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  aad: Uint8Array,
): Uint8Array | undefined {
  try {
    return xchacha20poly1305(key, nonce, aad).decrypt(ciphertext);
  } catch {
    return undefined;
  }
}

/** TAI64N: 8 bytes big-endian seconds since 1970 + 2^62, 4 bytes big-endian nanoseconds. */
export function tai64n(nowMs: number = Date.now()): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  const seconds = Math.floor(nowMs / 1000);
  view.setBigUint64(0, 0x4000000000000000n + BigInt(seconds), false);
  view.setUint32(8, Math.floor((nowMs - seconds * 1000) * 1e6), false);
  return out;
}

/** Compares two TAI64N timestamps as big-endian numbers: <0, 0, >0. */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 12; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** Constant-time equality for secrets and MACs. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}
