/** Byte-array helpers shared by the wire formats (Noise, WAL records, the MySQL protocol). */

/** The parts joined into one new array (`total` saves summing the lengths when the caller knows it). */
export function concatBytes(parts: readonly Uint8Array[], total?: number): Uint8Array {
  const out = new Uint8Array(total ?? parts.reduce((sum, p) => sum + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
