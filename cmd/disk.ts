/** `wolf disk`: FUSE distributed filesystem and S3 gateway. Wiring only. */
import { defineCommand } from "citty";
import { NotImplementedError } from "../lib/common/errors.ts";
import { configArgs, dataDirArg, initCommand, loadFromArgs, validateCommand } from "../lib/common/config-commands.ts";
import { setLogLevel } from "../lib/common/log.ts";
import { diskSchema } from "../lib/disk/config.ts";
import { serveDrive } from "../lib/disk/daemon.ts";
import { unmountDrive } from "../lib/disk/mounts.ts";
import { driveStatus, formatStatus } from "../lib/disk/status.ts";

const common = { ...configArgs("disk"), ...dataDirArg };

export const diskCommand = defineCommand({
  meta: { name: "disk", description: "FUSE distributed filesystem with content-addressed chunks and an S3 gateway" },
  subCommands: {
    init: initCommand(diskSchema),
    validate: validateCommand(diskSchema),
    mount: defineCommand({
      meta: {
        name: "mount",
        description: "Mount a drive and serve it in the foreground (SIGINT/SIGTERM unmounts cleanly)",
      },
      args: {
        ...common,
        mountpoint: {
          type: "string",
          alias: "m",
          description: "Mount point (default: the drive's mountpoint)",
          valueHint: "PATH",
        },
        drive: { type: "string", description: "Drive name from [[drives]] (default: the first)", valueHint: "NAME" },
        role: {
          type: "enum",
          options: ["auto", "leader", "follower", "client"],
          description: "Node role (clustering: follower/client not built yet)",
        },
      } as const,
      async run({ args: raw }) {
        const args = raw as {
          config?: string;
          "data-dir"?: string;
          mountpoint?: string;
          drive?: string;
          role?: string;
        };
        const { config } = loadFromArgs(diskSchema, args);
        setLogLevel(config.node.log_level);
        const role = args.role ?? config.storage.role;
        if (role === "follower" || role === "client")
          throw new NotImplementedError(`wolf disk mount --role ${role}`, "clustering issue");
        if (config.s3.enabled)
          throw new NotImplementedError("s3.enabled = true (the S3 gateway)", "set s3.enabled = false for now");
        await serveDrive(config, { mountpoint: args.mountpoint, drive: args.drive });
      },
    }),
    unmount: defineCommand({
      meta: { name: "unmount", description: "Unmount a drive (also one whose daemon died)" },
      args: {
        mountpoint: { type: "string", alias: "m", description: "Mount point", valueHint: "PATH", required: true },
        lazy: { type: "boolean", description: "Detach a busy mount now; it goes away when the last file is closed" },
      } as const,
      async run({ args }) {
        const what = await unmountDrive(args.mountpoint, { lazy: Boolean(args.lazy) });
        const text = {
          unmounted: `unmounted ${args.mountpoint}`,
          "detached-dead": `detached ${args.mountpoint} (its daemon had died; data up to the last fsync is in the drive)`,
          "detached-busy": `detached ${args.mountpoint}; it goes away when the last file is closed`,
        }[what];
        process.stdout.write(`${text}\n`);
      },
    }),
    status: defineCommand({
      meta: { name: "status", description: "Show drives, mounts, chunks and journal" },
      args: { ...common, json: { type: "boolean", description: "Machine-readable output" } } as const,
      run({ args }) {
        const { config } = loadFromArgs(diskSchema, args);
        const list = driveStatus(config);
        process.stdout.write(args.json ? `${JSON.stringify(list, null, 2)}\n` : formatStatus(list));
      },
    }),
  },
});
