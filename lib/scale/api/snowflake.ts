/**
 * Snowflake IDs: 41 bits of milliseconds since 2020-01-01 UTC, 10 bits of node id, 12 bits of
 * sequence within the millisecond. Unique across the cluster (node ids are unique) and increasing
 * per node; if the clock steps back the generator waits for it rather than repeat an ID.
 */
import { WolfError } from "../../common/errors.ts";

const SNOWFLAKE_EPOCH_MS = 1_577_836_800_000;

export class Snowflake {
  private lastMs = -1;
  private seq = 0;

  constructor(
    readonly nodeId: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > 1023)
      throw new WolfError("config", `snowflake node id must be 0-1023, got ${nodeId}`);
  }

  next(): bigint {
    let ms = this.now() - SNOWFLAKE_EPOCH_MS;
    if (ms < this.lastMs) {
      if (this.lastMs - ms > 5000)
        throw new WolfError(
          "state",
          `the clock went back ${this.lastMs - ms} ms; refusing to issue IDs until it catches up`,
        );
      ms = this.lastMs; // small step back: keep issuing from the last millisecond's sequence
    }
    if (ms === this.lastMs) {
      this.seq = (this.seq + 1) & 0xfff;
      // 4096 IDs in this millisecond: borrow the next one (the clock catches up; IDs stay unique).
      if (this.seq === 0) ms = this.lastMs + 1;
    } else {
      this.seq = 0;
    }
    this.lastMs = ms;
    return (BigInt(ms) << 22n) | (BigInt(this.nodeId) << 12n) | BigInt(this.seq);
  }
}

export function parseSnowflake(id: bigint): { ms: number; node: number; seq: number } {
  return { ms: Number(id >> 22n) + SNOWFLAKE_EPOCH_MS, node: Number((id >> 12n) & 0x3ffn), seq: Number(id & 0xfffn) };
}
