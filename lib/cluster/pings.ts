/**
 * Pings: once per heartbeat every node tells every node it knows what it says about itself
 * (PeerInfo, with its own state as membership.ts defines it); what a node learns from the pings it
 * gets feeds its membership view, and bootstrap_expect forms a new cluster from it.
 */
import type { ConsolaInstance as Logger } from "consola";
import type { Configuration } from "./configuration.ts";
import { type Membership, selfState } from "./membership.ts";
import { lastTerm } from "./replication.ts";
import type { Clock, LogStore, Lsn, NodeId, NodeState, PeerInfo, Ping, Role, Term, Transport } from "./types.ts";

/** What pings read from and do to their node. */
export interface PingHost {
  readonly id: NodeId;
  readonly store: LogStore;
  readonly transport: Transport;
  readonly clock: Clock;
  readonly membership: Membership;
  readonly config: Configuration;
  readonly log: Logger;
  /** NodeOptions.addr, lagEntries and bootstrapExpect. */
  readonly addr: string;
  readonly lagEntries: number;
  readonly bootstrapExpect: number;
  term(): Term;
  role(): Role;
  leader(): NodeId | null;
  commitLsn(): Lsn;
  applied(): Lsn;
  migrationReason(): string | null;
  /** never_leader, or held back (setEligible). */
  neverLeader(): boolean;
  followerLag(): number | null;
  inLease(from: NodeId): boolean;
  becomeFollower(term: Term, leader: NodeId | null): void;
  /** A ping from `id` (the leader starts replicating to a node it did not know). */
  onPeerSeen(id: NodeId, now: number): void;
  bootstrap(voters: { id: NodeId; addr: string }[]): boolean;
}

export class Pings {
  /** What this node reports about itself. */
  state: NodeState;
  /** It was Active since it started (or was last migrated): falling behind is Lagging, not Syncing. */
  everActive = false;

  constructor(private readonly host: PingHost) {
    this.state = host.config.isVoter() ? "Syncing" : "Joining";
  }

  /** A fresh start (migrated): Syncing as a voter, Joining otherwise. */
  reset(): void {
    this.everActive = false;
    this.state = this.host.config.isVoter() ? "Syncing" : "Joining";
  }

  /** Recomputes this node's own state (membership.ts: selfState). */
  update(): void {
    const { host } = this;
    const lag = host.role() === "leader" ? 0 : host.followerLag();
    const s = selfState({
      needsMigration: host.migrationReason() !== null,
      isLeader: host.role() === "leader",
      isVoter: host.config.isVoter(),
      lag,
      lagEntries: host.lagEntries,
      everActive: this.everActive,
      previous: this.state,
    });
    if (s === "Active") this.everActive = true;
    this.state = s;
  }

  private selfInfo(): PeerInfo {
    const { host } = this;
    return {
      id: host.id,
      addr: host.addr,
      state: this.state,
      role: host.role(),
      leader: host.leader(),
      lastLsn: host.store.lastLsn(),
      lastTerm: lastTerm(host.store),
      commitLsn: host.commitLsn(),
      appliedLsn: host.applied(),
      neverLeader: host.neverLeader(),
      voter: host.config.isVoter(),
    };
  }

  /** Something peers act on changed (eligibility): tell them now rather than at the next heartbeat. */
  announce(): void {
    this.update();
    this.send();
  }

  /** Once per heartbeat: tells every node we know (and every voter) about ourselves. */
  send(): void {
    const { host } = this;
    const ping: Ping = { type: "ping", term: host.term(), info: this.selfInfo() };
    const ids = new Set<NodeId>([...host.membership.peers.keys(), ...host.config.otherVoters()]);
    ids.delete(host.id);
    for (const id of ids) host.transport.send(id, ping);
  }

  onPing(from: NodeId, ping: Ping): void {
    const { host } = this;
    if (ping.info.id !== from) return;
    const now = host.clock.now();
    const known = host.membership.peers.has(from);
    host.membership.update(ping.info, now);
    if (ping.info.addr) host.transport.setPeerAddress(from, ping.info.addr);
    if (ping.term > host.term() && !host.inLease(from)) {
      host.becomeFollower(ping.term, ping.info.role === "leader" ? from : null);
    }
    host.onPeerSeen(from, now);
    if (!known) host.log.debug(`node ${host.id}: discovered node ${from}`);
  }

  /** bootstrap_expect: the lowest ID bootstraps once that many fresh nodes see each other. */
  maybeBootstrap(): void {
    const { host } = this;
    const n = host.bootstrapExpect;
    if (n <= 0 || host.store.lastLsn() !== 0 || host.store.base().lsn !== 0 || host.config.latest() !== undefined)
      return;
    const now = host.clock.now();
    const fresh = [host.id];
    for (const [id, p] of host.membership.peers) {
      if (!host.membership.alive(id, now) || !p.info) continue;
      if (p.info.lastLsn > 0 || p.info.voter) return; // an existing cluster: wait to be added instead
      fresh.push(id);
    }
    if (fresh.length < n) return;
    fresh.sort((a, b) => a - b);
    if (fresh[0] !== host.id) return; // the lowest ID bootstraps; the others receive it by replication
    const voters = fresh
      .slice(0, n)
      .map((id) => ({ id, addr: id === host.id ? host.addr : (host.membership.peers.get(id)?.addr ?? "") }));
    host.bootstrap(voters);
  }
}
