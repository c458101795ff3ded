/**
 * Leading: becoming a capturing leader, stopping, and handing leadership over.
 *
 * Becoming leader: wait until every entry before this term is applied, make sure this MariaDB has
 * nothing the cluster lacks (origin.ts), append a marker (API address, own binlog state), then
 * capture from the own binlog position. Losing leadership: stop capture first, then apply again.
 * Handing leadership over (the core's handback to the lowest ID, or an operator's handover): the
 * core first asks us to drain (drainForHandover: no new writes, capture everything committed in
 * our MariaDB), then stops appends and lets the target take over.
 */
import type { ClusterNode } from "../cluster/node.ts";
import type { Role, Term } from "../cluster/types.ts";
import { DaemonClient } from "../common/daemon-client.ts";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { waitUntil } from "../common/wait.ts";
import type { ScaleConfig } from "./config.ts";
import { binlogSnapshot, gtidAtBinlogPosition, gtidBinlogPos } from "./db.ts";
import type { ScaleFsm } from "./fsm.ts";
import { LeaderCapture } from "./leader-capture.ts";
import { encodeMarker, type LeaderMarker } from "./marker.ts";
import type { ConnectOptions } from "./mysql/connection.ts";
import { coverOf, formatOwn, planCaptureStart } from "./origin.ts";
import type { WalLogStore } from "./wal-logstore.ts";

const log = logger("scale");

/** The write path, as a handover drains it and a new leadership renews it. */
export interface WriteGate {
  block(): () => void;
  idle(): Promise<void>;
  renewSessions(): void;
}

export interface LeadershipHost {
  readonly nodeId: number;
  readonly apiUrl: string;
  readonly cfg: ScaleConfig;
  readonly connect: ConnectOptions;
  readonly node: ClusterNode;
  readonly fsm: ScaleFsm;
  readonly store: WalLogStore;
  readonly writes: WriteGate;
  readonly stopped: boolean;
  /** The health check's view of the local MariaDB. */
  readonly dbUp: boolean;
  readonly dbError: string | null;
  markDiverged(message: string): void;
  /** The leader's API URL, if known. */
  leaderApi(): string | undefined;
}

export class Leadership {
  /** Leader and capturing: writes are accepted. */
  ready = false;
  capture: LeaderCapture | undefined;
  private gen = 0;
  private activeGen = -1;

  constructor(private readonly host: LeadershipHost) {}

  /** events.onRoleChange. */
  onRoleChange(role: Role, term: Term): void {
    const gen = ++this.gen;
    if (role === "leader") void this.activate(gen, term);
    else if (this.activeGen >= 0 || this.capture) void this.deactivate();
  }

  private isLeaderIn(gen: number): boolean {
    return gen === this.gen && this.host.node.getRole() === "leader" && !this.host.stopped;
  }

