import { describe, expect, test } from "bun:test";
import { REPLAY_WINDOW, ReplayWindow } from "../../../lib/net/device/replay.ts";

describe("ReplayWindow", () => {
  test("accepts each counter once, in any order within the window", () => {
    const w = new ReplayWindow();
    for (const c of [0, 1, 2, 5, 3, 4, 100, 50, 99]) expect(w.accept(c)).toBe(true);
    for (const c of [0, 1, 2, 5, 3, 4, 100, 50, 99]) expect(w.accept(c)).toBe(false);
  });

  test("the window is at least 2048 wide and refuses anything older", () => {
    expect(REPLAY_WINDOW).toBeGreaterThanOrEqual(2048);
    const w = new ReplayWindow();
    expect(w.accept(10_000)).toBe(true);
    expect(w.accept(10_000 - REPLAY_WINDOW)).toBe(true);
    expect(w.accept(10_000 - REPLAY_WINDOW - 1)).toBe(false);
    expect(w.accept(10_000 - 2048)).toBe(true);
  });

  test("a big jump clears old bits so a reused ring position is not mistaken for a replay", () => {
    const w = new ReplayWindow();
    for (let c = 0; c < 5000; c++) expect(w.accept(c)).toBe(true);
    expect(w.accept(5000 + 4096)).toBe(true); // same ring position as 5000
    expect(w.accept(5000 + 4096 - 1)).toBe(true);
    expect(w.accept(5000 + 4096)).toBe(false);
  });

  test("refuses counters at or beyond the limit and negative ones", () => {
    const w = new ReplayWindow();
    expect(w.accept(100, 100)).toBe(false);
    expect(w.accept(-1)).toBe(false);
    expect(w.accept(99, 100)).toBe(true);
  });

  test("random order stress: exactly the unique in-window counters are accepted", () => {
    const w = new ReplayWindow();
    const seen = new Set<number>();
    let greatest = -1;
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 20000; i++) {
      const c = Math.max(0, greatest + (rand() % 300) - 200);
      const expected = !seen.has(c) && !(greatest - c > REPLAY_WINDOW);
      expect(w.accept(c)).toBe(expected);
      if (expected) {
        seen.add(c);
        greatest = Math.max(greatest, c);
      }
    }
  });
});
