/** `wolf scale`: MariaDB replication, failover, MySQL proxy, load balancer. Wiring only. */
import { defineCommand } from "citty";
import { intOption, notBuilt } from "../lib/common/cli.ts";
import { checkHostPort } from "../lib/common/config/schema.ts";
import { configArgs, dataDirArg, initCommand, loadFromArgs, validateCommand } from "../lib/common/config-commands.ts";
import { NotImplementedError, UsageError } from "../lib/common/errors.ts";
import { setLogLevel } from "../lib/common/log.ts";
import type { StatusView } from "../lib/scale/api/views.ts";
import { ScaleClient, formatScaleStatus } from "../lib/scale/client.ts";
import { scaleSchema } from "../lib/scale/config.ts";
import { runDaemon } from "../lib/scale/daemon.ts";
import { scaleInfo } from "../lib/scale/info.ts";

const common = { ...configArgs("scale"), ...dataDirArg };
const json = { json: { type: "boolean", description: "Print JSON" } } as const;
const witnessArg = {
  witness: {
    type: "boolean",
    description: "Run as a witness: votes and stores the log, no MariaDB, never serves ([cluster] witness = true)",
  },
} as const;

async function start(
  args: { config?: string; "data-dir"?: string; bootstrap?: boolean; witness?: boolean },
  join?: string,
): Promise<void> {
  // Checked before the config is read or anything starts: a typo must not wait for MariaDB first.
  const badAddress = join === undefined ? undefined : checkHostPort(join);
  if (badAddress)
    throw new UsageError(
      `wolf scale join: ${badAddress}`,
      "give the [cluster] host:port of a running node, e.g. wolf scale join 10.0.0.2:7654",
    );
  const { file, config } = loadFromArgs(scaleSchema, args);
  if (args.witness) config.cluster.witness = true;
  if (config.proxy.enabled)
    throw new NotImplementedError(
      `${file}: proxy.enabled = true (the MySQL proxy)`,
      "set proxy.enabled = false for now",
    );
  if (!process.env.WOLF_LOG_LEVEL) setLogLevel(config.node.log_level);
  const code = await runDaemon({ config, configFile: file, bootstrap: args.bootstrap, join });
  process.exit(code);
}

export const scaleCommand = defineCommand({
  meta: { name: "scale", description: "MariaDB replication, failover, MySQL proxy and load balancer" },
  subCommands: {
    init: initCommand(scaleSchema, {
      args: { "node-id": { type: "string", description: "This node's ID (1-1023)", valueHint: "N" }, ...witnessArg },
      overrides: (args) => ({
        cluster: {
          ...(args["node-id"] === undefined
            ? {}
            : { node_id: intOption("--node-id", args["node-id"], { min: 1, max: 1023 }) }),
          ...(args.witness ? { witness: true } : {}),
        },
      }),
    }),
    validate: validateCommand(scaleSchema),
    start: defineCommand({
      meta: { name: "start", description: "Run this node (replication, API)" },
      args: {
        ...common,
        bootstrap: { type: "boolean", description: "Start a new cluster with this node as its first leader" },
        ...witnessArg,
      },
      run: ({ args }) => start(args),
    }),
    join: defineCommand({
      meta: { name: "join", description: "Run this node and join an existing cluster through one of its nodes" },
      args: {
        ...common,
        address: {
          type: "positional",
          description: "host:port of a cluster node (its [cluster] port)",
          required: true,
        },
        ...witnessArg,
      },
      run: ({ args }) => start(args, args.address),
    }),
    status: defineCommand({
      meta: { name: "status", description: "Show this node's status (from the running daemon)" },
      args: { ...configArgs("scale"), ...json },
      async run({ args }) {
        const { file, config } = loadFromArgs(scaleSchema, args);
        const s = await new ScaleClient(config, file).get<StatusView>("/status");
        process.stdout.write(`${args.json ? JSON.stringify(s, null, 2) : formatScaleStatus(s)}\n`);
      },
    }),
    info: defineCommand({
      meta: { name: "info", description: "Show this node's configuration, versions and the daemon's state" },
      args: { ...configArgs("scale") },
      async run({ args }) {
        const { file, config } = loadFromArgs(scaleSchema, args);
        process.stdout.write(`${await scaleInfo(file, config)}\n`);
      },
    }),
    proxy: notBuilt("scale proxy", "Run only the MySQL-protocol proxy", "issue: MySQL proxy", {
      ...common,
      listen: { type: "string", description: "host:port to listen on", valueHint: "ADDR" },
    }),
    lb: notBuilt("scale lb", "Run the load balancer in front of the cluster's proxies", "issue: load balancer", {
      ...common,
      listen: { type: "string", description: "host:port to listen on", valueHint: "ADDR" },
      "cluster-name": { type: "string", description: "Cluster to discover", valueHint: "NAME" },
    }),
  },
});