  private async activate(gen: number, term: Term): Promise<void> {
    const { node, fsm, cfg, nodeId } = this.host;
    const t0 = Date.now();
    try {
      // 1. Everything before this term (and our own noop) applied here first. A stand-in leader
      // (held back, e.g. its MariaDB down, or diverged) only catches a node that may lead up and
      // hands over (cluster core); should it become eligible meanwhile, it goes on from here.
      const outcome = await waitUntil(
        () =>
          !this.isLeaderIn(gen)
            ? "lost"
            : !node.isStandIn() && node.applied() >= node.lastLsn() && !fsm.busy
              ? "applied"
              : undefined,
        { timeoutMs: 120_000, intervalMs: 10, what: "the new leader to apply every entry it holds" },
      );
      if (outcome === "lost") return;
      if (!this.host.dbUp) return node.stepDown(`its MariaDB is down: ${this.host.dbError}`);
      // 2. Our MariaDB must hold nothing the cluster lacks, unless we can still capture it now. The
      // check and the start position come from one reading of the binlog (binlogSnapshot): a
      // direct write committed meanwhile is after the start and captured, never in between.
      const snap = await binlogSnapshot(this.host.connect);
      const origin = await fsm.originCheck(snap.state);
      if (!this.isLeaderIn(gen)) return;
      const plan = planCaptureStart(snap, origin);
      if ("diverged" in plan) return this.host.markDiverged(plan.diverged);
      let resume = plan.resume;
      let own = plan.own;
      if (cfg.replication.mode === "binlog" && cfg.replication.binlog_file && !this.logHasData()) {
        resume =
          (await gtidAtBinlogPosition(
            this.host.connect,
            cfg.replication.binlog_file,
            cfg.replication.binlog_position,
          )) ?? "";
        own = formatOwn(coverOf(resume));
        log.info(
          `binlog mode: first capture starts at ${cfg.replication.binlog_file}:${cfg.replication.binlog_position} (GTID ${resume || "beginning"})`,
        );
      }
      if (!this.isLeaderIn(gen)) return;
      if (plan.warning) log.warn(plan.warning);
      // 3. Marker, then capture.
      const marker: LeaderMarker = {
        v: 1,
        node: nodeId,
        term,
        serverId: fsm.serverId,
        api: this.host.apiUrl,
        pos: resume,
        own,
        at: Date.now(),
      };
      const markerEntry = node.append(encodeMarker(marker));
      fsm.enterLazy();
      const capture = new LeaderCapture(
        node,
        {
          connect: this.host.connect,
          serverId: cfg.replication.capture_server_id || 1_000_000 + nodeId,
          resumeFrom: resume,
          heartbeatMs: 1000,
        },
        undefined,
      );
      capture.startAt(resume, fsm.serverId, markerEntry);
      capture.onFailed = (err) => {
        if (!this.isLeaderIn(gen)) return;
        node.setEligible(false, "capture failed");
        setTimeout(() => node.setEligible(true, "capture failed"), 10_000).unref?.();
        node.stepDown(`binlog capture failed: ${err.message}`);
      };
      this.capture = capture;
      this.activeGen = gen;
      capture.start();
      if (!this.isLeaderIn(gen)) return void this.deactivate();
      this.ready = true;
      log.info(
        `node ${nodeId}: leading term ${term}; capturing from GTID ${resume || "(binlog start)"} after ${Date.now() - t0} ms`,
      );
    } catch (err) {
      log.error(`node ${nodeId}: could not start leading: ${(err as Error).message}`);
      if (this.isLeaderIn(gen)) node.stepDown((err as Error).message);
    }
  }

  private async deactivate(): Promise<void> {
    this.ready = false;
    this.activeGen = -1;
    const capture = this.capture;
    this.capture = undefined;
    await capture?.stop();
    this.host.fsm.leaveLazy();
    this.host.writes.renewSessions();
  }

  private logHasData(): boolean {
    const store = this.host.store;
    for (let lsn = store.lastLsn(); lsn > store.base().lsn; lsn--) if (store.get(lsn)?.kind === "data") return true;
    return store.base().lsn > 0;
  }

  /** The local MariaDB went down: no more writes here, and another node should lead. */
  databaseDown(error: string | null): void {
    if (this.host.node.getRole() === "leader") {
      this.ready = false;
      this.host.node.stepDown(`its MariaDB is down: ${error}`);
    }
  }

  /**
   * `wolf ctl scale promote [<id>]` (default: this node): `target` becomes the preferred leader in
   * the replicated config (every node agrees, it survives restarts, the automatic handback goes to
   * it) and leadership moves to it now. `clear`: no preferred leader, back to the lowest eligible
   * ID. Runs on the leader; a follower forwards it there. The answer says what is true: the target
   * leads, or the preference is set and the move is pending (and why).
   */
  async promote(target: number | undefined, clear: boolean): Promise<string> {
    const { node, nodeId } = this.host;
    const to = clear ? null : (target ?? nodeId);
    if (to === nodeId) node.setEligible(true, "demoted");
    if (node.getRole() === "leader") return this.lead(to, undefined);
    const api = this.host.leaderApi();
    if (!api) throw new WolfError("state", "no leader right now; retry shortly");
    const body = await this.askLeader(api, "/admin/promote", clear ? { clear: true } : { to });
    if (to !== null && body.leads)
      await waitUntil(() => node.leader() === to, { timeoutMs: 10_000, what: `node ${nodeId} to follow node ${to}` });
    return body.message;
  }

