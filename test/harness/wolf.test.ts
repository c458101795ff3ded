import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import { TestNet, hasNetnsSupport } from "./netns.ts";
import { ChildScript, HARNESS_ROOT, pidAlive, sweepStaleRuns } from "./procs.ts";
import { REPO_ROOT, WOLF_BIN, ensureBuilt, runWolf, runWolfOnce, type WolfProcess } from "./wolf.ts";

const sh = (script: string) => ({ command: ["sh", "-c", script, "sh"] });

const started: WolfProcess[] = [];
function run(args: string[], opts: Parameters<typeof runWolf>[1]): WolfProcess {
  const p = runWolf(args, opts);
  started.push(p);
  return p;
}
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop(500)));
});

describe("runWolf (process machinery, against small scripts)", () => {
  test("collects stdout and stderr, feeds stdin, reports the exit code", async () => {
    const p = run([], {
      ...sh('echo hello; echo oops >&2; read x; echo "got $x $FOO"; exit 3'),
      stdin: "abc\n",
      env: { FOO: "bar" },
    });
    expect(await p.waitForOutput(/got (\w+)/)).toContain("abc");
    expect(await p.waitForExit(5000)).toBe(3);
    expect(p.stdout()).toBe("hello\ngot abc bar\n");
    expect(p.stderr()).toBe("oops\n");
    expect(p.output()).toContain("hello\n");
    expect(p.output()).toContain("oops\n");
    expect(p.running).toBe(false);
  });

  test("waitForOutput fails fast, with the output, when the process exits first", async () => {
    const p = run([], sh("echo starting; exit 4"));
    const t0 = Date.now();
    const err = await p.waitForOutput(/never printed/, 10_000).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/exited with code 4 before printing[\s\S]*starting/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test("waitForOutput and waitForExit time out with the output so far", async () => {
    const p = run([], sh("echo waiting; exec sleep 30"));
    await p.waitForOutput(/waiting/);
    await expect(p.waitForOutput(/nope/, 200)).rejects.toThrow(/timed out after 200 ms[\s\S]*waiting/);
    await expect(p.waitForExit(200)).rejects.toThrow(/timed out after 200 ms/);
    expect(p.running).toBe(true);
    expect(await p.stop()).toBe(143); // SIGTERM
  });

  test("stop() lets a process shut down cleanly, and SIGKILLs one that ignores SIGTERM", async () => {
    const polite = run([], sh("trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.1; done"));
    const stubborn = run([], sh("trap '' TERM; echo up; while :; do sleep 0.1; done"));
    await Promise.all([polite.waitForOutput(/up/), stubborn.waitForOutput(/up/)]);
    const t0 = Date.now();
    const [politeCode, stubbornCode] = await Promise.all([polite.stop(3000), stubborn.stop(300)]);
    expect(politeCode).toBe(0);
    expect(polite.output()).toContain("bye");
    expect(stubbornCode).toBe(137);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(pidAlive(polite.pid) || pidAlive(stubborn.pid)).toBe(false);
    expect(await stubborn.stop()).toBe(137); // idempotent
  });

  test("kill() sends a signal by PID (default SIGKILL)", async () => {
    const p = run([], sh("echo up; exec sleep 30"));
    await p.waitForOutput(/up/);
    p.kill();
    expect(await p.waitForExit(5000)).toBe(137);
    const q = run([], sh("echo up; exec sleep 30"));
    await q.waitForOutput(/up/);
    q.kill("SIGINT");
    expect(await q.waitForExit(5000)).toBe(130);
  });

  test("runWolfOnce returns code and output, and kills a command that overruns its deadline", async () => {
    expect(await runWolfOnce([], sh("echo out; echo err >&2; exit 5"))).toEqual({
      code: 5,
      stdout: "out\n",
      stderr: "err\n",
    });
    const t0 = Date.now();
    await expect(runWolfOnce([], { ...sh("exec sleep 30"), timeoutMs: 300 })).rejects.toThrow(/timed out after 300 ms/);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  test.skipIf(!hasNetnsSupport())("runs inside a network namespace", async () => {
    const net = await TestNet.create();
    try {
      const host = await net.addHost("w");
      const r = await runWolfOnce([], { ...sh("ip -o -4 addr show"), netns: host.ns });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`inet ${host.ip}/24`);
    } finally {
      await net.destroy();
    }
  });

  describe("processes die with the test process", () => {
    const harness = join(import.meta.dir, "wolf.ts");
    for (const how of ["exits", "gets SIGTERM", "gets SIGKILL"] as const) {
      test(`when it ${how}`, async () => {
        const script = `
          import { runWolf } from ${JSON.stringify(harness)};
          setTimeout(() => process.exit(9), 30_000);
          const p = runWolf([], { command: ["sleep", "300"] });
          console.log(JSON.stringify({ sleepPid: p.pid }));
          ${how === "exits" ? "setTimeout(() => process.exit(0), 100);" : ""}`;
        const child = new ChildScript(script);
        try {
          const { sleepPid } = await child.report<{ sleepPid: number }>({
            timeoutMs: 10_000,
            what: "the child to start its process",
          });
          expect(pidAlive(sleepPid)).toBe(true);
          const runDirName = readdirSync(HARNESS_ROOT).find((n) => n.startsWith(`run-${child.pid}-`));
          expect(runDirName).toBeDefined(); // the child recorded its process there
          const runDir = join(HARNESS_ROOT, runDirName!);
          expect(readdirSync(join(runDir, "pids"))).toEqual([String(sleepPid)]);
          if (how === "gets SIGTERM") child.kill("SIGTERM");
          if (how === "gets SIGKILL") child.kill("SIGKILL");
          const code = await child.exited();
          expect(code).toBe({ exits: 0, "gets SIGTERM": 143, "gets SIGKILL": 137 }[how]);
          await waitUntil(() => !pidAlive(sleepPid), {
            timeoutMs: 3000,
            what: `the child's process ${sleepPid} to die`,
          });
          if (how === "gets SIGKILL") {
            expect(existsSync(runDir)).toBe(true); // no handler ran: the next sweep removes it
            sweepStaleRuns();
          }
          expect(existsSync(runDir)).toBe(false);
        } finally {
          await child.close();
        }
      });
    }
  });
});

const haveCli = existsSync(join(REPO_ROOT, "cmd", "wolf.ts"));
if (!haveCli) console.warn("[skip] dist/wolf tests: cmd/wolf.ts does not exist yet");

describe.skipIf(!haveCli)("dist/wolf", () => {
  test("ensureBuilt builds when stale, once per process", async () => {
    const t0 = performance.now();
    await ensureBuilt();
    console.log(`ensureBuilt: ${Math.round(performance.now() - t0)} ms`);
    expect(existsSync(WOLF_BIN)).toBe(true);
    expect(statSync(WOLF_BIN).mode & 0o111).not.toBe(0);
    expect(WOLF_BIN.startsWith("/")).toBe(true);
    const t1 = performance.now();
    await ensureBuilt(); // memoised: no second staleness scan or build
    expect(performance.now() - t1).toBeLessThan(5);
  });

  test("--help and --version", async () => {
    await ensureBuilt();
    const help = await runWolfOnce(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/scale/);
    const version = await runWolfOnce(["--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^wolf \d+\.\d+\.\d+/);
  });
});
