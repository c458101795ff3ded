/** `wolf scale info`: configuration, versions, and what the running daemon says (if it runs). */
import { version } from "../../package.json";
import { apiUrlOf, localApiUrl } from "./addresses.ts";
import { ScaleClient } from "./client.ts";
import type { ScaleConfig } from "./config.ts";
import { connectOptions, describeDb, withConnection } from "./db.ts";
import { WITNESS_ROLE } from "./witness.ts";

export async function scaleInfo(file: string, cfg: ScaleConfig): Promise<string> {
  const lines = [
    `wolf        ${version} (bun ${Bun.version}, ${process.platform}-${process.arch})`,
    `config      ${file}`,
    `node        id ${cfg.cluster.node_id}, cluster "${cfg.cluster.name}", port ${cfg.cluster.port}, data ${cfg.node.data_dir}`,
    `peers       ${cfg.cluster.peers.length ? cfg.cluster.peers.join(", ") : "(none)"}${cfg.cluster.discovery ? ` + discovery on udp ${cfg.cluster.discovery_port}` : ""}`,
    `api         listen ${cfg.api.listen}, advertised ${apiUrlOf(cfg)}`,
    `replication mode ${cfg.replication.mode}, ack ${cfg.replication.ack} (timeout ${cfg.replication.ack_timeout_ms} ms, fallback ${cfg.replication.ack_fallback}), quorum ${cfg.cluster.quorum}, min_voters ${cfg.cluster.min_voters}`,
    `wal         ${cfg.wal.dir || `${cfg.node.data_dir}/wal`}, segments ${cfg.wal.segment_size_mb} MiB, fsync ${cfg.wal.fsync}, ${cfg.wal.compression}, keep ${cfg.wal.retention_hours} h / ${cfg.wal.retention_mb} MiB`,
  ];
  if (cfg.cluster.witness) {
    // No MariaDB to ask about: [database] is ignored.
    lines.push(`role        ${WITNESS_ROLE}; it leads only for a moment, to hand over to a caught-up database node`);
  } else
    try {
      const v = await withConnection(
        { ...connectOptions(cfg.database), connectTimeoutMs: 3000 },
        async (c) =>
          (
            await c.queryObjects(
              "SELECT @@version AS v, @@server_id AS id, @@log_bin AS lb, @@binlog_format AS bf, @@gtid_binlog_pos AS pos",
            )
          )[0]!,
      );
      lines.push(
        `database    ${describeDb(cfg.database)}: MariaDB ${v.v}, server_id ${v.id}, log_bin ${v.lb}, binlog_format ${v.bf}, GTID ${v.pos || "-"}`,
      );
    } catch (err) {
      lines.push(`database    ${describeDb(cfg.database)}: unreachable (${(err as Error).message})`);
    }
  try {
    const s = await new ScaleClient(cfg, file).get<{ role: string; state: string; term: number; appliedLsn: number }>(
      "/status",
    );
    lines.push(
      `daemon      running at ${localApiUrl(cfg)}: ${s.role}, ${s.state}, term ${s.term}, applied LSN ${s.appliedLsn}`,
    );
  } catch {
    lines.push(`daemon      not running (nothing answers at ${localApiUrl(cfg)})`);
  }
  return lines.join("\n");
}
