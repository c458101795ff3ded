/**
 * Capture on the leader: tail the local MariaDB's binlog, group events into whole transactions
 * and hand each one, in order, to a sink (the WAL, or the cluster log). The resume position is the
 * GTID state stored inside the newest captured entry, so it is durable exactly when the entry is:
 * after a crash capture continues right after the last transaction that reached the log, never
 * skipping one and never storing one twice.
 */
import { logger } from "../../common/log.ts";
import { sleep } from "../../common/wait.ts";
import type { Wal } from "../../wal/wal.ts";
import { TxnGrouper } from "./grouper.ts";
import { BinlogStream, type BinlogStreamOptions } from "./stream.ts";
import { type CapturedTxn, decodeTxn, encodeTxn } from "./txn.ts";

const log = logger("scale:capture");

/** Stores one encoded transaction; resolves (with its LSN) once durable. Called in order. */
export type CaptureSink = (data: Uint8Array, txn: CapturedTxn) => Promise<number>;

export interface CaptureOptions extends Omit<BinlogStreamOptions, "gtidState"> {
  sink: CaptureSink;
  /** GTID state to continue after (see lastCapturedGtidState); "" = from the oldest binlog. */
  resumeFrom: string;
  /** Appends in flight before capture waits for the sink (group commit needs a few). Default 256. */
  maxInFlight?: number;
  /** Delay before reconnecting after the stream broke (ms). Default 500. */
  reconnectMs?: number;
}

export interface CaptureStats {
  transactions: number;
  events: number;
  bytes: number;
  lastLsn: number;
  gtidState: string;
  connected: boolean;
  reconnects: number;
  lastError?: string;
}

export class BinlogCapture {
  private stream: BinlogStream | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private fatal: Error | undefined;
  private readonly inFlight = new Set<Promise<number>>();
  readonly stats: CaptureStats;

  constructor(private readonly opts: CaptureOptions) {
    this.stats = {
      transactions: 0,
      events: 0,
      bytes: 0,
      lastLsn: 0,
      gtidState: opts.resumeFrom,
      connected: false,
      reconnects: 0,
    };
  }

  /** Starts tailing in the background. A sink failure stops capture (see `failed`). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** The error that stopped capture for good (a sink failure or a refused event). */
  get failed(): Error | undefined {
    return this.fatal;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const grouper = new TxnGrouper(this.stats.gtidState);
      try {
        this.stream = await BinlogStream.open({ ...this.opts, gtidState: this.stats.gtidState });
        this.stats.connected = true;
        for (;;) {
          const raw = await this.stream.next();
          if (!raw) throw new Error("server ended the binlog stream");
          this.stats.events++;
          const txn = grouper.push(raw);
          if (txn) await this.deliver(txn);
        }
      } catch (err) {
        this.stats.connected = false;
        this.stream?.close();
        this.stream = undefined;
        if (!this.running) break;
        const e = err as Error & { code?: string };
        this.stats.lastError = e.message;
        if (this.fatal || (e.code === "protocol" && !/connection|closed/i.test(e.message))) {
          this.fatal ??= e;
          log.error(`capture stopped: ${e.message}`);
          this.running = false;
          break;
        }
        log.warn(`binlog stream broke (${e.message}); reconnecting`);
        this.stats.reconnects++;
        // Entries already handed to the sink stay; the resume point is the last one delivered.
        await sleep(this.opts.reconnectMs ?? 500);
      }
    }
  }

  private async deliver(txn: CapturedTxn): Promise<void> {
    const data = encodeTxn(txn);
    const p = this.opts.sink(data, txn);
    this.stats.gtidState = txn.gtidState;
    this.stats.transactions++;
    this.stats.bytes += data.length;
    this.inFlight.add(p);
    p.then(
      (lsn) => {
        this.inFlight.delete(p);
        if (lsn > this.stats.lastLsn) this.stats.lastLsn = lsn;
      },
      (err: Error) => {
        this.inFlight.delete(p);
        this.fatal ??= err;
        this.running = false;
        this.stream?.close();
      },
    );
    if (this.inFlight.size >= (this.opts.maxInFlight ?? 256)) await Promise.race(this.inFlight).catch(() => {});
    if (this.fatal) throw this.fatal;
  }

  /** Stops tailing; waits for what was handed to the sink. */
  async stop(): Promise<void> {
    this.running = false;
    this.stream?.close();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }
}

/** Resume position from a WAL: the GTID state of the newest captured transaction in it. */
export function lastCapturedGtidState(wal: Wal, kind = 0): string | undefined {
  for (let lsn = wal.lastLsn; lsn >= wal.firstLsn; lsn--) {
    const e = wal.read(lsn, { toLsn: lsn })[0];
    if (e && (e.kind ?? 0) === kind) return decodeTxn(e.data).gtidState;
  }
  return undefined;
}
