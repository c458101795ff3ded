/**
 * `wolf internal`: hidden helpers for tests and diagnostics (not part of the product surface).
 */
import { defineCommand } from "citty";
import { startWorker } from "../lib/common/workers.ts";
import { runClusterTestNode } from "../lib/cluster/test-node.ts";

const workerCheck = defineCommand({
  meta: {
    name: "worker-check",
    description: "Start the echo worker and round-trip a message (proves Workers are in the bundle)",
  },
  async run() {
    const worker = await startWorker("lib/common/echo.worker.ts");
    const reply = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("echo worker did not answer within 5 s")), 5000);
      worker.onmessage = (event) => {
        clearTimeout(timer);
        resolve(event.data);
      };
      worker.postMessage("ping");
    });
    worker.terminate();
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  },
});

const clusterNode = defineCommand({
  meta: { name: "cluster-node", description: "Run a bare cluster node (JSON lines on stdin/stdout) for tests" },
  args: {
    config: { type: "string", description: "Config file with a [cluster] section", valueHint: "FILE", required: true },
    id: { type: "string", description: "Node ID (overrides cluster.node_id)", valueHint: "N" },
    "data-dir": { type: "string", description: "State directory (overrides node.data_dir)", valueHint: "DIR" },
    bootstrap: { type: "boolean", description: "Start a new single-node cluster" },
  },
  async run({ args }) {
    const code = await runClusterTestNode({
      config: args.config,
      id: args.id,
      dataDir: args["data-dir"],
      bootstrap: args.bootstrap,
    });
    await new Promise<void>((resolve) => process.stdout.write("", () => resolve())); // flush before exiting
    process.exit(code);
  },
});

export const internalCommand = defineCommand({
  meta: { name: "internal", description: "Test and diagnostic helpers", hidden: true },
  subCommands: { "worker-check": workerCheck, "cluster-node": clusterNode },
});
