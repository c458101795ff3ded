/**
 * wolf: one binary for scale (MariaDB replication), disk (FUSE + S3), net (mesh VPN) and ctl.
 * Subcommands are loaded when used, so `wolf net up` does not load the MariaDB client and
 * `wolf --version` loads nothing.
 */
import "../lib/common/color-env.ts";
import { defineCommand } from "citty";
import { version } from "../package.json";
import { installCrashHandlers, runCli } from "../lib/common/cli.ts";

const main = defineCommand({
  meta: { name: "wolf", version, description: "Turn a few bare Linux servers into a cluster" },
  subCommands: {
    scale: () => import("./scale.ts").then((m) => m.scaleCommand),
    disk: () => import("./disk.ts").then((m) => m.diskCommand),
    net: () => import("./net.ts").then((m) => m.netCommand),
    ctl: () => import("./ctl.ts").then((m) => m.ctlCommand),
    internal: () => import("./internal.ts").then((m) => m.internalCommand),
  },
});

installCrashHandlers();
runCli(main, process.argv.slice(2), version).then((code) => {
  // Daemons resolve only when they are done; one-shot commands exit with their code.
  process.exitCode = code;
  if (code !== 0) process.exit(code);
});
