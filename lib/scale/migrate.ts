/**
 * Migration: a node that cannot continue from the log (its gap was pruned, or it diverged) gets a
 * consistent copy of a healthy follower's data and resumes right after the LSN that copy holds.
 *
 * Source (`GET /dump`): applying is paused, the progress row brought up to the applied LSN, and
 * `mariadb-dump --single-transaction` started; its snapshot is open before it writes the first
 * CREATE DATABASE, so applying resumes as soon as that line went by. The snapshot therefore holds
 * exactly the entries up to that LSN — and `wolfscale.applied` says so inside the dump itself.
 * The stream ends with a trailer line, so a cut transfer is never mistaken for a complete one.
 *
 * Target: drops its own databases, loads the stream with sql_log_bin = 0, checks the trailer and
 * that the loaded progress row names the announced LSN, then RESET MASTER (its binlog history no
 * longer describes its data: from now on its own GTIDs start afresh).
 */
import type { ClusterMembers, Lsn, Term } from "../cluster/types.ts";
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { PROGRESS_DB } from "./apply/applier.ts";
import type { ScaleConfig } from "./config.ts";
import { clientArgs, withConnection } from "./db.ts";
import type { ConnectOptions } from "./mysql/connection.ts";

const log = logger("scale");
const SYSTEM_DBS = new Set(["mysql", "information_schema", "performance_schema", "sys"]);
const TRAILER = "-- wolf dump complete";

function need(bin: string): string {
  const path = Bun.which(bin);
  if (!path) throw new WolfError("io", `${bin} is not installed`, { hint: "install the MariaDB client tools (apt-get install mariadb-client)" });
  return path;
}

async function userDatabases(connect: ConnectOptions): Promise<string[]> {
  return withConnection(connect, async (c) => (await c.query("SHOW DATABASES")).rows.map((r) => r[0]!).filter((d) => !SYSTEM_DBS.has(d)));
}

export interface DumpMeta {
  lsn: Lsn;
  term: Term;
  members: ClusterMembers;
  node: number;
}

/**
 * Streams the dump as an HTTP response. `resume` is called once the snapshot is open (or on any
 * failure), so the caller's paused applying continues.
 */
export async function dumpResponse(db: ScaleConfig["database"], connect: ConnectOptions, meta: DumpMeta, resume: () => void): Promise<Response> {
  const bin = need("mariadb-dump");
  const dbs = await userDatabases(connect);
  const { args, env } = clientArgs(db);
  const proc = Bun.spawn(
    [bin, ...args, "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", "--add-drop-database", "--skip-dump-date", "--databases", ...dbs],
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
      log.warn("mariadb-dump did not start dumping within 60 s; killing it");
      proc.kill();
      resumeOnce();
    }
  }, 60_000);
  const started = Date.now();
  let bytes = 0;
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      const dec = new TextDecoder();
      let tail = "";
      try {
        for await (const chunk of proc.stdout as unknown as AsyncIterable<Uint8Array>) {
          bytes += chunk.length;
          if (!resumed) {
            tail = (tail + dec.decode(chunk, { stream: true })).slice(-65_536);
            if (/^CREATE DATABASE/m.test(tail)) resumeOnce();
          }
          controller.enqueue(chunk);
        }
        const code = await proc.exited;
        resumeOnce();
        if (code !== 0) {
          const err = (await new Response(proc.stderr).text()).trim();
          throw new WolfError("io", `mariadb-dump failed (exit ${code}): ${err.slice(0, 500)}`);
        }
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
export async function loadDump(db: ScaleConfig["database"], connect: ConnectOptions, body: ReadableStream<Uint8Array>, lsn: Lsn): Promise<number> {
  const bin = need("mariadb");
  const existing = await userDatabases(connect);
  await withConnection(connect, async (c) => {
    await c.query("SET SESSION sql_log_bin = 0");
    for (const d of existing) await c.query(`DROP DATABASE IF EXISTS \`${d.replace(/`/g, "``")}\``);
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
    throw new WolfError("network", `the dump transfer broke after ${bytes} bytes: ${(err as Error).message}; run migrate again`);
  } finally {
    await proc.stdin.end();
  }
  const code = await proc.exited;
  if (code !== 0) throw new WolfError("io", `loading the dump failed (exit ${code}): ${(await new Response(proc.stderr).text()).trim().slice(0, 500)}`);
  if (!tail.includes(TRAILER)) throw new WolfError("network", `the dump ended early (${bytes} bytes, no completion trailer); run migrate again`);
  await withConnection(connect, async (c) => {
    const row = (await c.queryObjects(`SELECT lsn FROM ${PROGRESS_DB}.applied WHERE id = 1`))[0];
    if (!row || Number(row.lsn) !== lsn) throw new WolfError("protocol", `the dump's progress row says LSN ${row?.lsn ?? "(none)"}, the source announced ${lsn}`);
    await c.query("RESET MASTER");
  });
  return bytes;
}