  /**
   * `wolf ctl scale demote [--to <id>]` on the leader: leadership moves to `to` (default: the most
   * caught-up voter that may lead), and that node becomes the preferred leader, so the automatic
   * handback does not undo it (`promote --clear` goes back to the lowest-ID rule).
   */
  async demote(to: number | undefined): Promise<string> {
    const { node, nodeId } = this.host;
    if (node.getRole() !== "leader") throw new WolfError("state", `node ${nodeId} is not the leader`);
    return this.lead(undefined, to);
  }

  /**
   * On the leader: sets the preferred leader to `prefer` (null: none) or, with `prefer` undefined,
   * to the node the handover goes to (`to`, or the core's choice), and hands over to it now.
   */
  private async lead(prefer: number | null | undefined, to: number | undefined): Promise<string> {
    const { node, nodeId } = this.host;
    const manual = this.host.cfg.cluster.failback === "manual";
    const settle = (p: Promise<void>) =>
      p.then(
        () => null,
        (err: Error) => err.message,
      );
    // promote: the preference is written first (at once, in the normal case), so it is in the log
    // before any handover can finish and travels with it: the target holds it when it takes over.
    let preferred = prefer === undefined ? null : settle(node.setPreferredLeader(prefer));
    const target = prefer === undefined ? to : prefer;
    let moving: number | null = null;
    let refused: string | null = null;
    if (target !== null && target !== nodeId) {
      try {
        moving = node.transferLeadership(target);
      } catch (err) {
        if (prefer === undefined) throw err; // demote: nobody to hand over to
        refused = (err as Error).message;
      }
    }
    const want = prefer === undefined ? moving : prefer;
    // demote: the target is known now; the handover first drains the application (appends are
    // still accepted meanwhile), so the entry is written before leadership moves.
    preferred ??= settle(node.setPreferredLeader(want));
    if (moving === null) {
      const failed = await withTimeout(preferred, 30_000);
      if (failed !== null) throw new WolfError("state", `the preferred leader was not changed: ${failed}`);
      if (want === null)
        return `preferred leader cleared: the lowest eligible ID leads${manual ? " (failback = manual: leadership moves only on a failure or promote/demote)" : " (failback = auto: it takes over by itself once caught up)"}; node ${nodeId} leads now`;
      if (want === nodeId) return `node ${nodeId} leads and is the preferred leader`;
      return `node ${want} is the preferred leader, but leadership did not move: ${refused}; ${manual ? "run promote again once it may lead (failback = manual)" : "it takes over by itself once it may lead and is caught up (failback = auto)"}`;
    }
    const outcome = await waitUntil(
      () => (node.getRole() !== "leader" ? "moved" : node.status().handoverTo === moving ? undefined : "abandoned"),
      { timeoutMs: 60_000, intervalMs: 10, what: `the handover to node ${moving}` },
    );
    const failed = await withTimeout(preferred, 10_000);
    const prefText =
      node.preferredLeader() === want
        ? `node ${want} is the preferred leader`
        : `the preferred leader was not changed (${failed ?? "pending"})`;
    if (outcome === "abandoned")
      return `${prefText}, but the handover was abandoned (node ${moving} did not catch up in time, or the drain failed); node ${nodeId} keeps leading${manual ? "; run promote again (failback = manual)" : "; it is retried automatically (failback = auto)"}`;
    const led = await waitUntil(() => (node.leader() === moving ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 10,
      what: `node ${moving} to lead`,
    }).catch(() => false);
    return led
      ? `node ${moving} leads (term ${node.currentTerm()}); ${prefText}`
      : `node ${nodeId} handed leadership to node ${moving}, which has not taken over yet; ${prefText}`;
  }

