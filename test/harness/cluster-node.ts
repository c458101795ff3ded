/**
 * A bare cluster node (cluster-node-main.ts, run from source by bun) running in a TestNet host,
 * driven over its JSON lines on stdin/stdout. Shared by the cluster integration test and the
 * failover benchmark.
 */
import type { ClusterStatus } from "../../lib/cluster/status.ts";
import type { Host } from "./netns.ts";
import { join } from "node:path";

/** One applied log entry as `entries` reports it. */
export interface Entry {
  lsn: number;
  term: number;
  kind: string;
  data: string;
}

/** The reply to `append` (a type alias, so a reply record converts to it). */
export type AppendResult = { ok: boolean; lsn?: number; term?: number; error?: string };

/** The argv that starts node `id` with its config file and data dir. */
export function clusterNodeArgv(config: string, id: number, dataDir: string): string[] {
  const main = join(import.meta.dir, "cluster-node-main.ts");
  return [process.execPath, main, "--config", config, "--id", String(id), "--data-dir", dataDir];
}

/** One node process: JSON lines on stdin/stdout (cluster-node-main.ts). */
export class NodeProc {
  /** Unsolicited lines (`ready`, `role` events with their `at` timestamps), in order. */
  readonly events: Record<string, unknown>[] = [];
  private readonly replies = new Map<number, (r: Record<string, unknown>) => void>();
  private nextId = 1;
  /** Everything it wrote (stdout and stderr), for failure messages. */
  output = "";
  readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">;

  constructor(
    readonly id: number,
    readonly host: Host,
    argv: string[],
  ) {
    this.proc = host.spawn(argv, {
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, NO_COLOR: "1" },
    });
    void this.read(this.proc.stdout, true);
    void this.read(this.proc.stderr, false);
  }

  /** The node's own PID (setpriv and `ip netns exec` exec in place). */
  get pid(): number {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  private async read(stream: ReadableStream<Uint8Array>, json: boolean) {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      const text = dec.decode(chunk, { stream: true });
      this.output += text;
      if (!json) continue;
      buf += text;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (typeof msg.reply === "number") this.replies.get(msg.reply)?.(msg);
        else this.events.push(msg);
      }
    }
  }

  call(cmd: Record<string, unknown>, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    if (!this.running) {
      const how = this.proc.exitCode ?? this.proc.signalCode;
      return Promise.reject(
        new Error(`node ${this.id} is not running (exit ${how}), cannot send ${JSON.stringify(cmd)}`),
      );
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.replies.delete(id);
        reject(
          new Error(
            `node ${this.id}: no reply to ${JSON.stringify(cmd)} within ${timeoutMs} ms\n${this.output.slice(-3000)}`,
          ),
        );
      }, timeoutMs);
      this.replies.set(id, (r) => {
        clearTimeout(timer);
        this.replies.delete(id);
        resolve(r);
      });
      try {
        this.proc.stdin.write(`${JSON.stringify({ id, ...cmd })}\n`);
        this.proc.stdin.flush();
      } catch (err) {
        clearTimeout(timer);
        this.replies.delete(id);
        reject(
          new Error(
            `node ${this.id}: cannot send ${JSON.stringify(cmd)}: ${err instanceof Error ? err.message : String(err)}`,
          ),
        );
      }
    });
  }

  async status(timeoutMs?: number): Promise<ClusterStatus> {
    return (await this.call({ cmd: "status" }, timeoutMs)).status as ClusterStatus;
  }

  async entries(): Promise<Entry[]> {
    return (await this.call({ cmd: "entries" })).entries as Entry[];
  }

  async append(data: string, ack = "one", timeoutMs = 3000): Promise<AppendResult> {
    return (await this.call({ cmd: "append", data, ack, timeoutMs }, timeoutMs + 5000)) as AppendResult;
  }

  /**
   * SIGKILL by PID: no chance to flush or say goodbye. The signal is sent before this returns;
   * the promise resolves once the process is reaped.
   */
  async kill(): Promise<void> {
    if (this.running) process.kill(this.proc.pid, "SIGKILL");
    await this.proc.exited;
  }

  /** Graceful stop (stdin closed), SIGKILL if it is still there after 5 s. */
  async stop(): Promise<void> {
    try {
      this.proc.stdin.end();
    } catch {
      // already closed
    }
    const exited = await Promise.race([this.proc.exited.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!exited) this.proc.kill("SIGKILL");
  }
}
