/**
 * Metadata of one drive = checkpoint + journal. `commit(op)` appends the op to the journal and
 * applies it to the materialised state; `sync()` makes every committed op durable. A checkpoint
 * (the whole state, written to a temp file, fsync'd and renamed) is taken when the journal grows
 * past a threshold and at clean shutdown, so a restart replays only the journal since then.
 *
 * Layout: <dir>/checkpoint, <dir>/journal-<seq>.log
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { fsyncDir, writeFileAtomic } from "../common/files.ts";
import { logger } from "../common/log.ts";
import { Journal } from "./journal.ts";
import { type MetaOp, MetaState, type Time } from "./meta-state.ts";

const log = logger("disk:meta");
const CHECKPOINT_MAGIC = "wolf-disk-checkpoint v1";

export interface MetadataOptions {
  /** Chunk size of a new drive (an existing drive keeps its own). */
  chunkSize?: number;
  /** Take a checkpoint once the journal holds this many bytes. */
  checkpointBytes?: number;
  now?: () => Time;
  /** Recovery: whether a journal record past the last completed sync is whole (see Journal.open). */
  check?: (op: MetaOp) => boolean;
}

export function nowTime(): Time {
  const ms = Date.now();
  const ns = process.hrtime.bigint() % 1_000_000n; // sub-millisecond part, for distinct mtimes
  return [Math.floor(ms / 1000), (ms % 1000) * 1_000_000 + Number(ns)];
}

function readCheckpoint(path: string): { seq: number; state: MetaState } | undefined {
  if (!existsSync(path)) return undefined;
  const buf = readFileSync(path);
  const nl = buf.indexOf(10);
  const head = buf.subarray(0, nl).toString();
  const m = /^wolf-disk-checkpoint v1 seq=(\d+) len=(\d+) crc=(\d+)$/.exec(head);
  const body = buf.subarray(nl + 1);
  if (!m || body.length !== Number(m[2]) || Bun.hash.crc32(body) >>> 0 !== Number(m[3])) {
    throw new Error(
      `metadata checkpoint ${path} is damaged; refusing to guess (restore it from a backup or another node)`,
    );
  }
  return { seq: Number(m[1]), state: MetaState.deserialize(body.toString()) };
}

function checkpointHead(seq: number, body: Buffer): string {
  return `${CHECKPOINT_MAGIC} seq=${seq} len=${body.length} crc=${Bun.hash.crc32(body) >>> 0}\n`;
}

function writeCheckpointSync(dir: string, seq: number, state: MetaState): void {
  const body = Buffer.from(state.serialize());
  writeFileAtomic(join(dir, "checkpoint"), Buffer.concat([Buffer.from(checkpointHead(seq, body)), body]));
}

export class Metadata {
  private checkpointing?: Promise<void>;
  private readonly checkpointBytes: number;
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly state: MetaState,
    readonly journal: Journal,
    opts: MetadataOptions,
  ) {
    this.checkpointBytes = opts.checkpointBytes ?? 64 * 1024 * 1024;
  }

  /** Opens (or creates) the metadata in `dir`: loads the checkpoint and replays the journal. */
  static open(dir: string, opts: MetadataOptions): Metadata {
    mkdirSync(dir, { recursive: true });
    const started = performance.now();
    const cp = readCheckpoint(join(dir, "checkpoint"));
    const state = cp?.state ?? MetaState.fresh(opts.chunkSize ?? 4 * 1024 * 1024, (opts.now ?? nowTime)());
    if (cp && opts.chunkSize !== undefined && state.chunkSize !== opts.chunkSize) {
      log.warn(
        `drive uses ${state.chunkSize / 1024} KiB chunks; keeping that (configured ${opts.chunkSize / 1024} KiB applies to new drives)`,
      );
    }
    // A new drive gets its checkpoint at once: it records the chunk size and the root for good.
    if (!cp) writeCheckpointSync(dir, 0, state);
    let replayed = 0;
    const check = opts.check;
    const journal = Journal.open(
      dir,
      cp?.seq ?? 0,
      (rec) => {
        state.apply(rec.op);
        replayed++;
      },
      check && ((rec) => check(rec.op)),
    );
    log.debug(
      `metadata loaded: ${state.inodes.size} inodes, checkpoint seq ${cp?.seq ?? 0}, ${replayed} journal ops replayed in ${Math.round(performance.now() - started)} ms`,
    );
    return new Metadata(dir, state, journal, opts);
  }

  get seq(): number {
    return this.journal.lastSeq;
  }

  /** Appends `op` to the journal and applies it. Durable after the next `sync()`. */
  commit(op: MetaOp): number {
    if (this.closed) throw new Error("metadata is closed");
    const seq = this.journal.append(op);
    this.state.apply(op);
    if (this.journal.segmentBytes >= this.checkpointBytes && !this.checkpointing) {
      this.checkpointing = this.checkpoint()
        .catch((err) => log.error(`checkpoint failed: ${(err as Error).message}`))
        .finally(() => (this.checkpointing = undefined));
    }
    return seq;
  }

  sync(): Promise<void> {
    return this.journal.sync();
  }

  /** Writes the whole state as a checkpoint and drops the journal segments it covers. */
  async checkpoint(): Promise<void> {
    const seq = this.journal.lastSeq;
    const body = Buffer.from(this.state.serialize());
    const newFirst = this.journal.rotate();
    await this.journal.sync(); // ops up to `seq` (and the chunks they name) are durable before the checkpoint replaces them
    const head = checkpointHead(seq, body);
    // writeFileAtomic's steps, but asynchronous: a large checkpoint must not stall requests.
    const tmp = join(this.dir, "checkpoint.tmp");
    const h = await open(tmp, "w", 0o600);
    try {
      await h.writev([Buffer.from(head), body]);
      await h.sync();
    } finally {
      await h.close();
    }
    await rename(tmp, join(this.dir, "checkpoint"));
    fsyncDir(this.dir);
    this.journal.dropBefore(newFirst);
    log.debug(`checkpoint at seq ${seq}: ${this.state.inodes.size} inodes, ${body.length} bytes`);
  }

  /** Syncs, checkpoints (so the next start is fast) and closes. */
  async close(opts: { checkpoint?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    await this.checkpointing;
    if (opts.checkpoint !== false) await this.checkpoint();
    await this.journal.sync();
    this.closed = true;
    this.journal.close();
    await unlink(join(this.dir, "checkpoint.tmp")).catch(() => {});
  }
}
