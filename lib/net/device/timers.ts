/**
 * WireGuard's per-peer timer rules (whitepaper §6) as one pure decision, evaluated on every tick:
 *  - retransmit an unanswered initiation every REKEY_TIMEOUT (+ up to 333 ms jitter), for at most
 *    REKEY_ATTEMPT_TIME, then give up until traffic asks again;
 *  - start a handshake when the data plane asks (no usable key, or the key is old);
 *  - after receiving data and sending nothing for KEEPALIVE_TIMEOUT, send a keepalive;
 *  - after sending data and hearing nothing for KEEPALIVE + REKEY_TIMEOUT, start a new handshake
 *    (the peer may have restarted and lost our session).
 */
import { KEEPALIVE_TIMEOUT_MS, REKEY_ATTEMPT_TIME_MS, REKEY_TIMEOUT_MS } from "./session.ts";

export interface PeerTimerState {
  nowMs: number;
  lastTxMs: number;
  lastRxMs: number;
  lastTxDataMs: number;
  lastRxDataMs: number;
  /** The data plane asked for a handshake since the last tick. */
  handshakeWanted: boolean;
  /** We sent an initiation and no response completed it yet. */
  initiationInFlight: boolean;
  lastInitiationSentMs: number;
  /** When the current series of attempts started. */
  attemptsStartedMs: number;
  /** A usable session exists (a keepalive can be sent). */
  hasSession: boolean;
  /** Jitter for this retransmission, 0..333 ms. */
  jitterMs: number;
}

export interface TimerActions {
  initiate: boolean;
  sendKeepalive: boolean;
  /** Stop retransmitting: REKEY_ATTEMPT_TIME passed without an answer. */
  giveUp: boolean;
}

export function decideTimers(s: PeerTimerState): TimerActions {
  const actions: TimerActions = { initiate: false, sendKeepalive: false, giveUp: false };
  if (s.initiationInFlight) {
    if (s.nowMs - s.attemptsStartedMs >= REKEY_ATTEMPT_TIME_MS) actions.giveUp = true;
    else if (s.nowMs - s.lastInitiationSentMs >= REKEY_TIMEOUT_MS + s.jitterMs) actions.initiate = true;
  } else {
    if (s.handshakeWanted && s.nowMs - s.lastInitiationSentMs >= REKEY_TIMEOUT_MS) actions.initiate = true;
    const unanswered =
      s.lastTxDataMs > 0 &&
      s.lastTxDataMs > s.lastRxMs &&
      s.nowMs - s.lastTxDataMs >= KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS;
    if (unanswered && s.nowMs - s.lastInitiationSentMs >= KEEPALIVE_TIMEOUT_MS + REKEY_TIMEOUT_MS)
      actions.initiate = true;
  }
  if (
    s.hasSession &&
    s.lastRxDataMs > 0 &&
    s.lastRxDataMs > s.lastTxMs &&
    s.nowMs - s.lastRxDataMs >= KEEPALIVE_TIMEOUT_MS
  ) {
    actions.sendKeepalive = true;
  }
  return actions;
}
