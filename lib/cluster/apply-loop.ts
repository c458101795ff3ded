/**
 * Applying committed entries to the FSM, in LSN order, one apply (or applyBatch) at a time: an
 * asynchronous apply holds the next one back until its promise settles. An apply that throws or
 * rejects stops the loop (the node cannot lead and reports applyError) until retry().
 */
import type { ConsolaInstance as Logger } from "consola";
import type { FSM, LogEntry, LogStore, Lsn, NodeId } from "./types.ts";

/** What the apply loop reads from its node. */
export interface ApplyHost {
  readonly id: NodeId;
  commitLsn(): Lsn;
  /** False while the node is stopped or needs a migration. */
  mayApply(): boolean;
}

/** Entries per applyBatch call, and their data bytes (at least one entry). */
const APPLY_BATCH = 64;
const APPLY_BATCH_BYTES = 4 << 20;

export class ApplyLoop {
  /** Highest LSN the FSM applied. */
  applied: Lsn;
  /** The FSM's apply promise has not settled yet. */
  inFlight = false;
  /** Why applying stopped (null: it did not). */
  error: string | null = null;

  constructor(
    private readonly host: ApplyHost,
    private readonly store: LogStore,
    private readonly fsm: FSM,
    private readonly log: Logger,
  ) {
    this.applied = Math.min(fsm.appliedLsn(), store.lastLsn());
  }

  /** Applies what is committed and not applied yet (returns at once while an apply is in flight). */
  run(): void {
    while (!this.inFlight && this.error === null && this.host.mayApply() && this.applied < this.host.commitLsn()) {
      const commitLsn = this.host.commitLsn();
      const from = this.applied + 1;
      const batch =
        this.fsm.applyBatch && commitLsn > from
          ? this.store.range(from, Math.min(commitLsn, from + APPLY_BATCH - 1), APPLY_BATCH_BYTES)
          : undefined;
      const entry = batch ? batch[0] : this.store.get(from);
      if (!entry || entry.lsn !== from) {
        this.error = `entry ${from} is missing from the log`;
        return;
      }
      const last = batch ? batch[batch.length - 1]!.lsn : from;
      let result: void | Promise<void>;
      try {
        result = batch && batch.length > 1 ? this.fsm.applyBatch!(batch) : this.fsm.apply(entry);
      } catch (err) {
        return this.onApplyFailed(from, last, err);
      }
      if (result instanceof Promise) {
        this.inFlight = true;
        result.then(
          () => {
            this.inFlight = false;
            this.applied = last;
            this.run();
          },
          (err) => {
            this.inFlight = false;
            this.onApplyFailed(from, last, err);
          },
        );
        return;
      }
      this.applied = last;
    }
  }

  /**
   * After the cause of an apply error was fixed: clears the error and applies again, starting with
   * the entry that failed. Returns false if there was no apply error.
   */
  retry(): boolean {
    if (this.error === null) return false;
    this.log.info(`node ${this.host.id}: retrying to apply entry ${this.applied + 1}`);
    this.error = null;
    this.run();
    return true;
  }

  /** After a migration: the FSM holds everything up to `lsn`. */
  resetTo(lsn: Lsn): void {
    this.applied = lsn;
    this.error = null;
  }

  /** A (batch) apply of from..last failed: what the FSM reports applied counts, the next one failed. */
  private onApplyFailed(from: Lsn, last: Lsn, err: unknown): void {
    if (last > from) this.applied = Math.max(this.applied, Math.min(last, this.fsm.appliedLsn()));
    const failed = this.store.get(this.applied + 1) ?? {
      lsn: this.applied + 1,
      term: 0,
      kind: "data",
      data: new Uint8Array(0),
    };
    this.onApplyError(failed, err);
  }

  private onApplyError(entry: LogEntry, err: unknown): void {
    this.error = `applying entry ${entry.lsn} failed: ${err instanceof Error ? err.message : String(err)}`;
    this.log.error(`node ${this.host.id}: ${this.error}; this node stops applying until fixed`);
  }
}
