/**
 * Membership view: who exists, how they are doing, and the thresholds behind each state.
 *
 * Every node pings every node it knows once per heartbeat (default 500 ms); a ping carries what the
 * sender says about itself (PeerInfo). A node's state in anyone's view is:
 *
 *   Offline         not heard from for `offline_after` (10 heartbeats, at most dead_after_ms)
 *   Dropped         not heard from for 3 heartbeats (suspected; not counted as alive)
 *   otherwise       what the node reports about itself:
 *     NeedsMigration  the entries it needs were pruned from the leader's log, or entries it had
 *                     already applied were overwritten (quorum=never split brain); needs a dump
 *     Joining         not (yet) a voter: discovered, being caught up as a learner
 *     Syncing         a voter that has not yet caught up since it started (more than `lag_entries`
 *                     behind the leader's last LSN)
 *     Active          the leader, or a follower within `lag_entries` of the leader's last LSN
 *     Lagging         was Active, now more than `lag_entries` behind
 *
 * A node silent for `dead_after_ms` is removed from the view, and the leader removes it from the
 * voter set (a config entry, one change at a time) while more than `min_voters` remain; quorum is a
 * majority of whatever the voter set is. A removed node that comes back (found again by discovery
 * or a static peer) is caught up as a learner and re-added when it has caught up.
 * Because states are self-reported and liveness thresholds are the same everywhere, every node
 * converges on the same view within a few heartbeats of the last change.
 */
import type { NodeId, NodeState, PeerInfo } from "./types.ts";

export interface MembershipThresholds {
  heartbeatMs: number;
  suspectAfterMs: number;
  offlineAfterMs: number;
  deadAfterMs: number;
}

export function membershipThresholds(heartbeatMs: number, deadAfterMs: number): MembershipThresholds {
  return {
    heartbeatMs,
    suspectAfterMs: 3 * heartbeatMs,
    offlineAfterMs: Math.min(10 * heartbeatMs, deadAfterMs),
    deadAfterMs,
  };
}

export interface PeerRecord {
  id: NodeId;
  addr: string;
  /** Local clock time of the last authenticated message from this node (-Infinity = never). */
  lastHeard: number;
  info: PeerInfo | null;
}

export class Membership {
  readonly peers = new Map<NodeId, PeerRecord>();

  constructor(
    readonly selfId: NodeId,
    readonly t: MembershipThresholds,
  ) {}

  /** A node we were told about (config, discovery, static peer) but may not have heard from. */
  know(id: NodeId, addr: string): PeerRecord {
    let p = this.peers.get(id);
    if (!p) {
      p = { id, addr, lastHeard: -Infinity, info: null };
      this.peers.set(id, p);
    } else if (addr) {
      p.addr = addr;
    }
    return p;
  }

  heard(id: NodeId, now: number): PeerRecord {
    const p = this.know(id, "");
    p.lastHeard = now;
    return p;
  }

  update(info: PeerInfo, now: number): PeerRecord {
    const p = this.heard(info.id, now);
    p.info = info;
    if (info.addr) p.addr = info.addr;
    return p;
  }

  alive(id: NodeId, now: number, withinMs = this.t.suspectAfterMs): boolean {
    if (id === this.selfId) return true;
    const p = this.peers.get(id);
    return p !== undefined && now - p.lastHeard <= withinMs;
  }

  stateOf(id: NodeId, now: number): NodeState {
    const p = this.peers.get(id);
    if (!p || p.lastHeard === -Infinity) return "Offline";
    const silent = now - p.lastHeard;
    if (silent > this.t.offlineAfterMs) return "Offline";
    if (silent > this.t.suspectAfterMs) return "Dropped";
    return p.info?.state ?? "Joining";
  }

  /** Forgets nodes silent for dead_after_ms (except those listed in `keep`, e.g. current voters). */
  prune(now: number, keep: Set<NodeId>): NodeId[] {
    const removed: NodeId[] = [];
    for (const [id, p] of this.peers) {
      if (keep.has(id)) continue;
      const silentSince = p.lastHeard === -Infinity ? undefined : p.lastHeard;
      if (silentSince !== undefined && now - silentSince > this.t.deadAfterMs) {
        this.peers.delete(id);
        removed.push(id);
      }
    }
    return removed;
  }
}

/** What a node reports about itself. */
export function selfState(s: {
  needsMigration: boolean;
  isLeader: boolean;
  isVoter: boolean;
  lag: number | null;
  lagEntries: number;
  everActive: boolean;
  previous: NodeState;
}): NodeState {
  if (s.needsMigration) return "NeedsMigration";
  if (s.isLeader) return "Active";
  if (!s.isVoter) return "Joining";
  if (s.lag === null) return s.previous === "Joining" ? "Syncing" : s.previous; // no leader right now
  if (s.lag <= s.lagEntries) return "Active";
  return s.everActive ? "Lagging" : "Syncing";
}
