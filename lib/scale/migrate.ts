/**
 * Migration: a node that cannot continue from the log (its gap was pruned, or it diverged) gets a
 * consistent copy of a healthy node's data and resumes right after the LSN that copy holds.
 *
 * Source (`GET /dump`), a follower: applying is paused, the progress row brought up to the applied
 * LSN, and `mariadb-dump --single-transaction` started; its snapshot is open before it writes the
 * first CREATE DATABASE, so applying resumes as soon as that line went by. The snapshot therefore
 * holds exactly the entries up to that LSN — and `wolfscale.applied` says so inside the dump itself.
 *
 * Source, the leader: its database runs ahead of the log (transactions commit before capture
 * appends them, and in binlog mode clients write to it directly), so no LSN can be fixed before
 * the snapshot. mariadb-dump gets `--master-data=2` instead and reports the snapshot's own binlog
 * position (Binlog_snapshot_file/position, read inside its consistent-snapshot transaction: no
 * global lock). The caller maps that position to the LSN (DumpSource.atSnapshot) before the
 * response starts, and the stream ends by setting the progress row to it (the snapshot's own row
 * lags: the leader moves it lazily).
 *
 * Either way the stream ends with a trailer line, so a cut transfer is never mistaken for a
 * complete one.
 *
 * Target: drops its own databases, loads the stream with sql_log_bin = 0, checks the trailer and
 * that the loaded progress row names the announced LSN, then RESET MASTER (its binlog history no
 * longer describes its data: from now on its own GTIDs start afresh).
 */
import type { ClusterMembers, Lsn, Term } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { PROGRESS_DB } from "./apply/applier.ts";
import { quoteIdent } from "./apply/session.ts";
import type { ScaleConfig } from "./config.ts";
import { clientArgs, withConnection } from "./db.ts";
import type { ConnectOptions } from "./mysql/connection.ts";

const log = logger("scale");
const SYSTEM_DBS = new Set(["mysql", "information_schema", "performance_schema", "sys"]);
const TRAILER = "-- wolf dump complete";
/** mariadb-dump --master-data=2 writes the snapshot's binlog position as this comment, before any data. */
const SNAPSHOT_POSITION = /^-- CHANGE MASTER TO MASTER_LOG_FILE='([^']+)', MASTER_LOG_POS=(\d+);/m;
/** Longest a dump may take to open its snapshot (and the source to map it) before it is given up. */
const START_TIMEOUT_MS = 60_000;

function need(bin: string): string {
  const path = Bun.which(bin);
  if (!path)
    throw new WolfError("io", `${bin} is not installed`, {
      hint: "install the MariaDB client tools (apt-get install mariadb-client)",
    });
  return path;
}

async function userDatabases(connect: ConnectOptions): Promise<string[]> {
  return withConnection(connect, async (c) =>
    (await c.query("SHOW DATABASES")).rows.map((r) => r[0]!).filter((d) => !SYSTEM_DBS.has(d)),
  );
}

export interface DumpMeta {
  lsn: Lsn;
  term: Term;
  members: ClusterMembers;
  node: number;
  /** The stream ends by setting the progress row to `lsn` and this GTID position (the snapshot's own row is behind). */
  progressGtid?: string;
}

export interface BinlogPosition {
  file: string;
  pos: number;
}

/**
 * Where a dump's LSN comes from: fixed before the snapshot (a paused follower), or found from the
 * snapshot's binlog position once mariadb-dump reported it (the leader).
 */
export type DumpSource = { meta: DumpMeta } | { atSnapshot: (pos: BinlogPosition) => Promise<DumpMeta> };

type ChunkReader = { read(): Promise<{ done: true; value?: Uint8Array } | { done: false; value: Uint8Array }> };

/**
 * Reads mariadb-dump's output up to the snapshot position comment (what was read stays in `head`);
 * undefined if the output ended first.
 */
async function readSnapshotPosition(reader: ChunkReader, head: Uint8Array[]): Promise<BinlogPosition | undefined> {
  const dec = new TextDecoder();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return undefined;
    head.push(value);
    text += dec.decode(value, { stream: true });
    const m = SNAPSHOT_POSITION.exec(text);
    if (m) return { file: m[1]!, pos: Number(m[2]) };
    if (/^CREATE DATABASE/m.test(text) || text.length > 1_048_576) {
      throw new WolfError("io", "mariadb-dump did not report its snapshot's binlog position (is the binary log on?)");
    }
  }
}

/** The statement that ends a leader's dump: the progress row names the dump's LSN. */
function progressStatement(meta: DumpMeta): string {
  const gtid = (meta.progressGtid ?? "").replace(/[^0-9,-]/g, "");
  return `\nUPDATE \`${PROGRESS_DB}\`.applied SET lsn = ${meta.lsn}, gtid = '${gtid}', ddl_pending_lsn = NULL, applied_at = NOW(6) WHERE id = 1;\n`;
}

/**
 * Streams the dump as an HTTP response. `resume` is called once the snapshot is open (or on any
 * failure), so the caller's paused applying continues.
 */
