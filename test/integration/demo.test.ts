/**
 * The README's demo command (install/demo.ts, which `bash install/dev.sh demo` runs) works end to
 * end: scale replicates to identical checksums, disk round-trips a tree, net pings over the mesh,
 * and nothing is left behind.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { execArgv, REPO_ROOT } from "../harness/index.ts";

test("the demo runs every step and cleans up", async () => {
  const before = { netns: await listNetns(), mounts: wolfMounts() };
  const r = await execArgv([process.execPath, "install/demo.ts"], { cwd: REPO_ROOT, timeoutMs: 240_000 });
  const out = r.stdout + r.stderr;
  if (r.code !== 0) console.error(`--- demo output (exit ${r.code}) ---\n${out.slice(-6000)}`);
  expect(r.code).toBe(0);
  expect(out).toContain("demo done");
  expect(out).toContain('did you mean "cluster.heartbeat_ms"');
  // scale: every MariaDB ends with the same rows and checksum
  const sums = [...out.matchAll(/MariaDB of node \d: (.*)\(CHECKSUM (\d+)\)/g)].map((m) => `${m[1]}${m[2]}`);
  expect(sums.length).toBe(3);
  expect(new Set(sums).size).toBe(1);
  // disk: the copied tree is identical
  expect(out).toContain("(identical)");
  // net: ping across the overlay and both joined peers listed
  expect(out).toMatch(/3 packets transmitted, 3 received, 0% packet loss/);
  expect(out).toMatch(/^n2\s+10\.0\.10\.2\s/m);
  expect(out).toMatch(/^n3\s+10\.0\.10\.3\s/m);
  expect({ netns: await listNetns(), mounts: wolfMounts() }).toEqual(before);
}, 300_000);

async function listNetns(): Promise<string[]> {
  const r = await execArgv(["ip", "netns", "list"], { timeoutMs: 5000 });
  return r.stdout
    .split("\n")
    .filter((l) => l.startsWith("wt"))
    .sort();
}

function wolfMounts(): string[] {
  return readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .filter((l) => l.includes("fuse.wolf"))
    .sort();
}
