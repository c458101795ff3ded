/**
 * ChaCha20-Poly1305 (IETF, RFC 8439) behind one interface: libsodium through bun:ffi when
 * libsodium23 is installed (~800 MB/s), @noble/ciphers otherwise (~50 MB/s). Both are
 * byte-identical (tested against the RFC 8439 vector).
 *
 * The data plane encrypts in place: `buf[off, off+len)` becomes ciphertext followed by the 16-byte
 * tag, so packets are never copied.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { dlopen, FFIType, ptr } from "bun:ffi";

export const TAG_BYTES = 16;

export interface Aead {
  readonly name: "libsodium" | "noble";
  /** Encrypts buf[off, off+len) in place and writes the tag at buf[off+len, off+len+16). */
  sealInPlace(key: Uint8Array, nonce: Uint8Array, buf: Uint8Array, off: number, len: number, aad?: Uint8Array): void;
  /** Decrypts buf[off, off+len) (ciphertext+tag) in place; false if the tag is wrong (buffer then undefined). */
  openInPlace(key: Uint8Array, nonce: Uint8Array, buf: Uint8Array, off: number, len: number, aad?: Uint8Array): boolean;
}

const EMPTY = new Uint8Array(0);

export const nobleAead: Aead = {
  name: "noble",
  sealInPlace(key, nonce, buf, off, len, aad) {
    const out = chacha20poly1305(key, nonce, aad?.length ? aad : undefined).encrypt(buf.subarray(off, off + len));
    buf.set(out, off);
  },
  openInPlace(key, nonce, buf, off, len, aad) {
    if (len < TAG_BYTES) return false;
    try {
      const out = chacha20poly1305(key, nonce, aad?.length ? aad : undefined).decrypt(buf.subarray(off, off + len));
      buf.set(out, off);
      return true;
    } catch {
      return false;
    }
  },
};

function openSodium() {
  const { i32, u64, ptr: P } = FFIType;
  const names = ["libsodium.so.23", "libsodium.so"];
  let lastError: unknown;
  for (const name of names) {
    try {
      return dlopen(name, {
        sodium_init: { args: [], returns: i32 },
        crypto_aead_chacha20poly1305_ietf_encrypt: { args: [P, P, P, u64, P, u64, P, P, P], returns: i32 },
        crypto_aead_chacha20poly1305_ietf_decrypt: { args: [P, P, P, P, u64, P, u64, P, P], returns: i32 },
      }).symbols;
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** Module-level, so it is never collected: libsodium is given its address for "no AAD". */
const NO_AAD = new Uint8Array(1);

function makeSodiumAead(): Aead {
  const s = openSodium();
  if (s.sodium_init() < 0) throw new Error("sodium_init failed");
  const enc = s.crypto_aead_chacha20poly1305_ietf_encrypt;
  const dec = s.crypto_aead_chacha20poly1305_ietf_decrypt;
  const emptyPtr = ptr(NO_AAD);
  return {
    name: "libsodium",
    sealInPlace(key, nonce, buf, off, len, aad) {
      // libsodium allows c == m (in-place); the tag lands right after the ciphertext.
      const p = ptr(buf, off);
      const hasAad = aad !== undefined && aad.length > 0;
      enc(p, null, p, len, hasAad ? ptr(aad) : emptyPtr, hasAad ? aad.length : 0, null, ptr(nonce), ptr(key));
    },
    openInPlace(key, nonce, buf, off, len, aad) {
      if (len < TAG_BYTES) return false;
      const p = ptr(buf, off);
      const hasAad = aad !== undefined && aad.length > 0;
      return (
        dec(p, null, null, p, len, hasAad ? ptr(aad) : emptyPtr, hasAad ? aad.length : 0, ptr(nonce), ptr(key)) === 0
      );
    },
  };
}

let cached: Aead | undefined;
let sodiumProblem: string | undefined;

/**
 * The fastest available AEAD for this thread. `WOLF_NET_AEAD=noble` forces the fallback (tests and
 * benchmarks use it to compare).
 */
export function aead(): Aead {
  if (cached) return cached;
  if (process.env.WOLF_NET_AEAD === "noble") return (cached = nobleAead);
  try {
    cached = makeSodiumAead();
  } catch (err) {
    sodiumProblem = (err as Error).message;
    cached = nobleAead;
  }
  return cached;
}

/** Why libsodium was not used, if it was not. */
export function sodiumUnavailableReason(): string | undefined {
  aead();
  return sodiumProblem;
}

export function sodiumAead(): Aead {
  return makeSodiumAead();
}

export { EMPTY as EMPTY_AAD };
