import { describe, expect, test } from "bun:test";
import * as lz4js from "lz4js";
import { compressBlock, compressBound, decompressBlock } from "../../../lib/wal/lz4.ts";

/** Deterministic PRNG so failures reproduce. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function sample(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  const alphabet = 1 + Math.floor(rand() * 20);
  for (let i = 0; i < n; i++) b[i] = rand() < 0.2 ? Math.floor(rand() * 256) : Math.floor(rand() * alphabet);
  return b;
}

describe("wal lz4 block codec", () => {
  test("round-trips random data of many sizes through lz4js's decoder", () => {
    const rand = rng(42);
    let compressed = 0;
    for (let it = 0; it < 2000; it++) {
      const src = sample(rand, 1 + Math.floor(rand() * (it % 100 === 0 ? 200_000 : 4000)));
      const dst = new Uint8Array(compressBound(src.length));
      const n = compressBlock(src, dst);
      if (n === 0) continue;
      compressed++;
      expect(n).toBeLessThan(src.length);
      const out = new Uint8Array(src.length);
      expect(lz4js.decompressBlock(dst.subarray(0, n), out, 0, n, 0)).toBe(src.length);
      expect(Buffer.compare(out, src)).toBe(0);
      expect(Buffer.compare(decompressBlock(dst.subarray(0, n), src.length), src)).toBe(0);
    }
    expect(compressed).toBeGreaterThan(600);
  });

  test("long runs and long literals use the 255-continuation bytes correctly", () => {
    const rand = rng(7);
    const src = new Uint8Array(70_000);
    for (let i = 0; i < 1000; i++) src[i] = Math.floor(rand() * 256); // long literal run
    src.fill(9, 1000, 60_000); // long match
    for (let i = 60_000; i < src.length; i++) src[i] = src[i - 30_000]!; // far offsets (< 64 KiB)
    const dst = new Uint8Array(compressBound(src.length));
    const n = compressBlock(src, dst);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(3000);
    expect(Buffer.compare(decompressBlock(dst.subarray(0, n), src.length), src)).toBe(0);
  });

  test("incompressible and tiny inputs are reported as such (stored raw)", () => {
    const rand = rng(1);
    const noise = new Uint8Array(5000).map(() => Math.floor(rand() * 256));
    expect(compressBlock(noise, new Uint8Array(compressBound(noise.length)))).toBe(0);
    expect(compressBlock(new Uint8Array(8), new Uint8Array(64))).toBe(0);
  });

  test("decodes blocks made by lz4js's encoder", () => {
    const rand = rng(3);
    for (let it = 0; it < 200; it++) {
      const src = sample(rand, 100 + Math.floor(rand() * 20_000));
      const dst = new Uint8Array(lz4js.compressBound(src.length));
      const n = lz4js.compressBlock(src, dst, 0, src.length, new Uint32Array(1 << 16));
      if (n === 0) continue;
      expect(Buffer.compare(decompressBlock(dst.subarray(0, n), src.length), src)).toBe(0);
    }
  });

  test("a malformed block is an error, not a wrong answer", () => {
    const src = new Uint8Array(1000).fill(3);
    src.set([1, 2, 3, 4, 5, 6, 7, 8, 9], 991);
    const dst = new Uint8Array(compressBound(src.length));
    const n = compressBlock(src, dst);
    expect(() => decompressBlock(dst.subarray(0, n - 1), src.length)).toThrow(/malformed LZ4/);
    expect(() => decompressBlock(dst.subarray(0, n), src.length + 1)).toThrow(/malformed LZ4/);
    const bad = dst.slice(0, n);
    bad[2] = 0xff; // the first match offset now points before the start
    expect(() => decompressBlock(bad, src.length)).toThrow(/malformed LZ4/);
  });
});
