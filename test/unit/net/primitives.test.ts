/** Published test vectors for every primitive the handshake and data plane use. */
import { describe, expect, test } from "bun:test";
import { blake2s } from "@noble/hashes/blake2.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { nobleAead, sodiumAead, sodiumUnavailableReason } from "../../../native/sodium.ts";
import { compareTai64n, dh, hash, hkdf, mac, publicKeyOf, tai64n } from "../../../lib/net/device/noise.ts";

const hex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("ChaCha20-Poly1305 (RFC 8439 §2.8.2)", () => {
  const key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  const nonce = hex("070000004041424344454647");
  const aad = hex("50515253c0c1c2c3c4c5c6c7");
  const plaintext = new TextEncoder().encode(
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
  );
  const expected =
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116" +
    "1ae10b594f09e26a7e902ecbd0600691";
  const implementations = [nobleAead];
  if (!sodiumUnavailableReason()) implementations.push(sodiumAead());

  test("libsodium is available on this machine (the fast path)", () => {
    expect(sodiumUnavailableReason()).toBeUndefined();
  });

  for (const impl of implementations) {
    test(`${impl.name}: seals in place to the RFC ciphertext and tag, opens it back`, () => {
      const buf = new Uint8Array(plaintext.length + 16 + 8);
      buf.set(plaintext, 4);
      impl.sealInPlace(key, nonce, buf, 4, plaintext.length, aad);
      expect(toHex(buf.subarray(4, 4 + plaintext.length + 16))).toBe(expected);
      expect(impl.openInPlace(key, nonce, buf, 4, plaintext.length + 16, aad)).toBe(true);
      expect(new TextDecoder().decode(buf.subarray(4, 4 + plaintext.length))).toBe(new TextDecoder().decode(plaintext));
    });
    test(`${impl.name}: a flipped bit, a wrong AAD or a short input fails to open`, () => {
      const sealed = hex(expected);
      const flipped = sealed.slice();
      flipped[10]! ^= 1;
      expect(impl.openInPlace(key, nonce, flipped, 0, flipped.length, aad)).toBe(false);
      expect(impl.openInPlace(key, nonce, sealed.slice(), 0, sealed.length, hex("00"))).toBe(false);
      expect(impl.openInPlace(key, nonce, sealed.slice(), 0, 8, aad)).toBe(false);
    });
  }
});

describe("X25519 (RFC 7748)", () => {
  test("§5.2 scalar multiplication vector", () => {
    const scalar = hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    const u = hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    expect(toHex(dh(scalar, u))).toBe("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
  });
  test("§6.1 Diffie-Hellman vector", () => {
    const alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    const bob = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    expect(toHex(publicKeyOf(alice))).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    expect(toHex(publicKeyOf(bob))).toBe("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    const shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    expect(toHex(dh(alice, publicKeyOf(bob)))).toBe(shared);
    expect(toHex(dh(bob, publicKeyOf(alice)))).toBe(shared);
  });
  test("a low-order point (all-zero result) is refused", () => {
    expect(() =>
      dh(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"), new Uint8Array(32)),
    ).toThrow();
  });
});

describe("BLAKE2s (RFC 7693)", () => {
  test("Appendix B: BLAKE2s-256('abc')", () => {
    expect(toHex(hash(new TextEncoder().encode("abc")))).toBe(
      "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
    );
  });
  test("keyed BLAKE2s (reference blake2s-kat: key 00..1f, empty and one-byte input)", () => {
    const key = new Uint8Array(32).map((_, i) => i);
    expect(toHex(blake2s(new Uint8Array(0), { key }))).toBe(
      "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49",
    );
    expect(toHex(blake2s(Uint8Array.of(0), { key }))).toBe(
      "40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1",
    );
    // WireGuard's MAC is the 128-bit-output variant (a different parameter block, not a truncation).
    expect(toHex(mac(key, new Uint8Array(0)))).toBe("9536f9b267655743dee97b8a670f9f53");
  });
});

describe("HKDF (RFC 5869)", () => {
  test("test case 1 (SHA-256) through the same code WireGuard's KDF uses", () => {
    const ikm = new Uint8Array(22).fill(0x0b);
    const salt = hex("000102030405060708090a0b0c");
    const info = hex("f0f1f2f3f4f5f6f7f8f9");
    const okm = hkdf(sha256, salt, ikm, 2, info);
    const joined = Buffer.concat([okm[0]!, okm[1]!]).subarray(0, 42);
    expect(joined.toString("hex")).toBe(
      "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    );
  });
});

describe("TAI64N", () => {
  test("encodes 2^62 + seconds and orders by time", () => {
    const a = tai64n(1_700_000_000_123);
    expect(toHex(a.subarray(0, 8))).toBe((0x4000000000000000n + 1_700_000_000n).toString(16).padStart(16, "0"));
    expect(new DataView(a.buffer).getUint32(8, false)).toBe(123_000_000);
    expect(compareTai64n(tai64n(1_700_000_000_124), a)).toBeGreaterThan(0);
    expect(compareTai64n(a, a)).toBe(0);
  });
});
