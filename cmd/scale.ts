/** `wolf scale`: MariaDB replication, failover, MySQL proxy, load balancer. Wiring only. */
import { defineCommand } from "citty";
import { notBuilt } from "../lib/common/cli.ts";
import { configArgs, dataDirArg, initCommand, validateCommand } from "../lib/common/config-commands.ts";
import { scaleSchema } from "../lib/scale/config.ts";

const ISSUE = "issue 5: replication";
const common = { ...configArgs("scale"), ...dataDirArg };

export const scaleCommand = defineCommand({
  meta: { name: "scale", description: "MariaDB replication, failover, MySQL proxy and load balancer" },
  subCommands: {
    init: initCommand(scaleSchema, {
      args: { "node-id": { type: "string", description: "This node's ID (1-1023)", valueHint: "N" } },
      overrides: (args) => (args["node-id"] ? { cluster: { node_id: Number(args["node-id"]) } } : {}),
    }),
    validate: validateCommand(scaleSchema),
    start: notBuilt("scale start", "Run this node (replication, API, proxy)", ISSUE, {
      ...common,
      bootstrap: { type: "boolean", description: "Start a new cluster with this node as its first leader" },
    }),
    join: notBuilt("scale join", "Join an existing cluster through one of its nodes", ISSUE, {
      ...common,
      address: { type: "positional", description: "host:port of a cluster node", required: true },
    }),
    status: notBuilt("scale status", "Show this node's status", ISSUE, common),
    info: notBuilt("scale info", "Show this node's configuration and versions", ISSUE, common),
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
