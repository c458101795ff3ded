/**
 * Process ownership for the test harness: every PID, namespace and temp dir a test process starts is
 * recorded under its "run dir" (/tmp/wolf-test/run-<pid>-<starttime>), so that
 *   - the process kills and removes them itself on exit, SIGINT, SIGTERM and SIGHUP (sync handlers;
 *     `bun test` fires no "exit" event, so the preload's global afterAll runs them instead),
 *   - children started through the harness get PR_SET_PDEATHSIG, so they die even on SIGKILL, and
 *   - the next test run (the bun test preload) sweeps whatever a SIGKILLed run left behind.
 * A PID is only ever killed when its start time still matches the one recorded, so a reused PID
 * belonging to an unrelated process is never touched.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";

/** Everything the harness writes outside a test's own temp dirs lives under here. */
export const HARNESS_ROOT = "/tmp/wolf-test";

const RUN_PREFIX = "run-";

/** Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), or undefined if gone. */
export function procStartTime(pid: number): string | undefined {
  const stat = procStat(pid);
  return stat?.startTime;
}

function procStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // comm (field 2) may contain spaces and parentheses: the fields we want follow the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = rest[0];
  const startTime = rest[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

/** True if `pid` runs (zombies count as gone) and, when given, still has the recorded start time. */
export function pidAlive(pid: number, startTime?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const stat = procStat(pid);
  if (!stat || stat.state === "Z" || stat.state === "X") return false;
  return startTime === undefined || stat.startTime === startTime;
}

/** Sends a signal, ignoring "no such process". */
export function signalPid(pid: number, signal: NodeJS.Signals | number): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Stops a process by PID: `signal` (SIGTERM), then SIGKILL if it is still there after `graceMs`.
 * Resolves once it is gone (or throws after a further deadline: an unkillable process is a bug
 * worth seeing). `exited` lets a caller that owns the child wait on its reaping directly.
 */
export async function terminatePid(
  pid: number,
  opts: { graceMs?: number; signal?: NodeJS.Signals; exited?: Promise<unknown>; startTime?: string } = {},
): Promise<void> {
  const startTime = opts.startTime ?? procStartTime(pid);
  if (!pidAlive(pid, startTime)) return;
  const gone = () => (!pidAlive(pid, startTime) ? true : undefined);
  signalPid(pid, opts.signal ?? "SIGTERM");
  try {
    await waitUntil(gone, { timeoutMs: opts.graceMs ?? 5000, intervalMs: 20, what: `pid ${pid} to exit` });
  } catch {
    if (pidAlive(pid, startTime)) signalPid(pid, "SIGKILL");
    await waitUntil(gone, { timeoutMs: 5000, intervalMs: 20, what: `pid ${pid} to die after SIGKILL` });
  }
  if (opts.exited) await opts.exited;
}

/** Synchronous SIGKILL of processes, for exit handlers; waits (bounded) until they are gone. */
export function killPidsSync(pids: Iterable<{ pid: number; startTime?: string }>, timeoutMs = 2000): void {
  const live = [...pids].filter((p) => pidAlive(p.pid, p.startTime));
  for (const p of live) signalPid(p.pid, "SIGKILL");
  const deadline = Date.now() + timeoutMs;
  while (live.some((p) => pidAlive(p.pid, p.startTime)) && Date.now() < deadline) Bun.sleepSync(5);
}

// ---- this process's run dir ---------------------------------------------------------------------

let myRunDir: string | undefined;
let _unregisterRunDirCleanup: (() => void) | undefined;

/** This test process's run dir, created on first use. */
export function runDir(): string {
  if (!myRunDir) {
    const dir = join(HARNESS_ROOT, `${RUN_PREFIX}${process.pid}-${procStartTime(process.pid) ?? "0"}`);
    mkdirSync(join(dir, "pids"), { recursive: true });
    myRunDir = dir;
    _unregisterRunDirCleanup ??= onExitCleanup(() => {
      if (!myRunDir) return;
      killPidsSync(readTrackedPids(myRunDir));
      rmSync(myRunDir, { recursive: true, force: true });
      myRunDir = undefined;
    }, 100);
  }
  return myRunDir;
}

/** Records a PID this process started, so it is killed if this process dies without cleaning up. */
export function trackPid(pid: number, label: string): void {
  const startTime = procStartTime(pid);
  if (startTime === undefined) return; // already gone
  writeFileSync(join(runDir(), "pids", String(pid)), `${startTime}\n${label}\n`);
}

export function untrackPid(pid: number): void {
  if (!myRunDir) return;
  try {
    unlinkSync(join(myRunDir, "pids", String(pid)));
  } catch {
    // not tracked
  }
}

function readTrackedPids(dir: string): { pid: number; startTime: string }[] {
  let names: string[];
  try {
    names = readdirSync(join(dir, "pids"));
  } catch {
    return [];
  }
  const out: { pid: number; startTime: string }[] = [];
  for (const name of names) {
    try {
      const startTime = readFileSync(join(dir, "pids", name), "utf8").split("\n")[0] ?? "";
      out.push({ pid: Number(name), startTime });
    } catch {
      // raced with untrack
    }
  }
  return out;
}

/** Owner record of a run dir name, e.g. "run-123-456" → { pid: 123, startTime: "456" }. */
function parseRunDir(name: string): { pid: number; startTime: string } | undefined {
  const m = /^run-(\d+)-(\d+)$/.exec(name);
  return m ? { pid: Number(m[1]), startTime: m[2]! } : undefined;
}

/** True if the test process `pid` is alive (checked against its run dir's start time when there is one). */
export function ownerAlive(pid: number): boolean {
  if (!pidAlive(pid)) return false;
  if (pid === process.pid) return true;
  let names: string[] = [];
  try {
    names = readdirSync(HARNESS_ROOT);
  } catch {
    return true;
  }
  const record = names.map(parseRunDir).find((r) => r?.pid === pid);
  return record === undefined || pidAlive(pid, record.startTime);
}

/**
 * Kills the processes recorded by test runs whose owner is gone and removes their run dirs
 * (MariaDB datadirs, wolf state dirs). Fast when there is nothing stale. Never throws.
 */
export function sweepStaleRuns(): { killed: number[]; removed: string[] } {
  const killed: number[] = [];
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(HARNESS_ROOT);
  } catch {
    return { killed, removed };
  }
  for (const name of names) {
    const owner = parseRunDir(name);
    if (!owner || pidAlive(owner.pid, owner.startTime)) continue;
    const dir = join(HARNESS_ROOT, name);
    const pids = readTrackedPids(dir).filter((p) => pidAlive(p.pid, p.startTime));
    killPidsSync(pids, 5000);
    killed.push(...pids.map((p) => p.pid));
    try {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // another sweeper got there first, or a mount inside: leave it for the next sweep
    }
  }
  return { killed, removed };
}

