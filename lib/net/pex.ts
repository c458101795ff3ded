/**
 * Peer announcements inside the mesh: when a node admits a joiner it tells its other peers,
 * so one invite is enough for the joiner to reach everyone.
 *
 * Announcements travel as UDP datagrams over the overlay itself (to PEX_PORT on each peer's overlay
 * address), so they are encrypted and authenticated by the tunnel: the receiving data plane has
 * already checked that the inner source address belongs to the peer that sent it. The source port
 * must be PEX_PORT, which is privileged, so only the wolf daemon (root) on that peer can send one,
 * not any user process there. Trust model: a mesh member may introduce new members (like PEX).
 */
import { parseIPv4 } from "./device/allowedips.ts";
import { decodeKey } from "./device/keys.ts";

export const PEX_PORT = 960;

export interface Announcement {
  type: "peers";
  peers: { name: string; public_key: string; endpoint: string; allowed_ip: string }[];
}

export function encodeAnnouncement(a: Announcement): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(a));
}

/** Parses and validates an announcement; undefined if malformed (never throws). */
export function decodeAnnouncement(data: Uint8Array): Announcement | undefined {
  try {
    const a = JSON.parse(new TextDecoder().decode(data)) as Announcement;
    if (a?.type !== "peers" || !Array.isArray(a.peers) || a.peers.length > 256) return undefined;
    for (const p of a.peers) {
      if (typeof p.public_key !== "string" || typeof p.allowed_ip !== "string" || parseIPv4(p.allowed_ip) === undefined)
        return undefined;
      decodeKey(p.public_key);
      if (typeof p.endpoint !== "string" || (p.endpoint !== "" && !/^[^\s:]+:\d{1,5}$/.test(p.endpoint)))
        return undefined;
      if (typeof p.name !== "string") p.name = "";
    }
    return a;
  } catch {
    return undefined;
  }
}
