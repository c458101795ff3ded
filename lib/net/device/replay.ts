/**
 * Sliding-window replay protection for transport counters (RFC 6479 style ring bitmap, as in
 * WireGuard but wider): 4096 bits of ring, so any counter within 4064 of the greatest seen is
 * accepted exactly once and older ones are refused. Call `accept` only after the packet
 * authenticated, so forged packets cannot move the window.
 *
 * The state lives in caller-provided arrays so the data plane can keep it in shared memory.
 * Counters are Numbers: a key is rejected long before 2^53 messages (see session.ts).
 */

export const REPLAY_RING_BITS = 4096;
export const REPLAY_WORDS = REPLAY_RING_BITS / 32;
/** Counters older than (greatest - WINDOW) are refused. */
export const REPLAY_WINDOW = REPLAY_RING_BITS - 32;

export class ReplayWindow {
  /**
   * `ring` has REPLAY_WORDS words; `greatest[0]` is the greatest accepted counter + 1 (0 = none yet),
   * so a fresh all-zero state means "nothing seen".
   */
  constructor(
    readonly ring: Uint32Array = new Uint32Array(REPLAY_WORDS),
    readonly greatest: Float64Array = new Float64Array(1),
  ) {
    if (ring.length !== REPLAY_WORDS) throw new Error(`replay ring needs ${REPLAY_WORDS} words`);
  }

  reset(): void {
    this.ring.fill(0);
    this.greatest[0] = 0;
  }

  /** True if `counter` was not seen before and is not too old; records it. */
  accept(counter: number, limit: number = Number.MAX_SAFE_INTEGER): boolean {
    if (!(counter >= 0) || counter >= limit) return false;
    const ring = this.ring;
    const next = this.greatest[0]!; // greatest + 1
    const block = Math.floor(counter / 32);
    if (counter >= next) {
      // Moving forward: clear the words between the old head and the new one.
      const currentBlock = next === 0 ? -1 : Math.floor((next - 1) / 32);
      const steps = Math.min(block - currentBlock, REPLAY_WORDS);
      for (let i = 1; i <= steps; i++) ring[(currentBlock + i) % REPLAY_WORDS] = 0;
      this.greatest[0] = counter + 1;
    } else if (next - 1 - counter > REPLAY_WINDOW) {
      return false;
    }
    const word = block % REPLAY_WORDS;
    const bit = 1 << (counter % 32);
    const old = ring[word]!;
    if (old & bit) return false;
    ring[word] = old | bit;
    return true;
  }
}
