/**
 * bun test preload (bunfig.toml): removes what an earlier, killed test run left behind —
 * network namespaces, and MariaDB/wolf processes and temp dirs — whose creating process is gone.
 * Fast and silent when nothing is stale; never fails the run (not even without `ip` or root).
 */
import { afterAll } from "bun:test";
import { sweepStaleNamespaces } from "./netns.ts";
import { runCleanupsAsync, sweepStaleRuns } from "./procs.ts";

try {
  const namespaces = sweepStaleNamespaces();
  const runs = sweepStaleRuns();
  if (namespaces.length > 0 || runs.killed.length > 0 || runs.removed.length > 0) {
    console.error(
      `[harness] swept leftovers of killed test runs: ${namespaces.length} namespace(s), ` +
        `${runs.killed.length} process(es), ${runs.removed.length} run dir(s)`,
    );
  }
} catch (err) {
  console.error(`[harness] preload sweep failed: ${err instanceof Error ? err.message : String(err)}`);
}

// `bun test` fires no process "exit" event: whatever a test file left running (namespaces, MariaDB,
// wolf processes) is cleaned up here, once after all files, instead of waiting for the next sweep.
afterAll(() => runCleanupsAsync());
