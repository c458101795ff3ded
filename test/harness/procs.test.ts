import { afterEach, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { HARNESS_ROOT, execArgv, pidAlive, procStartTime, sweepStaleRuns, terminatePid } from "./procs.ts";

const spawned: Bun.Subprocess[] = [];
const fakeRuns: string[] = [];
afterEach(async () => {
  for (const p of spawned.splice(0)) p.kill("SIGKILL");
  for (const dir of fakeRuns.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function sleeper(): Bun.Subprocess {
  const p = Bun.spawn(["sleep", "60"], { stdout: "ignore", stderr: "ignore" });
  spawned.push(p);
  return p;
}

/** A PID that belonged to a process which has exited. */
async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  return p.pid;
}

test("pidAlive tells a live process from a gone one and from a reused PID", async () => {
  const p = sleeper();
  const start = procStartTime(p.pid)!;
  expect(pidAlive(p.pid)).toBe(true);
  expect(pidAlive(p.pid, start)).toBe(true);
  expect(pidAlive(p.pid, String(Number(start) + 1))).toBe(false); // same PID, other process
  expect(pidAlive(await deadPid())).toBe(false);
  expect(pidAlive(0)).toBe(false);
});

test("terminatePid escalates to SIGKILL after the grace period", async () => {
  const p = Bun.spawn(["sh", "-c", "trap '' TERM; echo up; while :; do sleep 0.1; done"], { stdout: "pipe" });
  spawned.push(p);
  const reader = p.stdout.getReader();
  await reader.read(); // "up": the trap is installed
  const t0 = Date.now();
  await terminatePid(p.pid, { graceMs: 200, exited: p.exited });
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(p.signalCode).toBe("SIGKILL");
});

test("sweepStaleRuns kills a dead run's processes, spares reused PIDs and live runs", async () => {
  const orphan = sleeper();
  const bystander = sleeper(); // recorded with a wrong start time: a reused PID must be left alone
  const dead = join(HARNESS_ROOT, `run-${await deadPid()}-1`);
  const live = join(HARNESS_ROOT, `run-${process.pid}-${procStartTime(process.pid)}`);
  fakeRuns.push(dead);
  mkdirSync(join(dead, "pids"), { recursive: true });
  writeFileSync(join(dead, "pids", String(orphan.pid)), `${procStartTime(orphan.pid)}\nsleep\n`);
  writeFileSync(join(dead, "pids", String(bystander.pid)), `1\nsleep\n`);
  if (!existsSync(live)) fakeRuns.push(live);
  mkdirSync(join(live, "pids"), { recursive: true });

  const result = sweepStaleRuns();
  expect(result.killed).toContain(orphan.pid);
  expect(result.killed).not.toContain(bystander.pid);
  expect(existsSync(dead)).toBe(false);
  expect(existsSync(live)).toBe(true);
  await orphan.exited;
  expect(pidAlive(bystander.pid)).toBe(true);
});

test("execArgv returns code and output, and kills a command past its deadline", async () => {
  expect(await execArgv(["sh", "-c", "cat; echo e >&2; exit 2"], { stdin: "in" })).toEqual({
    code: 2,
    stdout: "in",
    stderr: "e\n",
  });
  // A grandchild holding the pipes open must not stretch the deadline.
  const pidFile = join(HARNESS_ROOT, `grandchild-${process.pid}`);
  try {
    const t0 = Date.now();
    const run = execArgv(["sh", "-c", `sleep 30 & echo $! > ${pidFile}; wait`], { timeoutMs: 200 });
    await expect(run).rejects.toThrow(/timed out after 200 ms/);
    expect(Date.now() - t0).toBeLessThan(2000);
  } finally {
    const grandchild = Number(
      await Bun.file(pidFile)
        .text()
        .catch(() => "0"),
    );
    if (grandchild > 0) process.kill(grandchild, "SIGKILL");
    rmSync(pidFile, { force: true });
  }
});
