/**
 * LZ4 block format (no frame), encoder and decoder; lz4js (the dependency) checks compatibility in
 * the tests.
 *
 * lz4js's own compressBlock needs its 256 KiB hash table cleared before every call (stale entries
 * produce offset-0 matches), which costs more than compressing a typical 1 KiB transaction. This
 * encoder uses a 4096-entry table tagged with a per-call generation, so nothing is cleared, and it
 * emits the standard block format (last 5 bytes literal, matches end ≥ 12 bytes before the end).
 */

const HASH_LOG = 12;
const HASH_SIZE = 1 << HASH_LOG;
const MIN_MATCH = 4;
const LAST_LITERALS = 5;
const MF_LIMIT = 12;
const MAX_OFFSET = 65535;
const SKIP_TRIGGER = 6;

/** Positions are stored as `generationBase + pos`, so entries from earlier calls are < base. */
const table = new Int32Array(HASH_SIZE);
let generationBase = 0;

export function compressBound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

function hash(seq: number): number {
  return Math.imul(seq, 2654435761) >>> (32 - HASH_LOG);
}

function read32(src: Uint8Array, i: number): number {
  return src[i]! | (src[i + 1]! << 8) | (src[i + 2]! << 16) | (src[i + 3]! << 24);
}

/**
 * Compresses `src` into `dst` (at least compressBound(src.length) bytes). Returns the compressed
 * length, or 0 when the output would not be smaller than the input (store it raw instead).
 */
export function compressBlock(src: Uint8Array, dst: Uint8Array): number {
  const n = src.length;
  if (n < MF_LIMIT + 1) return 0;
  if (generationBase > 0x7fffffff - n - 1) {
    table.fill(-1);
    generationBase = 0;
  }
  const base = generationBase;
  generationBase += n + 1;
  const limit = n - MF_LIMIT; // last position where a match may start
  const matchEnd = n - LAST_LITERALS; // matches must stop here
  let anchor = 0;
  let ip = 1;
  let out = 0;
  table[hash(read32(src, 0))] = base;
  while (ip <= limit) {
    // Find a match, stepping faster over incompressible data.
    let searchCount = 1 << SKIP_TRIGGER;
    let ref = -1;
    for (;;) {
      if (ip > limit) break;
      const seq = read32(src, ip);
      const h = hash(seq);
      const cand = table[h]! - base;
      table[h] = base + ip;
      if (cand >= 0 && cand < ip && ip - cand <= MAX_OFFSET && read32(src, cand) === seq) {
        ref = cand;
        break;
      }
      ip += searchCount++ >> SKIP_TRIGGER;
    }
    if (ref < 0) break;
    // Extend backwards over equal bytes.
    while (ip > anchor && ref > 0 && src[ip - 1] === src[ref - 1]) {
      ip--;
      ref--;
    }
    // Extend forwards.
    let len = MIN_MATCH;
    while (ip + len < matchEnd && src[ip + len] === src[ref + len]) len++;
    const literals = ip - anchor;
    if (out + literals + 8 + Math.floor(literals / 255) + Math.floor(len / 255) >= n) return 0;
    const tokenPos = out++;
    let token = 0;
    if (literals >= 15) {
      token = 0xf0;
      let rest = literals - 15;
      for (; rest >= 255; rest -= 255) dst[out++] = 255;
      dst[out++] = rest;
    } else {
      token = literals << 4;
    }
    dst.set(src.subarray(anchor, ip), out);
    out += literals;
    const offset = ip - ref;
    dst[out++] = offset & 0xff;
    dst[out++] = offset >> 8;
    const ml = len - MIN_MATCH;
    if (ml >= 15) {
      token |= 0x0f;
      let rest = ml - 15;
      for (; rest >= 255; rest -= 255) dst[out++] = 255;
      dst[out++] = rest;
    } else {
      token |= ml;
    }
    dst[tokenPos] = token;
    ip += len;
    anchor = ip;
    if (ip <= limit) table[hash(read32(src, ip - 2))] = base + ip - 2;
  }
  const literals = n - anchor;
  if (out + 1 + literals + Math.floor(literals / 255) + 1 >= n) return 0;
  if (literals >= 15) {
    dst[out++] = 0xf0;
    let rest = literals - 15;
    for (; rest >= 255; rest -= 255) dst[out++] = 255;
    dst[out++] = rest;
  } else {
    dst[out++] = literals << 4;
  }
  dst.set(src.subarray(anchor), out);
  return out + literals;
}

/**
 * Decompresses a block whose decompressed size is known. Every length and offset is bounds-checked,
 * so a malformed block is an error, never a wrong answer (lz4js's decoder pads short input with 0).
 */
export function decompressBlock(src: Uint8Array, rawLength: number): Uint8Array {
  const dst = new Uint8Array(rawLength);
  const fail = (why: string) => new Error(`malformed LZ4 block: ${why}`);
  let ip = 0;
  let op = 0;
  const n = src.length;
  while (ip < n) {
    const token = src[ip++]!;
    let literals = token >> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (ip >= n) throw fail("literal length runs past the end");
        b = src[ip++]!;
        literals += b;
      } while (b === 255);
    }
    if (ip + literals > n) throw fail("literals run past the end of the input");
    if (op + literals > rawLength) throw fail("literals overflow the output");
    dst.set(src.subarray(ip, ip + literals), op);
    ip += literals;
    op += literals;
    if (ip === n) break; // the last sequence has literals only
    if (ip + 2 > n) throw fail("match offset cut short");
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) throw fail(`match offset ${offset} outside the output`);
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        if (ip >= n) throw fail("match length runs past the end");
        b = src[ip++]!;
        len += b;
      } while (b === 255);
    }
    len += MIN_MATCH;
    if (op + len > rawLength) throw fail("match overflows the output");
    if (offset >= len) {
      dst.copyWithin(op, op - offset, op - offset + len);
      op += len;
    } else {
      for (let i = 0; i < len; i++, op++) dst[op] = dst[op - offset]!;
    }
  }
  if (op !== rawLength) throw fail(`${op} bytes instead of ${rawLength}`);
  return dst;
}
