/** `wolf ctl`: the operator's view of scale, disk and net (talks to the local daemons). Wiring only. */
import { defineCommand } from "citty";
import { notBuilt } from "../lib/common/cli.ts";
import { configArgs } from "../lib/common/config-commands.ts";
import { ctlNetCommands } from "../lib/net/ctl.ts";
import { ctlScaleCommands } from "../lib/scale/ctl.ts";

// ----- scale ---------------------------------------------------------------------------------
const ctlScale = defineCommand({
  meta: { name: "scale", description: "Operate the wolf scale cluster" },
  subCommands: ctlScaleCommands,
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
