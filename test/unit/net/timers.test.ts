import { describe, expect, test } from "bun:test";
import { decideTimers, type PeerTimerState } from "../../../lib/net/device/timers.ts";

const base: PeerTimerState = {
  nowMs: 100_000,
  lastTxMs: 0,
  lastRxMs: 0,
  lastTxDataMs: 0,
  lastRxDataMs: 0,
  handshakeWanted: false,
  initiationInFlight: false,
  lastInitiationSentMs: -Infinity,
  attemptsStartedMs: 0,
  hasSession: true,
  jitterMs: 0,
};

describe("timers", () => {
  test("idle: nothing to do", () => {
    expect(decideTimers(base)).toEqual({ initiate: false, sendKeepalive: false, giveUp: false });
  });
  test("the data plane asking for a key starts a handshake, at most every 5 s", () => {
    expect(decideTimers({ ...base, handshakeWanted: true }).initiate).toBe(true);
    expect(decideTimers({ ...base, handshakeWanted: true, lastInitiationSentMs: 97_000 }).initiate).toBe(false);
  });
  test("an unanswered initiation is retransmitted after 5 s and abandoned after 90 s", () => {
    const inFlight = { ...base, initiationInFlight: true, attemptsStartedMs: 90_000, lastInitiationSentMs: 94_000 };
    expect(decideTimers(inFlight).initiate).toBe(true);
    expect(decideTimers({ ...inFlight, lastInitiationSentMs: 96_000 }).initiate).toBe(false);
    expect(decideTimers({ ...inFlight, attemptsStartedMs: 10_000 }).giveUp).toBe(true);
  });
  test("keepalive 10 s after receiving data with nothing sent since", () => {
    expect(decideTimers({ ...base, lastRxDataMs: 89_000, lastRxMs: 89_000, lastTxMs: 80_000 }).sendKeepalive).toBe(
      true,
    );
    expect(decideTimers({ ...base, lastRxDataMs: 95_000, lastRxMs: 95_000, lastTxMs: 80_000 }).sendKeepalive).toBe(
      false,
    );
    expect(decideTimers({ ...base, lastRxDataMs: 89_000, lastRxMs: 89_000, lastTxMs: 90_000 }).sendKeepalive).toBe(
      false,
    );
    expect(
      decideTimers({ ...base, lastRxDataMs: 89_000, lastRxMs: 89_000, lastTxMs: 80_000, hasSession: false })
        .sendKeepalive,
    ).toBe(false);
  });
  test("data sent but nothing heard for 15 s: new handshake (the peer may have restarted)", () => {
    expect(decideTimers({ ...base, lastTxDataMs: 84_000, lastTxMs: 84_000, lastRxMs: 80_000 }).initiate).toBe(true);
    expect(decideTimers({ ...base, lastTxDataMs: 90_000, lastTxMs: 90_000, lastRxMs: 80_000 }).initiate).toBe(false);
    expect(decideTimers({ ...base, lastTxDataMs: 84_000, lastTxMs: 84_000, lastRxMs: 85_000 }).initiate).toBe(false);
  });
});