export async function dumpResponse(
  db: ScaleConfig["database"],
  connect: ConnectOptions,
  source: DumpSource,
  resume: () => void,
): Promise<Response> {
  const bin = need("mariadb-dump");
  const dbs = await userDatabases(connect);
  const { args, env } = clientArgs(db);
  const atSnapshot = "atSnapshot" in source ? source.atSnapshot : undefined;
  const proc = Bun.spawn(
    [
      bin,
      ...args,
      "--single-transaction",
      ...(atSnapshot ? ["--master-data=2"] : []),
      "--routines",
      "--triggers",
      "--events",
      "--hex-blob",
      "--add-drop-database",
      "--skip-dump-date",
      "--databases",
      ...dbs,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } },
  );
  let resumed = false;
  const resumeOnce = () => {
    if (resumed) return;
    resumed = true;
    clearTimeout(guard);
    resume();
  };
  // A dump that never gets to its first database is stuck: do not keep applying paused forever.
  const guard = setTimeout(() => {
    if (!resumed) {
      log.warn(`mariadb-dump did not start dumping within ${START_TIMEOUT_MS / 1000} s; killing it`);
      proc.kill();
      resumeOnce();
    }
  }, START_TIMEOUT_MS);
  const failure = async (what: string): Promise<string> => {
    const code = await proc.exited;
    const err = code === 0 ? "" : (await new Response(proc.stderr).text()).trim().slice(0, 500);
    return err ? `${what}: mariadb-dump failed (exit ${code}): ${err}` : what;
  };
  const reader: ChunkReader = proc.stdout.getReader();
  const head: Uint8Array[] = [];
  let meta: DumpMeta;
  try {
    if (atSnapshot) {
      const pos = await readSnapshotPosition(reader, head);
      if (!pos)
        throw new WolfError(
          "io",
          await failure("mariadb-dump ended before it reported its snapshot's binlog position"),
        );
      meta = await atSnapshot(pos);
    } else meta = (source as { meta: DumpMeta }).meta;
  } catch (err) {
    proc.kill();
    resumeOnce();
    throw err;
  }
  const started = Date.now();
  let bytes = 0;
  let tail = "";
  const dec = new TextDecoder();
  const pass = (chunk: Uint8Array, controller: ReadableStreamDefaultController<Uint8Array>) => {
    bytes += chunk.length;
    if (!resumed) {
      tail = (tail + dec.decode(chunk, { stream: true })).slice(-65_536);
      if (/^CREATE DATABASE/m.test(tail)) resumeOnce();
    }
    controller.enqueue(chunk);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const queued = head.shift();
        if (queued) return pass(queued, controller);
        const { done, value } = await reader.read();
        if (!done) return pass(value, controller);
        const code = await proc.exited;
        resumeOnce();
        if (code !== 0) throw new WolfError("io", await failure("the dump broke"));
        if (meta.progressGtid !== undefined) controller.enqueue(new TextEncoder().encode(progressStatement(meta)));
        controller.enqueue(new TextEncoder().encode(`\n${TRAILER} at LSN ${meta.lsn}\n`));
        controller.close();
        log.info(`dump at LSN ${meta.lsn}: ${bytes} bytes in ${Date.now() - started} ms`);
      } catch (err) {
        resumeOnce();
        proc.kill();
        log.warn(`dump failed: ${(err as Error).message}`);
        controller.error(err);
      }
    },
    cancel() {
      proc.kill();
      resumeOnce();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "application/sql",
      "x-wolf-lsn": String(meta.lsn),
      "x-wolf-term": String(meta.term),
      "x-wolf-node": String(meta.node),
      "x-wolf-members": JSON.stringify(meta.members),
    },
  });
}

/** Replaces the local databases with the dump stream; returns the bytes loaded. */
export async function loadDump(
  db: ScaleConfig["database"],
  connect: ConnectOptions,
  body: ReadableStream<Uint8Array>,
  lsn: Lsn,
): Promise<number> {
  const bin = need("mariadb");
  const existing = await userDatabases(connect);
  await withConnection(connect, async (c) => {
    await c.query("SET SESSION sql_log_bin = 0");
    for (const d of existing) await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(d)}`);
  });
  const { args, env } = clientArgs(db);
  const proc = Bun.spawn([bin, ...args, "--binary-mode", "--init-command=SET SESSION sql_log_bin=0"], {
    stdin: "pipe",
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  let bytes = 0;
  let tail = "";
  const dec = new TextDecoder();
  try {
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      tail = (tail + dec.decode(chunk, { stream: true })).slice(-256);
      proc.stdin.write(chunk);
      await proc.stdin.flush();
    }
  } catch (err) {
    proc.kill();
    throw new WolfError(
      "network",
      `the dump transfer broke after ${bytes} bytes: ${(err as Error).message}; run migrate again`,
    );
  } finally {
    await proc.stdin.end();
  }
  const code = await proc.exited;
  if (code !== 0)
    throw new WolfError(
      "io",
      `loading the dump failed (exit ${code}): ${(await new Response(proc.stderr).text()).trim().slice(0, 500)}`,
    );
  if (!tail.includes(TRAILER))
    throw new WolfError("network", `the dump ended early (${bytes} bytes, no completion trailer); run migrate again`);
  await withConnection(connect, async (c) => {
    const row = (await c.queryObjects(`SELECT lsn FROM ${PROGRESS_DB}.applied WHERE id = 1`))[0];
    if (!row || Number(row.lsn) !== lsn)
      throw new WolfError(
        "protocol",
        `the dump's progress row says LSN ${row?.lsn ?? "(none)"}, the source announced ${lsn}`,
      );
    await c.query("RESET MASTER");
  });
  return bytes;
}
