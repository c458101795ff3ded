/**
 * `wolf internal`: hidden helpers for tests and diagnostics (not part of the product surface).
 */
import { defineCommand } from "citty";
import { startWorker } from "../lib/common/workers.ts";

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

export const internalCommand = defineCommand({
  meta: { name: "internal", description: "Test and diagnostic helpers", hidden: true },
  subCommands: { "worker-check": workerCheck },
});