/**
 * The async variant for a context that can wait (the preload's global afterAll): graceful stops
 * whose children get reaped, then the sync cleanups for whatever is left.
 */
export async function runCleanupsAsync(): Promise<void> {
  for (const c of [...cleanups].sort((a, b) => a.order - b.order)) {
    if (!c.async) continue;
    try {
      await c.async();
    } catch (err) {
      console.error(`[harness] cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  runCleanups();
}

/**
 * Argv prefix that makes a child die with this process even on SIGKILL (PR_SET_PDEATHSIG via
 * util-linux setpriv, which execs in place so the PID is the command's). Empty without setpriv.
 */
export function dieWithParentPrefix(): string[] {
  pdeathsigPrefix ??= Bun.which("setpriv") ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];
  return pdeathsigPrefix;
}
let pdeathsigPrefix: string[] | undefined;

// ---- exit handlers ------------------------------------------------------------------------------

type Cleanup = { fn: () => void; order: number; async?: () => Promise<void> };
const cleanups = new Set<Cleanup>();
let handlersInstalled = false;
let cleaningUp = false;

/**
 * Runs every registered cleanup now (what exit/SIGINT/SIGTERM do). The preload calls it from a
 * global afterAll, because `bun test` fires no process "exit" event.
 */
export function runCleanups(): void {
  if (cleaningUp) return;
  cleaningUp = true;
  for (const c of [...cleanups].sort((a, b) => a.order - b.order)) {
    try {
      c.fn();
    } catch (err) {
      console.error(`[harness] cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  cleaningUp = false;
}

/**
 * Registers a synchronous, idempotent cleanup run on process exit, SIGINT, SIGTERM and SIGHUP and
 * by `runCleanups` (lower `order` runs first), and optionally a gentler async one that
 * `runCleanupsAsync` prefers. Returns a function that unregisters it.
 */
export function onExitCleanup(fn: () => void, order = 0, asyncFn?: () => Promise<void>): () => void {
  if (!handlersInstalled) {
    handlersInstalled = true;
    process.on("exit", runCleanups);
    for (const [sig, code] of [
      ["SIGINT", 130],
      ["SIGTERM", 143],
      ["SIGHUP", 129],
    ] as const) {
      process.on(sig, () => {
        runCleanups();
        process.exit(code);
      });
    }
  }
  const entry: Cleanup = { fn, order, async: asyncFn };
  cleanups.add(entry);
  return () => {
    cleanups.delete(entry);
  };
}

/**
 * The live things one kind of harness resource has started (processes, MariaDB instances,
 * namespaces). The first `add` registers an exit cleanup: on exit each leftover is destroyed with
 * `destroySync`; `runCleanupsAsync` prefers the gentler `stop` and says how many a test leaked.
 */
export class LiveSet<T> {
  private readonly items = new Set<T>();
  private registered = false;

  constructor(
    private readonly opts: {
      what: string;
      order: number;
      destroySync: (item: T) => void;
      stop: (item: T) => Promise<unknown>;
    },
  ) {}

  add(item: T): void {
    this.items.add(item);
    if (this.registered) return;
    this.registered = true;
    onExitCleanup(
      () => {
        for (const item of [...this.items]) this.opts.destroySync(item);
        this.items.clear();
      },
      this.opts.order,
      async () => {
        const leaked = [...this.items];
        if (leaked.length > 0)
          console.error(
            `[harness] ${leaked.length} ${this.opts.what} still running at exit (not stopped by their test); stopping`,
          );
        await Promise.allSettled(leaked.map((item) => this.opts.stop(item)));
      },
    );
  }

  delete(item: T): void {
    this.items.delete(item);
  }
}

/** Runs `argv` synchronously and returns its exit code and output; never throws for a missing binary. */
export function runSync(argv: string[], timeoutMs = 10_000): { code: number; stdout: string; stderr: string } {
  try {
    const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", timeout: timeoutMs });
    return { code: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  } catch (err) {
    return { code: -1, stdout: "", stderr: err instanceof Error ? err.message : String(err) };
  }
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) and throw after this long. Default 10 s. */
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Written to the command's stdin, which is then closed. */
  stdin?: string;
}

/** Runs a command to completion with a deadline; a command that overruns it is killed and reported. */
export async function execArgv(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const proc = Bun.spawn(argv, {
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    cwd: opts.cwd,
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const overrun = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      signalPid(proc.pid, "SIGKILL");
      reject(new Error(`command timed out after ${timeoutMs} ms: ${argv.join(" ")}`));
    }, timeoutMs);
  });
  try {
    // Racing the deadline (not just killing the child) also covers a grandchild holding the pipes open.
    const [stdout, stderr, code] = await Promise.race([
      Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]),
      overrun,
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A Bun script run as a separate test process (for testing what happens when a test process
 * exits or is killed). It reports what it set up as one JSON line on stdout.
 */
export class ChildScript {
  private readonly child: Bun.Subprocess<"ignore", "pipe", "pipe">;
  private out = "";
  private readonly reader: Promise<void>;

  constructor(script: string) {
    const child = Bun.spawn([process.execPath, "-e", script], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    this.child = child;
    this.reader = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stdout) this.out += decoder.decode(chunk, { stream: true });
    })();
  }

  get pid(): number {
    return this.child.pid;
  }

  /** The first line of stdout that starts with "{", parsed. */
  async report<T>(opts: { timeoutMs: number; what: string }): Promise<T> {
    const line = await waitUntil(() => this.out.split("\n").find((l) => l.startsWith("{")), opts);
    return JSON.parse(line) as T;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }

  /** The exit code once the script has exited and its output is read. */
  async exited(): Promise<number> {
    const code = await this.child.exited;
    await this.reader;
    return code;
  }

  /** Kills the script (if still running) and waits for it: for `finally`. */
  async close(): Promise<void> {
    this.child.kill("SIGKILL");
    await this.exited();
  }
}
