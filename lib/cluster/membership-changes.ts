/**
 * Changes to the replicated configuration, on the leader: adding caught-up learners as voters,
 * removing dead voters (down to min_voters) and setting the preferred leader (an operator's
 * choice, ClusterNode.setPreferredLeader). Every change is one config entry, one at a time, and
 * each keeps what it does not change (a voter change keeps `preferred`, a preference change keeps
 * the voters). One per leadership, created with it.
 */
import type { ConsolaInstance as Logger } from "consola";
import type { Configuration } from "./configuration.ts";
import type { Timings } from "./election.ts";
import type { Membership } from "./membership.ts";
import type { Progress } from "./replication.ts";
import type { ClusterMembers, Lsn, NodeId } from "./types.ts";

/** What the voter-set management reads from and does to the leadership it belongs to. */
export interface MembershipChangeHost {
  readonly id: NodeId;
  readonly config: Configuration;
  readonly membership: Membership;
  readonly t: Timings;
  readonly log: Logger;
  readonly opts: { autoJoin: boolean; deadAfterMs: number; minVoters: number };
  /** When this leadership started. */
  readonly since: number;
  /** LSN of this leadership's first entry (its no-op). */
  readonly termStartLsn: Lsn;
  commitLsn(): Lsn;
  progress(): Iterable<Progress>;
  progressOf(id: NodeId): Progress | undefined;
  /** Appends a config entry carrying `members` (effective at once, as every config entry). */
  appendConfig(members: ClusterMembers): void;
}

/** Voters plus known nodes that are not voters yet (learners being caught up). */
export function replicationTargets(self: NodeId, config: Configuration, membership: Membership): NodeId[] {
  const ids = new Set(config.otherVoters());
  for (const [id, p] of membership.peers) if (id !== self && p.info && p.lastHeard !== -Infinity) ids.add(id);
  return [...ids];
}

/** `members` with `preferred` set to `id` (null: the key is left out, the lowest-ID rule applies). */
export function withPreferred(members: ClusterMembers, id: NodeId | null): ClusterMembers {
  const { preferred: _old, ...rest } = members;
  return id === null ? rest : { ...rest, preferred: id };
}

/** An operator's preferred-leader change waiting to be written, and the callers waiting for its commit. */
interface PreferenceRequest {
  want: NodeId | null;
  waiters: { resolve: () => void; reject: (err: Error) => void }[];
}

export class MembershipChanges {
  private request: PreferenceRequest | null = null;

  constructor(private readonly host: MembershipChangeHost) {}

  /**
   * Sets the preferred leader (null: none). Resolves once a config entry carrying it is committed;
   * rejects if leadership ends first. A request made while another is pending replaces its value.
   */
  prefer(want: NodeId | null, now: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.request) this.request.want = want;
      else this.request = { want, waiters: [] };
      this.request.waiters.push({ resolve, reject });
      this.manage(now);
    });
  }

  /** The leadership ended: a pending preference change is not going to be written by it. */
  drop(err: Error): void {
    const r = this.request;
    this.request = null;
    for (const w of r?.waiters ?? []) w.reject(err);
  }

  /**
   * Each leader tick (and on a preference request): one config change at a time, each a single
   * change: a preference change first, then adding a caught-up learner as a voter, then removing a
   * voter dead for dead_after_ms while more than min_voters remain. Single-server voter changes: the
   * old and the new voter set share a majority, so a partition that cuts a change in flight cannot
   * elect two leaders. A preference change keeps the voter set (it cannot affect any majority).
   */
  manage(now: number): void {
    const { host } = this;
    const commitLsn = host.commitLsn();
    const latest = host.config.latest();
    if (latest && latest.lsn > commitLsn) return; // a change is still in flight
    // Not before an entry of our own term committed: a config entry a previous leader left
    // uncommitted could otherwise still win later, and two single-node changes from different
    // terms would overlap into voter sets without a common majority (Raft single-server change bug).
    if (commitLsn < host.termStartLsn) return;
    const members = host.config.members();
    const r = this.request;
    if (r) {
      if ((members.preferred ?? null) === r.want) {
        // The latest config carries it and is committed (nothing is in flight).
        this.request = null;
        for (const w of r.waiters) w.resolve();
      } else {
        host.log.info(
          `node ${host.id}: ${r.want === null ? "clearing the preferred leader" : `preferring node ${r.want} as leader`}`,
        );
        return host.appendConfig(withPreferred(members, r.want));
      }
    }
    if (host.opts.autoJoin) {
      for (const pr of host.progress()) {
        if (host.config.isVoter(pr.id) || pr.needsMigration || pr.caughtUpSince === null) continue;
        if (pr.match < commitLsn || now - pr.lastReplyAt > host.t.suspectAfterMs) continue;
        const addr = host.membership.peers.get(pr.id)?.addr ?? "";
        host.log.info(`node ${host.id}: adding node ${pr.id} as a voter`);
        return host.appendConfig({
          ...members,
          voters: [...members.voters, { id: pr.id, addr }].sort((a, b) => a.id - b.id),
        });
      }
    }
    if (members.voters.length <= host.opts.minVoters) return;
    for (const id of host.config.otherVoters()) {
      const pr = host.progressOf(id);
      const heard = Math.max(pr?.lastReplyAt ?? host.since, host.membership.peers.get(id)?.lastHeard ?? -Infinity);
      if (now - heard > host.opts.deadAfterMs) {
        host.log.warn(
          `node ${host.id}: removing node ${id} from the voters (silent for ${Math.round(now - heard)} ms)`,
        );
        // `preferred` stays: if the node returns and is added back, it is preferred again.
        return host.appendConfig({ ...members, voters: members.voters.filter((v) => v.id !== id) });
      }
    }
  }
}
