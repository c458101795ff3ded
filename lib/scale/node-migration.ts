/**
 * Migration between nodes: the source's side (a consistent dump of this node with the LSN it
 * corresponds to), the target's side (replace this node's data with a healthy node's dump and
 * resume from its LSN), and replication.auto_migrate. The dump and load themselves: migrate.ts.
 */
import type { ClusterNode } from "../cluster/node.ts";
import { termAt } from "../cluster/replication.ts";
import type { ClusterMembers } from "../cluster/types.ts";
import { NotLeaderError } from "../cluster/types.ts";
import { DaemonClient } from "../common/daemon-client.ts";
import { UsageError, WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { waitUntil } from "../common/wait.ts";
import type { ScaleConfig } from "./config.ts";
import { gtidAtBinlogPosition } from "./db.ts";
import type { Directory } from "./directory.ts";
import type { ScaleFsm } from "./fsm.ts";
import type { LeaderCapture } from "./leader-capture.ts";
import { type BinlogPosition, type DumpMeta, dumpResponse, loadDump } from "./migrate.ts";
import type { ConnectOptions } from "./mysql/connection.ts";
import type { WalLogStore } from "./wal-logstore.ts";

const log = logger("scale");

export interface MigrationHost {
  readonly nodeId: number;
  readonly apiUrl: string;
  readonly cfg: ScaleConfig;
  readonly connect: ConnectOptions;
  readonly node: ClusterNode;
  readonly fsm: ScaleFsm;
  readonly store: WalLogStore;
  readonly directory: Directory;
  /** This node's cluster address. */
  readonly address: string;
  readonly stopped: boolean;
  /** Why this node needs a migration, when it does. */
  readonly diverged: string | null;
  /** The leadership: `ready` once it captures. */
  readonly leadership: { readonly ready: boolean; readonly capture: LeaderCapture | undefined };
  clearDiverged(): void;
  /** One registration round with the leader (learns every node's API). */
  registerWithLeader(): Promise<void>;
}

export class NodeMigration {
  private migrating = false;
  private autoMigrateAt = 0;
  private autoMigrateBackoffMs = 0;

  constructor(private readonly host: MigrationHost) {}

  /**
   * Source side: a consistent dump of this node, with the LSN it corresponds to. `after`: the
   * target's last LSN. A follower source first applies that far (as far as its own log goes): the
   * target may have acknowledged those entries, and a dump holding less would drop its copy of
   * them. (A leader's snapshot always covers them: they were captured before the request.)
   */
  async dump(after = 0): Promise<Response> {
    const { node, nodeId } = this.host;
    const s = node.status();
    if (this.host.diverged || s.state === "NeedsMigration")
      throw new WolfError("state", `node ${nodeId} needs a migration itself`);
    if (s.applyError) throw new WolfError("state", `node ${nodeId} stopped applying: ${s.applyError}`);
    if (s.role === "leader") return this.leaderDump();
    const need = Math.min(after, node.lastLsn());
    await waitUntil(() => node.applied() >= need, {
      timeoutMs: 30_000,
      intervalMs: 10,
      what: `node ${nodeId} to apply up to LSN ${need} (the target's last entry)`,
    }).catch(() => {
      throw new WolfError(
        "state",
        `node ${nodeId} has applied only up to LSN ${node.applied()}, behind the target (LSN ${need})`,
        {
          hint: "retry in a moment, or migrate from the leader or another follower",
        },
      );
    });
    const release = await this.host.fsm.pause();
    try {
      const lsn = await this.host.fsm.syncProgress();
      const term = termAt(this.host.store, lsn);
      if (term === undefined) throw new WolfError("state", `entry ${lsn} is no longer in this node's log`);
      return await dumpResponse(
        this.host.cfg.database,
        this.host.connect,
        { meta: { lsn, term, members: this.membersView(), node: nodeId } },
        release,
      );
    } catch (err) {
      release();
      throw err;
    }
  }

  /**
   * The leader's dump. Its MariaDB runs ahead of the log (a transaction commits before capture
   * appends it; in binlog mode clients write to it directly, past anything wolf could block), so
   * an LSN read before the snapshot opens could miss a transaction the snapshot then holds. The
   * snapshot names its own position instead: Binlog_snapshot_file/position, which MariaDB keeps
   * consistent with the InnoDB snapshot (binlog order is commit order). The snapshot holds
   * exactly the binlog up to there; capture appends in binlog order, so that is exactly the log up
   * to the entry of the newest transaction within it, plus the entries without SQL that follow
   * (LeaderCapture.entryThrough). That entry must be committed before it is announced (a target
   * takes it as committed). Writes are not blocked.
   */
  private async leaderDump(): Promise<Response> {
    const { node, nodeId, leadership } = this.host;
    await waitUntil(
      () => (leadership.ready && leadership.capture) || node.getRole() !== "leader" || this.host.stopped,
      {
        timeoutMs: 30_000,
        intervalMs: 10,
        what: "this leader to start capturing",
      },
    );
    const capture = leadership.capture;
    if (!capture || node.getRole() !== "leader")
      throw new NotLeaderError(`node ${nodeId} stopped leading; take the dump from another node`, node.leader());
    const atSnapshot = async ({ file, pos }: BinlogPosition): Promise<DumpMeta> => {
      const gtid = await gtidAtBinlogPosition(this.host.connect, file, pos);
      if (gtid === null)
        throw new WolfError("state", `binlog position ${file}:${pos} of the dump's snapshot is not in the binlog`);
      const entry = await capture.entryThrough(gtid, 30_000);
      // Committed, not "acknowledged by a majority of today's voters": while a voter is added, that
      // majority can need the very nodes being migrated (they refuse entries until loaded).
      await waitUntil(() => node.committed() >= entry.lsn, {
        timeoutMs: 30_000,
        intervalMs: 5,
        what: `entry ${entry.lsn} to commit`,
      });
      if (termAt(this.host.store, entry.lsn) !== entry.term)
        throw new NotLeaderError(
          `entry ${entry.lsn} was replaced (leadership changed); take the dump again`,
          node.leader(),
        );
      log.info(
        `node ${nodeId}: dump snapshot at ${file}:${pos} (GTID ${gtid || "none"}) holds the log up to LSN ${entry.lsn}`,
      );
      return { lsn: entry.lsn, term: entry.term, members: this.membersView(), node: nodeId, progressGtid: gtid };
    };
    return dumpResponse(this.host.cfg.database, this.host.connect, { atSnapshot }, () => {});
  }

  /** Voters with their cluster addresses and the preferred leader (a migrated node starts from them). */
  private membersView(): ClusterMembers {
    const s = this.host.node.status();
    return {
      voters: s.voters.map((id) => ({
        id,
        addr: id === this.host.nodeId ? this.host.address : (s.peers.find((p) => p.id === id)?.addr ?? ""),
      })),
      ...(s.preferredLeader === null ? {} : { preferred: s.preferredLeader }),
    };
  }

  /** replication.auto_migrate: a node that needs a migration copies the leader's data by itself. */
  async autoMigrate(): Promise<void> {
    const { node, nodeId } = this.host;
    if (this.host.stopped || this.migrating || Date.now() < this.autoMigrateAt) return;
    if (this.host.diverged === null && !node.needsMigration()) return;
    const leader = node.leader();
    if (leader === null || leader === nodeId) return;
    const why = this.host.diverged ?? "the leader no longer has the entries it needs, or they conflict";
    log.warn(
      `node ${nodeId}: auto_migrate: copying node ${leader}'s data (${why}); what only this node's MariaDB holds is discarded`,
    );
    try {
      await this.migrateFrom(String(leader));
      this.autoMigrateBackoffMs = 0;
    } catch (err) {
      this.autoMigrateBackoffMs = Math.min(60_000, Math.max(2000, this.autoMigrateBackoffMs * 2));
      this.autoMigrateAt = Date.now() + this.autoMigrateBackoffMs;
      log.error(
        `node ${nodeId}: auto_migrate from node ${leader} failed: ${(err as Error).message}; retrying in ${this.autoMigrateBackoffMs / 1000} s`,
      );
    }
  }

  /** Target side: replace this node's data with a healthy node's dump and resume from its LSN. */
  async migrateFrom(from: string): Promise<string> {
    const { node, nodeId } = this.host;
    if (node.getRole() === "leader")
      throw new WolfError("state", `node ${nodeId} leads; it cannot be migrated (demote it first)`);
    if (this.migrating) throw new WolfError("state", `node ${nodeId} is already being migrated`);
    this.migrating = true;
    try {
      return await this.migrateFromUnguarded(from);
    } finally {
      this.migrating = false;
    }
  }

  private async migrateFromUnguarded(from: string): Promise<string> {
    const { node, nodeId, directory, fsm, cfg } = this.host;
    const isUrl = /^https?:\/\//.test(from);
    if (!isUrl && !directory.get(Number(from))) {
      // Just joined: the API addresses arrive with the next registration round; wait a little.
      await waitUntil(
        async () => {
          await this.host.registerWithLeader();
          return directory.get(Number(from)) !== undefined;
        },
        { timeoutMs: 5000, intervalMs: 250, what: `node ${from}'s API address` },
      ).catch(() => {});
    }
    const url = isUrl ? from.replace(/\/$/, "") : directory.get(Number(from));
    if (!url)
      throw new UsageError(
        `unknown node "${from}"`,
        `known nodes: ${directory
          .all()
          .map((e) => `${e.id} (${e.api})`)
          .join(", ")}; or give the source's API URL`,
      );
    if (url === this.host.apiUrl) throw new UsageError("a node cannot be migrated from itself");
    const after = node.lastLsn();
    node.setEligible(false, "migrating");
    node.markNeedsMigration("an operator is migrating it");
    const release = await fsm.pause();
    const t0 = Date.now();
    try {
      await waitUntil(() => !node.isApplying(), { timeoutMs: 60_000, what: "the entry being applied to finish" });
      const res = await new DaemonClient({ base: url, token: cfg.api.admin_token }).send("GET", `/dump?after=${after}`);
      if (!res.ok || !res.body) {
        const text = await res.text().catch(() => "");
        throw new WolfError("network", `${url}/dump answered ${res.status}: ${text.slice(0, 500)}`);
      }
      const lsn = Number(res.headers.get("x-wolf-lsn"));
      const term = Number(res.headers.get("x-wolf-term"));
      const members = JSON.parse(res.headers.get("x-wolf-members") ?? "null") as ClusterMembers | null;
      if (!Number.isInteger(lsn) || !Number.isInteger(term))
        throw new WolfError("protocol", `${url}/dump sent no LSN/term headers`);
      const bytes = await loadDump(cfg.database, this.host.connect, res.body, lsn);
      node.migrated(lsn, term, members ?? undefined);
      await fsm.reload({ lsn, own: "", pos: "" });
      this.host.clearDiverged();
      const msg = `node ${nodeId} migrated from ${url}: ${bytes} bytes loaded in ${Date.now() - t0} ms; resuming after LSN ${lsn}`;
      log.info(msg);
      return msg;
    } finally {
      release();
      this.host.node.setEligible(true, "migrating");
    }
  }
}
