/**
 * The follower's side of log shipping (the rules are in replication.ts): an append from the leader
 * is checked, stored and acknowledged, and teaches this node the leader's last LSN and commit LSN.
 * Also this node's log epoch, sent with every reply (AppendReply.epoch).
 */
import type { ConsolaInstance as Logger } from "consola";
import type { Configuration } from "./configuration.ts";
import { followerAppend } from "./replication.ts";
import type { AppendReply, AppendRequest, Clock, LogStore, Lsn, Message, NodeId, Rng, Role, Term } from "./types.ts";

/** What the follower's side reads from and does to its node. */
export interface FollowerHost {
  readonly id: NodeId;
  readonly store: LogStore;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly config: Configuration;
  readonly log: Logger;
  term(): Term;
  role(): Role;
  leader(): NodeId | null;
  becomeFollower(term: Term, leader: NodeId | null): void;
  commitLsn(): Lsn;
  applied(): Lsn;
  commitTo(lsn: Lsn): void;
  /** Why this node needs a migration (null: it does not). */
  migrationReason(): string | null;
  requireMigration(reason: string): void;
  /** Needs a migration for its application state only: it still stores entries (markNeedsMigration). */
  storesWhileMigrating(): boolean;
  updateSelfState(): void;
  /** This node's log reached the end of its leader's log (ends recovering after a wipe). */
  caughtUp(): void;
}

export class Follower {
  /** Sent with every append reply; see AppendReply.epoch. */
  private logEpoch = 0;
  /** When the leader this node follows was last heard from (-Infinity: never). */
  lastLeaderContact = -Infinity;
  /** The leader's last LSN, from its latest append. */
  leaderLastLsn: Lsn = 0;
  /** Highest LSN this node's log matches the leader's at. */
  private match: Lsn = 0;

  constructor(private readonly host: FollowerHost) {
    this.newEpoch();
  }

  /** A new log (restored from a dump): the leader must learn where it stands again. */
  newEpoch(): void {
    let e: number;
    do e = Math.floor(this.host.rng() * 2 ** 31);
    while (e === this.logEpoch);
    this.logEpoch = e;
  }

  /** Needs a migration of its log (not only of its application state): it takes no entries. */
  private refusesEntries(): boolean {
    return this.host.migrationReason() !== null && !this.host.storesWhileMigrating();
  }

  /** Tells the leader not to count this node's copy (AppendReply.volatile) when its log does not fsync. */
  private volatile(): { volatile?: true } {
    return this.host.store.durable === false ? { volatile: true } : {};
  }

  /** How far behind the leader this node is (null: no leader to be behind). */
  lag(): number | null {
    return this.host.leader() === null ? null : Math.max(0, this.leaderLastLsn - this.match);
  }

  onAppend(from: NodeId, req: AppendRequest, reply: (m: Message) => void): void {
    const { host } = this;
    const { store } = host;
    const fail = (hintLsn: Lsn, needsMigration?: boolean) =>
      reply({
        type: "append_reply",
        term: host.term(),
        ok: false,
        matchLsn: 0,
        hintLsn,
        needsMigration,
        epoch: this.logEpoch,
        ...this.volatile(),
      } satisfies AppendReply);
    if (req.term < host.term()) return fail(store.lastLsn());
    if (req.term === host.term() && host.role() === "leader") {
      // Two leaders in one term can only happen with quorum off (both sides elected alone).
      // Move both to a fresh term and let a normal election decide.
      host.log.warn(`node ${host.id}: another leader (node ${from}) in term ${host.term()}; stepping down`);
      host.becomeFollower(host.term() + 1, null);
      return fail(store.lastLsn());
    }
    if (req.term > host.term() || host.role() !== "follower" || host.leader() !== from)
      host.becomeFollower(req.term, from);
    this.lastLeaderContact = host.clock.now();
    this.leaderLastLsn = req.leaderLastLsn;
    if (this.refusesEntries()) {
      host.updateSelfState();
      return fail(store.lastLsn(), true);
    }
    const result = followerAppend(store, req, Math.max(host.commitLsn(), host.applied()));
    if (!result.ok) {
      if (req.migrate && result.hintLsn < req.prevLsn) {
        host.requireMigration(`the leader no longer has the entries this node needs (from ${result.hintLsn + 1})`);
      } else if (result.needsMigration) {
        host.requireMigration(`entries this node already committed conflict with leader ${from}`);
      }
      host.updateSelfState();
      return fail(result.hintLsn, this.refusesEntries());
    }
    if (result.truncatedAfter !== null) host.config.onTruncated(result.truncatedAfter);
    host.config.onEntriesAppended(result.appended);
    this.match = result.matchLsn;
    const commit = Math.min(req.commitLsn, result.matchLsn);
    if (commit > host.commitLsn()) host.commitTo(commit);
    // Caught up with the leader's whole log, not just its commit point: a new leader's commit LSN can
    // lag entries that were committed (counting this node's lost copy) before it was elected, but
    // every committed entry is in its log.
    if (result.matchLsn >= req.leaderLastLsn) host.caughtUp();
    host.updateSelfState();
    reply({
      type: "append_reply",
      term: host.term(),
      ok: true,
      matchLsn: result.matchLsn,
      hintLsn: 0,
      epoch: this.logEpoch,
      ...this.volatile(),
    } satisfies AppendReply);
  }
}
