/** `wolf disk`: FUSE distributed filesystem and S3 gateway. Wiring only. */
import { defineCommand } from "citty";
import { notBuilt } from "../lib/common/cli.ts";
import { configArgs, dataDirArg, initCommand, validateCommand } from "../lib/common/config-commands.ts";
import { diskSchema } from "../lib/disk/config.ts";

const ISSUE = "issue 6: FUSE filesystem";
const common = { ...configArgs("disk"), ...dataDirArg };

export const diskCommand = defineCommand({
  meta: { name: "disk", description: "FUSE distributed filesystem with content-addressed chunks and an S3 gateway" },
  subCommands: {
    init: initCommand(diskSchema),
    validate: validateCommand(diskSchema),
    mount: notBuilt("disk mount", "Mount a drive (foreground; SIGINT/SIGTERM unmounts cleanly)", ISSUE, {
      ...common,
      mountpoint: { type: "string", alias: "m", description: "Mount point", valueHint: "PATH" },
      drive: { type: "string", description: "Drive name from [[drives]]", valueHint: "NAME" },
      role: { type: "enum", options: ["auto", "leader", "follower", "client"], description: "Node role" },
    }),
    unmount: notBuilt("disk unmount", "Unmount a drive (also one whose daemon died)", ISSUE, {
      mountpoint: { type: "string", alias: "m", description: "Mount point", valueHint: "PATH", required: true },
    }),
    status: notBuilt("disk status", "Show drives, chunks and usage", ISSUE, common),
  },
});
