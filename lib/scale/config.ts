/** `scale.toml`: wolf scale (MariaDB replication, proxy, load balancer). */
import { clusterSection } from "../cluster/config.ts";
import {
  apiSection,
  bool,
  checkHostPort,
  checkOptionalAbsolutePath,
  defineSchema,
  type InferFields,
  int,
  nodeSection,
  oneOf,
  section,
  str,
} from "../common/config/index.ts";

const scaleApi = apiSection({ listen: "127.0.0.1:8080" });

export const scaleSchema = defineSchema(
  "scale",
  "wolf scale — MariaDB replication, failover, MySQL proxy and load balancer.",
  {
    node: nodeSection({ dataDir: "/var/lib/wolf/scale" }),
    cluster: clusterSection({ name: "wolf-scale", port: 7654, discoveryPort: 7655 }),
    database: section("The local MariaDB this node manages.", {
      host: str("MariaDB host (ignored when socket is set).", "127.0.0.1"),
      port: int("MariaDB port.", 3306, { min: 1, max: 65535 }),
      socket: str('MariaDB unix socket ("" = use host:port).', "", { check: checkOptionalAbsolutePath }),
      user: str("User with replication and write privileges.", "root"),
      password: str("Password of that user.", "", { secret: true }),
      health_interval_ms: int(
        "How often every node checks its MariaDB (ms); a leader whose MariaDB is down steps down.",
        1000,
        { min: 100 },
      ),
      pool_size: int("Connections the HTTP API keeps to the local MariaDB.", 16, { min: 1, max: 1000 }),
    }),
    wal: section("Write-ahead log of captured transactions.", {
      dir: str('WAL directory ("" = <data_dir>/wal).', "", { check: checkOptionalAbsolutePath }),
      segment_size_mb: int("Size at which a WAL segment is closed and a new one started (MiB).", 64, {
        min: 1,
        max: 4096,
      }),
      fsync: bool("fsync each group commit (turn off only for throwaway data).", true),
      compression: oneOf("Record compression", ["lz4", "none"] as const, "lz4"),
      retention_hours: int("Keep WAL segments at least this many hours (0 = no time limit).", 168, { min: 0 }),
      retention_mb: int("Keep at most this much WAL (MiB, 0 = no size limit); older segments are pruned.", 10_240, {
        min: 0,
      }),
    }),
    replication: section("How writes are captured and acknowledged.", {
      mode: oneOf(
        "wal = wolf manages writes; binlog = capture an existing database's binlog",
        ["wal", "binlog"] as const,
        "wal",
      ),
      ack: oneOf(
        "Followers that must hold a write durably before a client gets OK. none = the leader's own WAL only:\na failover before the followers copied it loses the write. one/majority/all count configured\nfollowers, never just the ones alive (a single-node cluster: every level is the leader's copy).",
        ["none", "one", "majority", "all"] as const,
        "one",
      ),
      ack_timeout_ms: int("Longest a write waits for its acknowledgements before failing (ms).", 5000, { min: 100 }),
      ack_fallback: oneOf(
        'When the ack level is not reached within ack_timeout_ms: "fail" = the write gets an error (it is\ncommitted on the leader, and may or may not survive a failover); "async" = it succeeds, the answer\nnames the level actually reached ("ack": "none"), a warning is logged and\nwolf_scale_ack_fallbacks_total counts it (like semi-sync falling back to async).',
        ["fail", "async"] as const,
        "fail",
      ),
      capture_server_id: int(
        "Replica server id wolf uses to tail the local binlog (0 = 1000000 + node_id); unique among the\nservers and replicas of that MariaDB.",
        0,
        { min: 0, max: 4_294_967_295 },
      ),
      binlog_file: str('binlog mode: binlog file to start from ("" = current).', ""),
      binlog_position: int("binlog mode: position in that file.", 4, { min: 4 }),
      auto_migrate: bool(
        "When this node needs a migration (e.g. it led, crashed, and its MariaDB holds a transaction the cluster never\ngot), copy the leader's data by itself instead of waiting for `wolf ctl scale migrate`. Transactions only\nthis node's MariaDB holds are discarded (they are named in the log first): keep it off in binlog mode if\nclients write to MariaDB directly.",
        false,
      ),
    }),
    api: section(scaleApi.doc, {
      ...scaleApi.fields,
      advertise: str(
        "URL other nodes use to reach this API (writes are forwarded to the leader's API, dumps fetched from a\nhealthy node's). \"\" = http://<listen host, or the cluster advertise address if listening on 0.0.0.0>:<port>.",
        "",
        {
          check: (v) =>
            v === "" || /^https?:\/\/[^\s/]+$/.test(v)
              ? undefined
              : `expected a URL like http://10.0.0.5:8080, got ${JSON.stringify(v)}`,
        },
      ),
    }),
    proxy: section("MySQL-protocol proxy on every node (not built yet).", {
      enabled: bool("Run the proxy (not built yet: must stay false).", false),
      listen: str("Address:port the proxy listens on.", "0.0.0.0:8007", { check: checkHostPort }),
      max_connections: int("Most client connections.", 1000, { min: 1 }),
    }),
    lb: section("Load balancer (`wolf scale lb`, not built yet).", {
      listen: str("Address:port the load balancer listens on.", "0.0.0.0:8008", { check: checkHostPort }),
      health_interval_ms: int("Health-check interval (ms).", 1000, { min: 100 }),
    }),
  },
);

export type ScaleConfig = InferFields<typeof scaleSchema.fields>;
