/** test/run.ts: the summary line CI reads and the exit code it keeps. */
import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "..", "..", "..");
const dir = mkdtempSync(join(tmpdir(), "wolf-runner-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runWrapper(name: string, body: string): { lastLine: string; code: number | null } {
  const file = join(dir, `${name}.test.ts`);
  writeFileSync(file, `import { test, expect } from "bun:test";\n${body}\n`);
  const r = spawnSync(process.execPath, [join(root, "test", "run.ts"), "--no-build", file], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
  });
  const lines = r.stdout.trim().split("\n");
  return { lastLine: lines[lines.length - 1] ?? "", code: r.status };
}

test("all passing: exit 0 and the counts", () => {
  const r = runWrapper("green", `test("a", () => expect(1).toBe(1));\ntest("b", () => {});\ntest.skip("c", () => {});`);
  expect(r.lastLine).toBe("2 passed, 0 failed, 1 skipped");
  expect(r.code).toBe(0);
});

test("a failure: non-zero exit and it is counted", () => {
  const r = runWrapper("red", `test("a", () => expect(1).toBe(1));\ntest("b", () => expect(1).toBe(2));`);
  expect(r.lastLine).toBe("1 passed, 1 failed, 0 skipped");
  expect(r.code).not.toBe(0);
});

test("a test process that dies without a summary counts as a failure", () => {
  const r = runWrapper("crash", `test("a", () => { process.kill(process.pid, "SIGKILL"); });`);
  expect(r.lastLine).toMatch(/^0 passed, [1-9]\d* failed, 0 skipped$/);
  expect(r.code).not.toBe(0);
});
