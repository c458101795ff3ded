/**
 * A node that started with nothing — an empty log and no term, vote or voter set — is either new
 * or had its data directory wiped. Until its log has reached the end of a leader's log it may lack
 * entries its old disk held (and that were counted as stored there), so its votes need backing
 * (Campaign.won). The flag is kept in the StableStore (HardState.recovering), so a crash half-way
 * through catching up does not make the partial log look whole.
 */
import type { ConsolaInstance as Logger } from "consola";
import type { HardState, LogStore, NodeId } from "./types.ts";

export class Recovery {
  private on: boolean;
  /** The StableStore already says so (a restart while recovering): nothing to write at start. */
  private readonly stored: boolean;

  constructor(
    private readonly id: NodeId,
    hs: HardState,
    store: LogStore,
    private readonly log: Logger,
    /** Writes the node's HardState (which carries hardState() below). */
    private readonly persist: () => void,
  ) {
    const blank = hs.term === 0 && hs.committedConfig === null && store.lastLsn() === 0 && store.base().lsn === 0;
    this.stored = hs.recovering === true;
    this.on = this.stored || blank;
  }

  get active(): boolean {
    return this.on;
  }

  /** The node starts: a blank start is remembered before anything else happens. */
  start(): void {
    if (this.on && !this.stored) this.persist();
  }

  /** This node bootstrapped the cluster: its log defines it, there is nothing to recover. */
  end(): void {
    this.on = false;
  }

  /** The log reached the end of a leader's log: votes count normally again. */
  caughtUp(): void {
    if (!this.on) return;
    this.on = false;
    this.persist();
    this.log.info(`node ${this.id}: caught up with the leader's log; voting normally again`);
  }

  /** The HardState field this adds. */
  hardState(): Pick<HardState, "recovering"> {
    return this.on ? { recovering: true } : {};
  }
}
