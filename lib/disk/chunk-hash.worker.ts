/**
 * Hashes chunks off the JS thread that serves the mount: SHA-256 (the chunk's name) and the
 * CRC-32 of each verification block (its header). The data is a SharedArrayBuffer the write-back
 * buffer already lives in, so the chunk is not copied.
 */
import { encodeHeader } from "./chunk-header.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent<{ id: number; sab: SharedArrayBuffer; offset: number; length: number }>) => {
  const { id, sab, offset, length } = event.data;
  try {
    const data = new Uint8Array(sab, offset, length);
    const hash = new Bun.CryptoHasher("sha256").update(data).digest("hex");
    const header = encodeHeader(hash, data);
    self.postMessage({ id, hash, header }); // a few hundred bytes: copied
  } catch (err) {
    self.postMessage({ id, error: (err as Error).message });
  }
};
