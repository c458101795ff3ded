/**
 * wolf: one binary for scale (MariaDB replication), disk (FUSE + S3), net (mesh VPN) and ctl.
 * Compiled with --bytecode (CommonJS output): no top-level await here.
 */
import "../lib/common/color-env.ts";
import { defineCommand } from "citty";
import { version } from "../package.json";
import { installCrashHandlers, runCli } from "../lib/common/cli.ts";
import { ctlCommand } from "./ctl.ts";
import { diskCommand } from "./disk.ts";
import { internalCommand } from "./internal.ts";
import { netCommand } from "./net.ts";
import { scaleCommand } from "./scale.ts";

const main = defineCommand({
  meta: { name: "wolf", version, description: "Turn a few bare Linux servers into a cluster" },
  subCommands: { scale: scaleCommand, disk: diskCommand, net: netCommand, ctl: ctlCommand, internal: internalCommand },
});

installCrashHandlers();
runCli(main, process.argv.slice(2), version).then((code) => {
  // Daemons resolve only when they are done; one-shot commands exit with their code.
  process.exitCode = code;
  if (code !== 0) process.exit(code);
});
