/** The Noise IK handshake and mac1/cookies, including the refusals the attack tests rely on. */
import { describe, expect, test } from "bun:test";
import { CookieChecker, CookieGenerator } from "../../../lib/net/device/cookie.ts";
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  deriveSessionKeys,
  HandshakeState,
  INITIATION_MAC1_OFFSET,
  RESPONSE_MAC1_OFFSET,
} from "../../../lib/net/device/handshake.ts";
import { newKeyPair } from "../../../lib/net/device/keys.ts";
import { aeadOpen, aeadSeal } from "../../../lib/net/device/noise.ts";

function pair() {
  const alice = newKeyPair();
  const bob = newKeyPair();
  const aliceSeesBob = new HandshakeState(alice, bob.publicKey);
  const bobSeesAlice = new HandshakeState(bob, alice.publicKey);
  return { alice, bob, aliceSeesBob, bobSeesAlice };
}

const lookupFor = (hs: HandshakeState) => (key: Uint8Array) =>
  Buffer.from(key).equals(Buffer.from(hs.remoteStatic)) ? hs : undefined;

describe("Noise IK handshake", () => {
  test("both sides derive mirrored transport keys and indices", () => {
    const { alice, bob, aliceSeesBob, bobSeesAlice } = pair();
    const init = createInitiation(aliceSeesBob, 111, 1000);
    expect(init.length).toBe(148);
    const consumed = consumeInitiation(bob, init, lookupFor(bobSeesAlice), 1000);
    expect(consumed.ok).toBe(true);
    const resp = createResponse(bobSeesAlice, 222);
    expect(resp.length).toBe(92);
    const bobKeys = deriveSessionKeys(bobSeesAlice);
    const done = consumeResponse(alice, resp, (i) => (i === 111 ? aliceSeesBob : undefined));
    expect(done.ok).toBe(true);
    const aliceKeys = deriveSessionKeys(aliceSeesBob);
    expect(aliceKeys.isInitiator).toBe(true);
    expect(bobKeys.isInitiator).toBe(false);
    expect(Buffer.from(aliceKeys.sendKey).equals(Buffer.from(bobKeys.receiveKey))).toBe(true);
    expect(Buffer.from(aliceKeys.receiveKey).equals(Buffer.from(bobKeys.sendKey))).toBe(true);
    expect(Buffer.from(aliceKeys.sendKey).equals(Buffer.from(aliceKeys.receiveKey))).toBe(false);
    expect([aliceKeys.localIndex, aliceKeys.remoteIndex, bobKeys.localIndex, bobKeys.remoteIndex]).toEqual([
      111, 222, 222, 111,
    ]);
    const sealed = aeadSeal(aliceKeys.sendKey, 0n, Uint8Array.of(1, 2, 3), new Uint8Array(0));
    expect(aeadOpen(bobKeys.receiveKey, 0n, sealed, new Uint8Array(0))).toEqual(Uint8Array.of(1, 2, 3));
  });

  test("every handshake gives new keys (ephemeral keys: forward secrecy, no key reuse after restart)", () => {
    const { alice, bob, aliceSeesBob, bobSeesAlice } = pair();
    const keys: string[] = [];
    for (let i = 0; i < 3; i++) {
      const init = createInitiation(aliceSeesBob, 1, 1000 + i * 1000);
      expect(consumeInitiation(bob, init, lookupFor(bobSeesAlice), 1000 + i * 1000).ok).toBe(true);
      const resp = createResponse(bobSeesAlice, 2);
      deriveSessionKeys(bobSeesAlice);
      expect(consumeResponse(alice, resp, () => aliceSeesBob).ok).toBe(true);
      keys.push(Buffer.from(deriveSessionKeys(aliceSeesBob).sendKey).toString("hex"));
    }
    expect(new Set(keys).size).toBe(3);
  });

  test("an initiation from a key that is not a peer is refused", () => {
    const { bob } = pair();
    const mallory = newKeyPair();
    const malloryState = new HandshakeState(mallory, bob.publicKey);
    const init = createInitiation(malloryState, 5, 1000);
    const result = consumeInitiation(bob, init, () => undefined, 1000);
    expect(result).toEqual({ ok: false, reason: "unknown-peer" });
  });

  test("a replayed initiation is refused (timestamp not newer), a fresh one is accepted", () => {
    const { alice, bob, aliceSeesBob, bobSeesAlice } = pair();
    const first = createInitiation(aliceSeesBob, 1, 10_000);
    expect(consumeInitiation(bob, first, lookupFor(bobSeesAlice), 10_000).ok).toBe(true);
    expect(consumeInitiation(bob, first, lookupFor(bobSeesAlice), 20_000)).toEqual({
      ok: false,
      reason: "replayed-initiation",
    });
    const second = createInitiation(aliceSeesBob, 2, 20_000);
    expect(consumeInitiation(bob, second, lookupFor(bobSeesAlice), 20_000).ok).toBe(true);
    void alice;
  });

  test("initiations faster than 50/s from one peer are refused", () => {
    const { bob, aliceSeesBob, bobSeesAlice } = pair();
    expect(consumeInitiation(bob, createInitiation(aliceSeesBob, 1, 10_000), lookupFor(bobSeesAlice), 10_000).ok).toBe(
      true,
    );
    const quick = createInitiation(aliceSeesBob, 2, 10_005);
    expect(consumeInitiation(bob, quick, lookupFor(bobSeesAlice), 10_005)).toEqual({
      ok: false,
      reason: "initiation-flood",
    });
  });

  test("a tampered initiation or response fails to decrypt", () => {
    const { alice, bob, aliceSeesBob, bobSeesAlice } = pair();
    const init = createInitiation(aliceSeesBob, 1, 1000);
    const bad = init.slice();
    bad[60]! ^= 0x80;
    expect(consumeInitiation(bob, bad, lookupFor(bobSeesAlice), 1000)).toEqual({ ok: false, reason: "decrypt-failed" });
    expect(consumeInitiation(bob, init, lookupFor(bobSeesAlice), 1000).ok).toBe(true);
    const resp = createResponse(bobSeesAlice, 2);
    const badResp = resp.slice();
    badResp[50]! ^= 1;
    expect(consumeResponse(alice, badResp, () => aliceSeesBob)).toEqual({ ok: false, reason: "decrypt-failed" });
  });

  test("a response nobody asked for is refused", () => {
    const { alice, aliceSeesBob } = pair();
    const resp = new Uint8Array(92);
    resp[0] = 2;
    expect(consumeResponse(alice, resp, () => aliceSeesBob)).toEqual({ ok: false, reason: "unexpected-response" });
  });

  test("malformed input never throws", () => {
    const { bob, bobSeesAlice } = pair();
    for (const len of [0, 1, 4, 147, 148, 149, 500]) {
      const junk = crypto.getRandomValues(new Uint8Array(len));
      if (len > 0) junk[0] = 1;
      expect(consumeInitiation(bob, junk, lookupFor(bobSeesAlice), 1000).ok).toBe(false);
    }
  });
});

