/**
 * Time and randomness for the cluster core: the real ones for daemons, and a simulated clock plus
 * a seeded generator so tests replay the exact same schedule from a seed.
 */
import type { Clock, Rng, TimerHandle } from "./types.ts";

/**
 * Wall-clock time. A zero delay means "right after the current turn of the event loop" (the group
 * commit flush, commit pushes): setImmediate, because a 0 ms setTimeout waits about a millisecond,
 * which would be added to every write's latency.
 */
export const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => (ms <= 0 ? { immediate: setImmediate(fn) } : setTimeout(fn, ms)),
  clearTimeout: (handle) => {
    if (typeof handle === "object" && handle !== null && "immediate" in handle) clearImmediate(handle.immediate);
    else clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/** mulberry32: tiny, fast, good enough for schedules and jitter. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface SimEvent {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * Discrete-event simulated time. Events run in (time, insertion order); `runUntil` advances the
 * clock from event to event, so a simulated minute takes milliseconds and never depends on the
 * machine's speed.
 */
export class SimClock implements Clock {
  private time = 0;
  private seq = 0;
  private heap: SimEvent[] = [];
  private live = new Map<number, SimEvent>();
  /** Events executed so far (for test statistics). */
  executed = 0;

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const ev: SimEvent = { at: this.time + Math.max(0, ms), seq: ++this.seq, fn, cancelled: false };
    this.push(ev);
    this.live.set(ev.seq, ev);
    return { id: ev.seq };
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as { id: number }).id;
    const ev = this.live.get(id);
    if (ev) {
      ev.cancelled = true;
      this.live.delete(id);
    }
  }

  /** Runs events until simulated time `until` (inclusive) or until `stop()` returns true. */
  runUntil(until: number, stop?: () => boolean): boolean {
    while (this.heap.length > 0 && this.heap[0]!.at <= until) {
      const ev = this.pop()!;
      if (ev.cancelled) continue;
      this.live.delete(ev.seq);
      this.time = ev.at;
      this.executed++;
      ev.fn();
      if (stop?.()) return true;
    }
    if (this.time < until) this.time = until;
    return stop?.() ?? false;
  }

  runFor(ms: number, stop?: () => boolean): boolean {
    return this.runUntil(this.time + ms, stop);
  }

  private less(a: SimEvent, b: SimEvent): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private push(ev: SimEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): SimEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
