/**
 * The leader's capture: tails the local MariaDB's binlog (BinlogCapture) into the cluster log, so
 * every transaction becomes one entry in the leader's term, and tells writers which entry (LSN and
 * term) their transaction got (by GTID), so they can wait for the acknowledgement level before
 * answering.
 */
import type { ClusterNode } from "../cluster/node.ts";
import type { EntryRef } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { BinlogCapture, type CaptureStats } from "./binlog/capture.ts";
import { formatGtid } from "./binlog/events.ts";
import { parseGtidList } from "./binlog/gtid-set.ts";
import type { CapturedTxn } from "./binlog/txn.ts";
import type { ConnectOptions } from "./mysql/connection.ts";

interface GtidWaiter {
  domain: number;
  seq: bigint;
  resolve: (entry: EntryRef) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const RECENT = 65_536;

export class LeaderCapture {
  private readonly capture: BinlogCapture;
  /** Per replication domain: newest captured own sequence number and its entry. */
  private readonly reached = new Map<number, { seq: bigint; entry: EntryRef }>();
  private readonly recent = new Map<string, EntryRef>();
  private waiters: GtidWaiter[] = [];
  private failure: Error | undefined;
  /** Where capture started (every server's GTIDs, per domain) and the entry covering up to there (the marker). */
  private startPos = new Map<number, bigint>();
  private startEntry: EntryRef | undefined;
  /** Called once if capture stops for good while running (the daemon steps down). */
  onFailed?: (err: Error) => void;

  constructor(
    private readonly node: ClusterNode,
    opts: { connect: ConnectOptions; serverId: number; resumeFrom: string; heartbeatMs?: number },
    private readonly onCaptured?: (txn: CapturedTxn, entry: EntryRef) => void,
  ) {
    this.capture = new BinlogCapture({
      connect: opts.connect,
      serverId: opts.serverId,
      resumeFrom: opts.resumeFrom,
      heartbeatMs: opts.heartbeatMs ?? 1000,
      reconnectMs: 200,
      sink: async (data, txn) => {
        const entry = this.node.append(data); // throws NotLeaderError once leadership is gone
        this.noteCaptured(txn, entry);
        await this.node.waitFor(entry, "none");
        return entry.lsn;
      },
    });
  }

  /**
   * Capture starts after `pos`: own transactions up to it are already in the log (at or before
   * `entry`, the marker), so a writer waiting for one of them is answered at once.
   */
  startAt(pos: string, serverId: number, entry: EntryRef): void {
    this.startEntry = entry;
    for (const g of parseGtidList(pos)) {
      this.startPos.set(g.domainId, g.seqNo);
      if (g.serverId === serverId) this.reached.set(g.domainId, { seq: g.seqNo, entry });
    }
  }

  /**
   * The last entry a snapshot of this MariaDB taken at binlog GTID position `pos` holds. The
   * snapshot holds a prefix of the binlog and capture appends in binlog order, so it holds the
   * log's transactions up to the newest one within `pos` (or none since the marker, when every
   * transaction within `pos` predates this capture) and none after. The entries that follow, up to
   * the next captured transaction, carry no SQL (markers, noops, config): it holds those too, and
   * the answer extends over the committed ones, so a restored node starts as close as it can to
   * what it already acknowledged. Waits until capture got that far; throws if capture stops first
   * or the transaction is too old to be remembered exactly.
   */
  async entryThrough(pos: string, timeoutMs: number): Promise<EntryRef> {
    if (!this.startEntry) throw new WolfError("internal", "capture has no start entry (startAt was not called)");
    let last = this.startEntry;
    for (const g of parseGtidList(pos)) {
      const start = this.startPos.get(g.domainId);
      if (start !== undefined && g.seqNo <= start) continue; // in the database before capture started
      const gtid = formatGtid(g);
      await this.entryOf(gtid, timeoutMs);
      const entry = this.recent.get(gtid); // exact: entryOf may answer with a later entry that covers it
      if (!entry)
        throw new WolfError(
          "state",
          `transaction ${gtid} was captured too long ago to map a snapshot to its entry; retry`,
        );
      if (entry.lsn > last.lsn) last = entry;
    }
    if (last === this.startEntry && this.recent.size >= RECENT)
      throw new WolfError("state", "capture ran too far ahead of the snapshot to map it; retry");
    // Synchronous from here: a transaction is appended and noted in one go (the sink).
    // Only over committed ones: the caller waits for the entry to commit, and an uncommitted config
    // entry may need the very node being migrated (it refuses entries meanwhile) to commit. A
    // target whose log went past the dump is relearned by the leader (log epoch), so stopping
    // short is safe.
    let next = Infinity;
    for (const e of this.recent.values()) if (e.lsn > last.lsn && e.lsn < next) next = e.lsn;
    const end = Math.min(next === Infinity ? this.node.lastLsn() : next - 1, this.node.committed());
    return { lsn: Math.max(last.lsn, end), term: last.term };
  }

  get stats(): CaptureStats {
    return this.capture.stats;
  }

  /** The error that stopped capture for good, if it did. */
  get failed(): Error | undefined {
    return this.capture.failed;
  }

  start(): void {
    this.capture.start();
    const watch = setInterval(() => {
      const err = this.capture.failed;
      if (!err) return;
      clearInterval(watch);
      this.fail(err);
      this.onFailed?.(err);
    }, 100);
    this.watch = watch;
  }
  private watch: ReturnType<typeof setInterval> | undefined;

  private noteCaptured(txn: CapturedTxn, entry: EntryRef): void {
    const { domainId, seqNo } = txn.gtid;
    this.reached.set(domainId, { seq: seqNo, entry });
    const key = `${domainId}-${txn.gtid.serverId}-${seqNo}`;
    this.recent.set(key, entry);
    if (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
    this.onCaptured?.(txn, entry);
    if (this.waiters.length === 0) return;
    const keep: GtidWaiter[] = [];
    for (const w of this.waiters) {
      if (w.domain === domainId && w.seq <= seqNo) {
        clearTimeout(w.timer);
        w.resolve(w.seq === seqNo ? entry : (this.recent.get(`${domainId}-${txn.gtid.serverId}-${w.seq}`) ?? entry));
      } else keep.push(w);
    }
    this.waiters = keep;
  }

  /** The entry holding the transaction with this GTID ("d-s-n"), once captured. */
  entryOf(gtid: string, timeoutMs: number): Promise<EntryRef> {
    const m = /^(\d+)-(\d+)-(\d+)$/.exec(gtid);
    if (!m) return Promise.reject(new WolfError("internal", `not a GTID: "${gtid}"`));
    const domain = Number(m[1]);
    const seq = BigInt(m[3]!);
    const known = this.recent.get(gtid);
    if (known !== undefined) return Promise.resolve(known);
    const r = this.reached.get(domain);
    if (r && r.seq >= seq) return Promise.resolve(r.entry); // older than our memory: a later entry covers it
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const w: GtidWaiter = {
        domain,
        seq,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(
            new WolfError(
              "state",
              `transaction ${gtid} was committed on the leader but not captured within ${timeoutMs} ms; outcome unknown`,
            ),
          );
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(
        new WolfError(
          "state",
          `capture stopped before the transaction was in the log (${err.message}); outcome unknown`,
        ),
      );
    }
  }

  async stop(): Promise<void> {
    if (this.watch) clearInterval(this.watch);
    this.fail(new WolfError("state", "this node stopped leading"));
    await this.capture.stop();
  }
}
