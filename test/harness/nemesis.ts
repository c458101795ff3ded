/**
 * Fault injection for cluster tests (Jepsen's "nemesis"), against real processes in network
 * namespaces: kill -9 of a node's wolf or MariaDB, SIGSTOP of the leader for longer than the
 * election timeout, nftables partitions (leader isolated, majority/minority, a non-transitive
 * "bridge" where only the middle node sees both sides), and a full disk under one node's data dir
 * (a tmpfs with a size limit, filled with fallocate). Every fault has a heal; `healAll` undoes
 * whatever may be left (for `finally`).
 *
 * The schedule is a pure function of a seed (`nemesisSchedule`), so a failing run is replayed by
 * its seed. Targets such as "the leader" are resolved when the fault starts.
 */
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { seededRng } from "../../lib/cluster/clock.ts";
import type { MariaDBInstance } from "./mariadb.ts";
import type { Host } from "./netns.ts";
import { dieWithParentPrefix, execArgv, onExitCleanup, runSync, signalPid, trackPid, untrackPid } from "./procs.ts";
import type { WolfProcess } from "./wolf.ts";

export const FAULT_KINDS = [
  "kill-wolf",
  "kill-mariadb",
  "pause-leader",
  "partition-leader",
  "partition-minority",
  "partition-bridge",
  "disk-full",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One step of a schedule: what to break, a number in [0, 1) that picks the target, how long. */
export interface FaultPlan {
  cycle: number;
  kind: FaultKind;
  pick: number;
  holdMs: number;
}

/** What the nemesis needs from a cluster under test. */
export interface FaultableCluster {
  readonly ids: number[];
  /** The node that leads right now, as the nodes report it (undefined while nobody does). */
  leader(): Promise<number | undefined>;
  host(id: number): Host;
  wolf(id: number): WolfProcess | undefined;
  /** Starts (restarts) a node's wolf and resolves once its API answers. */
  startWolf(id: number): Promise<void>;
  db(id: number): MariaDBInstance;
  /** The node's small disk (where its wolf data dir lives). */
  disk(id: number): SmallDisk;
}

/** A fault in progress. */
export interface ActiveFault {
  plan: FaultPlan;
  /** e.g. "partition-bridge: 1 | 2 | 3 with 2 in the middle". */
  what: string;
  heal(): Promise<void>;
}

/**
 * `cycles` faults from `seed`: every kind appears in turn in a shuffled order (so a short run
 * still tries each), holding each for `minHoldMs`..`maxHoldMs` (a pause always exceeds `pauseMs`).
 */
export function nemesisSchedule(
  seed: number,
  cycles: number,
  opts: { minHoldMs: number; maxHoldMs: number; pauseMs: number; kinds?: readonly FaultKind[] },
): FaultPlan[] {
  const rnd = seededRng(seed); // reproducible from the seed
  const kinds = opts.kinds ?? FAULT_KINDS;
  const out: FaultPlan[] = [];
  let bag: FaultKind[] = [];
  for (let cycle = 1; cycle <= cycles; cycle++) {
    if (bag.length === 0) {
      bag = [...kinds];
      for (let i = bag.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [bag[i], bag[j]] = [bag[j]!, bag[i]!];
      }
    }
    const kind = bag.pop()!;
    const hold = opts.minHoldMs + Math.floor(rnd() * (opts.maxHoldMs - opts.minHoldMs + 1));
    out.push({ cycle, kind, pick: rnd(), holdMs: kind === "pause-leader" ? Math.max(hold, opts.pauseMs) : hold });
  }
  return out;
}

const PARTITION_TABLE = "wolfnemesis";

/** Drops all traffic between `host` and the `peers` addresses (both directions, this side). */
async function blockPeers(host: Host, peers: string[]): Promise<void> {
  if (peers.length === 0) return;
  const set = `{ ${peers.join(", ")} }`;
  const rules = `table inet ${PARTITION_TABLE} {
    chain input { type filter hook input priority -10; policy accept; ip saddr ${set} drop; }
    chain output { type filter hook output priority -10; policy accept; ip daddr ${set} drop; }
  }`;
  const r = await host.exec(["nft", "-f", "-"], { stdin: rules });
  if (r.code !== 0) throw new Error(`nemesis: nft in ${host.name} failed: ${r.stderr.trim()}`);
}

async function unblock(host: Host): Promise<void> {
  // "No such file or directory" when this host had no rules: nothing to heal.
  await host.exec(["nft", "delete", "table", "inet", PARTITION_TABLE]);
}

export class Nemesis {
  constructor(private readonly c: FaultableCluster) {}

  /** Starts the fault `plan` describes and returns how to heal it. */
  async inject(plan: FaultPlan): Promise<ActiveFault> {
    const ids = this.c.ids;
    const leader = await this.c.leader();
    const anyNode = ids[Math.floor(plan.pick * ids.length)]!;
    // Half of the node-level faults hit the leader (the interesting case), half any node.
    const leaderOrAny = plan.pick < 0.5 && leader !== undefined ? leader : anyNode;
    switch (plan.kind) {
      case "kill-wolf": {
        const id = leaderOrAny;
        const p = this.c.wolf(id);
        p?.kill("SIGKILL");
        await p?.waitForExit(10_000);
        return {
          plan,
          what: `kill -9 wolf on node ${id}${id === leader ? " (leader)" : ""}`,
          heal: () => this.c.startWolf(id),
        };
      }
      case "kill-mariadb": {
        const id = leaderOrAny;
        await this.c.db(id).kill();
        return {
          plan,
          what: `kill -9 MariaDB on node ${id}${id === leader ? " (leader)" : ""}`,
          heal: () => this.c.db(id).restart(),
        };
      }
      case "pause-leader": {
        const id = leader ?? anyNode;
        const p = this.c.wolf(id);
        p?.kill("SIGSTOP");
        return {
          plan,
          what: `SIGSTOP wolf on node ${id}${id === leader ? " (leader)" : " (no leader at the time)"} for ${plan.holdMs} ms`,
          heal: async () => p?.kill("SIGCONT"),
        };
      }
      case "partition-leader":
      case "partition-minority": {
        const id = plan.kind === "partition-leader" && leader !== undefined ? leader : anyNode;
        const others = ids.filter((x) => x !== id);
        await blockPeers(
          this.c.host(id),
          others.map((x) => this.c.host(x).ip),
        );
        for (const x of others) await blockPeers(this.c.host(x), [this.c.host(id).ip]);
        return {
          plan,
          what: `partition ${id}${id === leader ? " (leader)" : ""} | ${others.join(",")}`,
          heal: () => this.healPartitions(),
        };
      }
      case "partition-bridge": {
        // The middle node sees both sides; the two sides do not see each other.
        const middle = anyNode;
        const [a, b] = ids.filter((x) => x !== middle);
        if (a === undefined || b === undefined) throw new Error("partition-bridge needs 3 nodes");
        await blockPeers(this.c.host(a), [this.c.host(b).ip]);
        await blockPeers(this.c.host(b), [this.c.host(a).ip]);
        return {
          plan,
          what: `bridge ${a} - ${middle} - ${b} (${a} and ${b} cut off from each other; leader was ${leader ?? "none"})`,
          heal: () => this.healPartitions(),
        };
      }
      case "disk-full": {
        const id = leaderOrAny;
        const free = await this.c.disk(id).fill();
        return {
          plan,
          what: `disk full under node ${id}${id === leader ? " (leader)" : ""}'s data dir (${Math.round(free / 1024)} KiB taken)`,
          heal: async () => this.c.disk(id).unfill(),
        };
      }
    }
  }

  async healPartitions(): Promise<void> {
    await Promise.all(this.c.ids.map((id) => unblock(this.c.host(id))));
  }

  /** Undoes every fault that may be in place: partitions, pauses, full disks, dead processes. */
  async healAll(): Promise<void> {
    await this.healPartitions();
    for (const id of this.c.ids) {
      this.c.wolf(id)?.kill("SIGCONT");
      this.c.disk(id).unfill();
      if (!this.c.db(id).running) await this.c.db(id).restart();
    }
    for (const id of this.c.ids) if (!this.c.wolf(id)?.running) await this.c.startWolf(id);
  }
}

/**
 * A small disk: a tmpfs with a size limit mounted on `dir` (unmounted by `close`, and on exit).
 * `fill` takes all its free space with one file; `unfill` removes it.
 */
export class SmallDisk {
  private readonly fillFile: string;
  private unregister?: () => void;

  private constructor(
    readonly dir: string,
    readonly sizeMb: number,
  ) {
    this.fillFile = join(dir, "nemesis-fill");
  }

  static async mount(dir: string, sizeMb: number): Promise<SmallDisk> {
    mkdirSync(dir, { recursive: true });
    const r = await execArgv(["mount", "-t", "tmpfs", "-o", `size=${sizeMb}m,mode=0700`, "tmpfs", dir]);
    if (r.code !== 0) throw new Error(`mounting a ${sizeMb} MiB tmpfs on ${dir} failed: ${r.stderr.trim()}`);
    const disk = new SmallDisk(dir, sizeMb);
    disk.unregister = onExitCleanup(() => {
      runSync(["umount", "-l", dir]);
    }, 60);
    return disk;
  }

  /** Bytes free on the disk right now. */
  async free(): Promise<number> {
    const r = await execArgv(["df", "--output=avail", "-B1", this.dir]);
    const n = Number(r.stdout.trim().split("\n").pop());
    if (r.code !== 0 || !Number.isFinite(n)) throw new Error(`df ${this.dir} failed: ${r.stderr.trim()}`);
    return n;
  }

  /** Takes every free byte (writes zeros until ENOSPC, racing whatever else writes there); returns how many. */
  async fill(): Promise<number> {
    const before = await this.free();
    const r = await execArgv(["dd", "if=/dev/zero", `of=${this.fillFile}`, "bs=64k", "conv=notrunc", "oflag=append"], {
      timeoutMs: 60_000,
    });
    if (r.code !== 0 && !/No space left/.test(r.stderr))
      throw new Error(`filling ${this.dir} failed: ${r.stderr.trim()}`);
    const left = await this.free();
    if (left >= 64 * 1024) throw new Error(`filling ${this.dir} left ${left} bytes free`);
    return before - left;
  }

  unfill(): void {
    if (existsSync(this.fillFile)) rmSync(this.fillFile, { force: true });
  }

  async close(): Promise<void> {
    const r = await execArgv(["umount", this.dir]);
    if (r.code !== 0) await execArgv(["umount", "-l", this.dir]);
    this.unregister?.();
  }
}

/**
 * CPU-bound processes beside the cluster (`yes > /dev/null`, one per core by default), stopped by
 * PID with `stop`.
 */
export class CpuHogs {
  private readonly procs: Bun.Subprocess[] = [];
  private readonly unregister: () => void;

  constructor(count: number) {
    for (let i = 0; i < count; i++) {
      const p = Bun.spawn([...dieWithParentPrefix(), "yes"], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
      trackPid(p.pid, "cpu hog: yes > /dev/null");
      this.procs.push(p);
    }
    this.unregister = onExitCleanup(() => {
      for (const p of this.procs) signalPid(p.pid, "SIGKILL");
    }, 10);
  }

  get pids(): number[] {
    return this.procs.map((p) => p.pid);
  }

  async stop(): Promise<void> {
    for (const p of this.procs) signalPid(p.pid, "SIGKILL");
    await Promise.all(this.procs.map((p) => p.exited));
    for (const p of this.procs) untrackPid(p.pid);
    this.unregister();
  }
}
