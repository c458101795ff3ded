/**
 * The leader marker: the first data entry a node appends when it starts capturing as leader. It
 * announces where the leader's HTTP API is (followers forward writes there) and records the
 * node's own binlog state at the moment capture starts (see origin.ts). Captured transactions
 * start with their format version (1); a marker starts with 'W' and carries JSON.
 */
import { WolfError } from "../common/errors.ts";

const MAGIC = 0x57; // 'W'

export interface LeaderMarker {
  v: 1;
  node: number;
  term: number;
  /** The leader MariaDB's @@server_id (its GTIDs carry it). */
  serverId: number;
  /** The leader's HTTP API, e.g. http://10.0.0.5:8080. */
  api: string;
  /** GTID position capture starts after. */
  pos: string;
  /** Own state (origin.ts formatOwn) that position accounts for. */
  own: string;
  /** Wall clock (ms) when capture started. */
  at: number;
}

export function isMarker(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === MAGIC;
}

export function encodeMarker(m: LeaderMarker): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(m));
  const out = new Uint8Array(json.length + 1);
  out[0] = MAGIC;
  out.set(json, 1);
  return out;
}

export function decodeMarker(data: Uint8Array): LeaderMarker {
  if (!isMarker(data)) throw new WolfError("protocol", "not a leader marker entry");
  let m: LeaderMarker;
  try {
    m = JSON.parse(new TextDecoder().decode(data.subarray(1))) as LeaderMarker;
  } catch (err) {
    throw new WolfError("protocol", `leader marker entry is not JSON: ${(err as Error).message}`);
  }
  if (
    m.v !== 1 ||
    typeof m.node !== "number" ||
    typeof m.api !== "string" ||
    typeof m.pos !== "string" ||
    typeof m.own !== "string"
  ) {
    throw new WolfError("protocol", "leader marker entry has an unknown shape");
  }
  return m;
}
