/**
 * Running the compiled `dist/wolf` the way users do: built on demand (once per test process, only
 * when a source is newer than the binary), started directly or inside a network namespace, every
 * process tracked and killed by PID when the test process ends.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import {
  dieWithParentPrefix,
  execArgv,
  killPidsSync,
  LiveSet,
  pidAlive,
  procStartTime,
  signalPid,
  terminatePid,
  trackPid,
  untrackPid,
} from "./procs.ts";

export const REPO_ROOT = join(import.meta.dir, "..", "..");
/** Absolute path of the compiled binary. */
export const WOLF_BIN = join(REPO_ROOT, "dist", "wolf");
const BUN = join(REPO_ROOT, "node_modules", ".bin", "bun");
/** What the binary is built from: a newer file here means dist/wolf is stale. */
const SOURCE_DIRS = ["cmd", "lib", "native"];
const SOURCE_FILES = ["install/build.ts", "package.json"];
const BUILD_LOCK = join(REPO_ROOT, "dist", ".build.lock");

// ---- building -----------------------------------------------------------------------------------

function newestMtime(path: string, depth = 0): number {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  if (depth > 20) return st.mtimeMs;
  let newest = st.mtimeMs; // a deleted file shows up as a newer directory
  for (const entry of readdirSync(path)) {
    if (entry === "node_modules" || entry.startsWith(".")) continue;
    newest = Math.max(newest, newestMtime(join(path, entry), depth + 1));
  }
  return newest;
}

/** True if dist/wolf is missing or older than any file it is built from. */
export function wolfBinaryStale(): boolean {
  if (!existsSync(WOLF_BIN)) return true;
  const built = statSync(WOLF_BIN).mtimeMs;
  const sources = [...SOURCE_DIRS, ...SOURCE_FILES].map((p) => newestMtime(join(REPO_ROOT, p)));
  return sources.some((mtime) => mtime > built);
}

let building: Promise<void> | undefined;

/**
 * Builds dist/wolf with install/build.ts if it is missing or stale; at most once per test process
 * (later calls return the same promise). Concurrent test processes take turns via a lock file.
 */
export function ensureBuilt(): Promise<void> {
  building ??= buildIfStale().catch((err) => {
    building = undefined; // let a later test retry after a broken build is fixed
    throw err;
  });
  return building;
}

async function buildIfStale(): Promise<void> {
  if (!wolfBinaryStale()) return;
  await withBuildLock(async () => {
    if (!wolfBinaryStale()) return; // another test process built it while we waited
    const r = await execArgv([BUN, "install/build.ts"], { cwd: REPO_ROOT, timeoutMs: 300_000 });
    if (r.code !== 0) throw new Error(`building dist/wolf failed (exit ${r.code}):\n${r.stdout}${r.stderr}`.trimEnd());
    if (!existsSync(WOLF_BIN)) throw new Error(`install/build.ts succeeded but ${WOLF_BIN} is missing`);
  });
}

async function withBuildLock(fn: () => Promise<void>): Promise<void> {
  mkdirSync(join(REPO_ROOT, "dist"), { recursive: true });
  const me = `${process.pid} ${procStartTime(process.pid) ?? "0"}`;
  await waitUntil(
    () => {
      try {
        const fd = openSync(BUILD_LOCK, "wx");
        writeSync(fd, me);
        closeSync(fd);
        return true;
      } catch {
        const [pid, start] = (readFileSafe(BUILD_LOCK) ?? "").split(" ");
        if (pid && !pidAlive(Number(pid), start)) unlinkSafe(BUILD_LOCK); // its builder died
        return false;
      }
    },
    { timeoutMs: 300_000, intervalMs: 100, what: `the build lock ${BUILD_LOCK}` },
  );
  try {
    await fn();
  } finally {
    if (readFileSafe(BUILD_LOCK) === me) unlinkSafe(BUILD_LOCK);
  }
}