describe("mac1 and cookies", () => {
  test("mac1 made for the responder's key validates; for another key it does not", () => {
    const { bob, aliceSeesBob } = pair();
    const init = createInitiation(aliceSeesBob, 1, 1000);
    new CookieGenerator(bob.publicKey).addMacs(init, INITIATION_MAC1_OFFSET, 1000);
    expect(new CookieChecker(bob.publicKey).checkMac1(init, INITIATION_MAC1_OFFSET)).toBe(true);
    expect(new CookieChecker(newKeyPair().publicKey).checkMac1(init, INITIATION_MAC1_OFFSET)).toBe(false);
  });

  test("under load: no mac2 → cookie reply; with the cookie, mac2 validates for that source only", () => {
    const { bob, aliceSeesBob } = pair();
    const checker = new CookieChecker(bob.publicKey);
    const gen = new CookieGenerator(bob.publicKey);
    const source = Uint8Array.of(10, 0, 0, 1, 0x25, 0x80);
    const init = createInitiation(aliceSeesBob, 7, 1000);
    gen.addMacs(init, INITIATION_MAC1_OFFSET, 1000);
    expect(checker.checkMac2(init, INITIATION_MAC1_OFFSET, source, 1000)).toBe(false);
    const reply = checker.createReply(init, INITIATION_MAC1_OFFSET, source, 1000);
    expect(reply.length).toBe(64);
    expect(gen.consumeReply(reply, 1001)).toBe(true);
    const again = createInitiation(aliceSeesBob, 8, 1002);
    gen.addMacs(again, INITIATION_MAC1_OFFSET, 1002);
    expect(checker.checkMac2(again, INITIATION_MAC1_OFFSET, source, 1002)).toBe(true);
    expect(checker.checkMac2(again, INITIATION_MAC1_OFFSET, Uint8Array.of(10, 0, 0, 2, 0x25, 0x80), 1002)).toBe(false);
    void RESPONSE_MAC1_OFFSET;
  });

  test("a forged cookie reply is not accepted", () => {
    const { bob } = pair();
    const gen = new CookieGenerator(bob.publicKey);
    const msg = new Uint8Array(148);
    gen.addMacs(msg, INITIATION_MAC1_OFFSET, 0);
    const forged = crypto.getRandomValues(new Uint8Array(64));
    forged[0] = 3;
    expect(gen.consumeReply(forged, 1)).toBe(false);
  });
});
