/** `wolf ctl`: the operator's view of scale, disk and net (talks to the local daemons). Wiring only. */
import { defineCommand } from "citty";
import { notBuilt } from "../lib/common/cli.ts";
import { configArgs } from "../lib/common/config-commands.ts";
import { ctlNetCommands } from "../lib/net/ctl.ts";

// ----- scale ---------------------------------------------------------------------------------
const SCALE = "issue 5: replication";
const scaleArgs = configArgs("scale");
const ctlScale = defineCommand({
  meta: { name: "scale", description: "Operate the wolf scale cluster" },
  subCommands: {
    list: notBuilt("ctl scale list", "List cluster members: ID, status, role, address, LSN, lag", SCALE, {
      ...scaleArgs,
      what: { type: "positional", description: "What to list: servers", required: false, default: "servers" },
    }),
    status: notBuilt("ctl scale status", "Cluster status", SCALE, scaleArgs),
    stats: notBuilt("ctl scale stats", "Live statistics (writes/s, lag)", SCALE, scaleArgs),
    promote: notBuilt("ctl scale promote", "Make a node the leader", SCALE, scaleArgs),
    demote: notBuilt("ctl scale demote", "Make the leader step down", SCALE, scaleArgs),
    "check-config": notBuilt("ctl scale check-config", "Check MariaDB settings needed for replication", SCALE, {
      ...scaleArgs,
      fix: { type: "boolean", alias: "f", description: "Fix what can be fixed" },
    }),
    migrate: notBuilt("ctl scale migrate", "Copy a consistent dump from a healthy node and resume from its LSN", SCALE, {
      ...scaleArgs,
      from: { type: "string", description: "Node ID to copy from", valueHint: "NODE", required: true },
    }),
    "binlog-setup": notBuilt("ctl scale binlog-setup", "Print the config snippet for binlog mode from the current position", SCALE, scaleArgs),
    "tune-mariadb": notBuilt("ctl scale tune-mariadb", "Suggest MariaDB settings", SCALE, {
      ...scaleArgs,
      "dry-run": { type: "boolean", description: "Only print" },
    }),
    reset: notBuilt("ctl scale reset", "Reset this node's replication state", SCALE, {
      ...scaleArgs,
      force: { type: "boolean", description: "Do not ask" },
    }),
    "log-level": notBuilt("ctl scale log-level", "Change the daemon's log level at runtime", SCALE, {
      ...scaleArgs,
      level: { type: "positional", description: "silent|error|warn|info|debug|trace", required: true },
    }),
  },
});

// ----- disk ----------------------------------------------------------------------------------
const DISK = "issue 6: FUSE filesystem";
const diskArgs = configArgs("disk");
const ctlDisk = defineCommand({
  meta: { name: "disk", description: "Operate wolf disk" },
  subCommands: {
    status: notBuilt("ctl disk status", "Drive and cluster status", DISK, diskArgs),
    list: notBuilt("ctl disk list", "List servers", DISK, {
      ...diskArgs,
      what: { type: "positional", description: "What to list: servers", required: false, default: "servers" },
    }),
    stats: notBuilt("ctl disk stats", "Live statistics", DISK, diskArgs),
    scrub: notBuilt("ctl disk scrub", "Verify chunks and repair bad or missing copies", DISK, diskArgs),
  },
});

// ----- net -----------------------------------------------------------------------------------
const ctlNet = defineCommand({
  meta: { name: "net", description: "Operate wolf net" },
  subCommands: ctlNetCommands,
});

export const ctlCommand = defineCommand({
  meta: { name: "ctl", description: "Operator view of scale, disk and net: status, lists, live stats, admin actions" },
  subCommands: { scale: ctlScale, disk: ctlDisk, net: ctlNet },
});