function readFileSafe(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function unlinkSafe(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

// ---- running ------------------------------------------------------------------------------------

export interface RunWolfOptions {
  /** Run inside this network namespace (e.g. `host.ns` of a TestNet host). */
  netns?: string;
  /** Added to (and overriding) the test process's environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Written to stdin, which is then closed; default: no stdin. */
  stdin?: string;
  /** Run this argv prefix instead of dist/wolf (for testing the harness, or running from source). */
  command?: string[];
}

const liveProcesses: LiveSet<WolfProcess> = new LiveSet<WolfProcess>({
  what: "process(es) from runWolf",
  order: 20,
  destroySync: (p) => p.killSync(),
  stop: (p) => p.stop(2000),
});

export class WolfProcess {
  readonly pid: number;
  readonly argv: string[];
  private readonly proc: Bun.Subprocess<Bun.SpawnOptions.Writable, "pipe", "pipe">;
  private readonly startTime?: string;
  private combined = "";
  private out = "";
  private err = "";
  private readonly drained: Promise<void>;
  private streamsDone = false;

  constructor(argv: string[], opts: RunWolfOptions) {
    this.argv = argv;
    const prefix = [...dieWithParentPrefix(), ...(opts.netns ? ["ip", "netns", "exec", opts.netns] : [])];
    this.proc = Bun.spawn([...prefix, ...argv], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
      stdout: "pipe",
      stderr: "pipe",
    });
    this.pid = this.proc.pid;
    this.startTime = procStartTime(this.pid);
    trackPid(this.pid, argv.join(" "));
    liveProcesses.add(this);
    this.drained = Promise.all([this.pump(this.proc.stdout, "out"), this.pump(this.proc.stderr, "err")]).then(() => {
      this.streamsDone = true;
    });
    void this.proc.exited.then(() => {
      untrackPid(this.pid);
      liveProcesses.delete(this);
    });
  }

  private async pump(stream: ReadableStream<Uint8Array>, which: "out" | "err"): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      this.combined += text;
      if (which === "out") this.out += text;
      else this.err += text;
    }
  }

  /** stdout and stderr so far, interleaved in arrival order. */
  output(): string {
    return this.combined;
  }

  stdout(): string {
    return this.out;
  }

  stderr(): string {
    return this.err;
  }

  /** Exit code once exited (128 + signal number if killed by a signal), else null. */
  get exitCode(): number | null {
    if (this.proc.exitCode !== null) return this.proc.exitCode;
    const signal = this.proc.signalCode;
    if (signal !== null) return 128 + (typeof signal === "number" ? signal : (constants.signals[signal] ?? 0));
    return null;
  }

  get running(): boolean {
    return this.exitCode === null;
  }

  /** Resolves with the first match of `pattern` in the output; rejects (showing the output) on exit or timeout. */
  async waitForOutput(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const result = await waitUntil(
      () => {
        const match = this.combined.match(pattern);
        if (match) return { match };
        if (this.exitCode !== null && this.streamsDone) return { exited: this.exitCode };
        return undefined;
      },
      { timeoutMs, intervalMs: 20, what: `${pattern} in the output of ${this.describe()}` },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n--- output so far ---\n${this.outputTail()}`);
    });
    if ("exited" in result) {
      throw new Error(
        `${this.describe()} exited with code ${result.exited} before printing ${pattern}\n--- output ---\n${this.outputTail()}`,
      );
    }
    return result.match;
  }

  /** Resolves with the exit code (128 + signal number if killed); rejects if still running after `timeoutMs`. */
  async waitForExit(timeoutMs = 10_000): Promise<number> {
    await waitUntil(() => this.exitCode !== null, {
      timeoutMs,
      intervalMs: 20,
      what: `${this.describe()} to exit`,
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n--- output so far ---\n${this.outputTail()}`);
    });
    await this.drained;
    return this.exitCode!;
  }

  /** Sends a signal by PID (default SIGKILL: a crash) and returns at once. */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (pidAlive(this.pid, this.startTime)) signalPid(this.pid, signal);
  }

  /** SIGTERM, then SIGKILL if still running after `graceMs`; resolves with the exit code. Idempotent. */
  async stop(graceMs = 5000): Promise<number> {
    await terminatePid(this.pid, { graceMs, exited: this.proc.exited, startTime: this.startTime });
    await this.proc.exited; // reaped, so exitCode is set
    await this.drained;
    return this.exitCode!;
  }

  private describe(): string {
    return `\`${this.argv.join(" ")}\` (pid ${this.pid})`;
  }

  private outputTail(chars = 4000): string {
    return this.combined.length > chars ? `…${this.combined.slice(-chars)}` : this.combined;
  }

  /** @internal exit-handler kill */
  killSync(): void {
    killPidsSync([{ pid: this.pid, startTime: this.startTime }]);
  }
}

/**
 * Starts `dist/wolf <args>` (call `await ensureBuilt()` first, e.g. in beforeAll). The process is
 * tracked: stop it yourself, or it is killed when the test process ends.
 */
export function runWolf(args: string[], opts: RunWolfOptions = {}): WolfProcess {
  if (!opts.command && !existsSync(WOLF_BIN)) {
    throw new Error(`${WOLF_BIN} is missing: call \`await ensureBuilt()\` (e.g. in beforeAll) before runWolf`);
  }
  return new WolfProcess([...(opts.command ?? [WOLF_BIN]), ...args], opts);
}

/** Runs a one-shot command to completion (default deadline 30 s; killed and rejected after it). */
export async function runWolfOnce(
  args: string[],
  opts: RunWolfOptions & { timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = runWolf(args, opts);
  try {
    const code = await proc.waitForExit(opts.timeoutMs ?? 30_000);
    return { code, stdout: proc.stdout(), stderr: proc.stderr() };
  } finally {
    if (proc.running) await proc.stop(1000);
  }
}

/** A JSON request to a node's HTTP API (over TCP, or a unix socket): the status and the parsed body. */
export async function apiRequest<T = Record<string, unknown>>(opts: {
  url: string;
  token: string;
  method: string;
  body?: unknown;
  timeoutMs: number;
  headers?: Record<string, string>;
  /** Reach the API through this unix socket (the URL's host is then ignored). */
  unix?: string;
}): Promise<{ status: number; body: T }> {
  const res = await fetch(opts.url, {
    ...(opts.unix ? { unix: opts.unix } : {}),
    method: opts.method,
    headers: { authorization: `Bearer ${opts.token}`, "content-type": "application/json", ...opts.headers },
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: AbortSignal.timeout(opts.timeoutMs),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { raw: text };
  }
  return { status: res.status, body: parsed as T };
}