  /** Sends an admin request to the leader's API and returns its answer (an error answer throws). */
  private async askLeader(api: string, path: string, body: unknown): Promise<{ message: string; leads?: boolean }> {
    const res = await new DaemonClient({ base: api, token: this.host.cfg.api.admin_token }).send("POST", path, {
      body,
      timeoutMs: 120_000,
    });
    const answer = (await res.json()) as { ok: boolean; message?: string; error?: string };
    if (!answer.ok) throw new WolfError("state", `the leader refused: ${answer.error}`);
    const message = answer.message ?? "";
    return { message, leads: / leads \(term \d+\)/.test(message) };
  }

  /**
   * Leader: hand leadership to `to` (default: the most caught-up follower). The cluster core drains
   * first (drainForHandover), so nothing committed in our MariaDB is left uncaptured. This node
   * stays out of the running for `holdMs` afterwards, so the automatic handback to the lowest ID
   * does not undo an operator's choice at once.
   */
  async handOver(to: number | undefined, holdMs: number): Promise<string> {
    const { node, nodeId } = this.host;
    if (node.getRole() !== "leader") throw new WolfError("state", `node ${nodeId} is not the leader`);
    node.setEligible(false, "demoted");
    let moved = false;
    try {
      const target = node.transferLeadership(to);
      const outcome = await waitUntil(
        () => (node.getRole() !== "leader" ? "moved" : node.status().handoverTo === target ? undefined : "abandoned"),
        { timeoutMs: 60_000, intervalMs: 10, what: `the handover to node ${target}` },
      );
      if (outcome === "abandoned")
        throw new WolfError(
          "state",
          `the handover to node ${target} was abandoned (it did not catch up in time); node ${nodeId} keeps leading`,
        );
      moved = true;
      return `node ${nodeId} handed leadership to node ${target}`;
    } finally {
      if (moved && holdMs > 0) setTimeout(() => node.setEligible(true, "demoted"), holdMs).unref?.();
      else node.setEligible(true, "demoted");
    }
  }

  /**
   * events.prepareHandover: before leadership moves, every transaction committed in our MariaDB
   * must be in the log (otherwise it would be stranded here and this node would diverge). Blocks
   * new API writes, waits for the ones in progress, then for capture to reach the binlog's end.
   * The core refuses appends after this resolves and calls the returned function once the
   * handover is over (moved or abandoned).
   */
  async drainForHandover(target: number): Promise<() => void> {
    const { node, nodeId } = this.host;
    const t0 = Date.now();
    const resume = this.host.writes.block();
    try {
      // A leadership still starting (applying, origin check) finishes first: it appends a marker.
      // A stand-in never starts (activate waits while it stands in): it has nothing to drain.
      await waitUntil(() => this.ready || node.isStandIn() || node.getRole() !== "leader" || this.host.stopped, {
        timeoutMs: 30_000,
        intervalMs: 5,
        what: "this leader to start capturing",
      });
      await this.host.writes.idle();
      const capture = this.capture;
      if (capture && node.getRole() === "leader") {
        const pos = await gtidBinlogPos(this.host.connect);
        await waitUntil(() => !pos || capture.stats.gtidState === pos || capture.failed !== undefined, {
          timeoutMs: 10_000,
          intervalMs: 2,
          what: "capture to reach the end of the binlog",
        });
        if (capture.failed) throw capture.failed;
      }
      log.info(`node ${nodeId}: drained for the handover to node ${target} in ${Date.now() - t0} ms`);
      return resume;
    } catch (err) {
      resume();
      throw err;
    }
  }

  /** Daemon stop: no more writes, capture stopped. */
  async stop(): Promise<void> {
    this.ready = false;
    await this.capture?.stop().catch(() => {});
  }
}

/** The promise's value, or "timed out" once `ms` passed. */
function withTimeout(p: Promise<string | null>, ms: number): Promise<string | null> {
  return Promise.race([p, new Promise<string>((r) => setTimeout(() => r("timed out"), ms).unref?.())]);
}
