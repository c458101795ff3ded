/**
 * Network namespaces as test hosts. A TestNet is a LAN: a bridge living in its own namespace (so
 * nothing is added to the root namespace), with hosts attached by veth pairs created directly in
 * their namespaces. A host can sit behind a NAT router (its own namespace, nftables masquerade).
 *
 * Every namespace is named `wt<creator pid>-<octet>…`, so a later run can tell which ones belong
 * to a dead test process (`sweepStaleNamespaces`, called by the bun test preload).
 */
import { mkdirSync, openSync, closeSync, readdirSync, readFileSync, statSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  HARNESS_ROOT,
  dieWithParentPrefix,
  execArgv,
  killPidsSync,
  LiveSet,
  ownerAlive,
  pidAlive,
  procStartTime,
  runDir,
  runSync,
  signalPid,
  trackPid,
  untrackPid,
  type ExecOptions,
  type ExecResult,
} from "./procs.ts";
import { waitUntil } from "../../lib/common/wait.ts";

const NETNS_DIR = "/run/netns";
const SUBNET_DIR = join(HARNESS_ROOT, "subnets");
/** Namespace names this harness creates: `wt<pid>-…`. */
const NS_NAME = /^wt(\d+)-/;
const HOST_NAME = /^[a-z][a-z0-9]{0,11}$/;
/** Hosts get 10.77.<octet>.<HOST_BASE + index>. */
const HOST_BASE = 10;
const MAX_ATTACHMENTS = 240;

/** True when this process can create network namespaces (root, and the `ip` tool present). */
export function hasNetnsSupport(): boolean {
  return process.getuid?.() === 0 && Bun.which("ip") !== null;
}

/** Why netns tests are skipped, for a clear skip message; undefined when they can run. */
export function netnsSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (network namespaces)";
  if (Bun.which("ip") === null) return "needs iproute2 (`ip`)";
  return undefined;
}

async function ip(args: string[], what?: string): Promise<ExecResult> {
  const r = await execArgv(["ip", ...args], { timeoutMs: 10_000 });
  if (r.code !== 0)
    throw new Error(`${what ?? "ip"} failed: ip ${args.join(" ")}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r;
}

/** PIDs of the processes in each named namespace (what `ip netns pids` does, for many at once). */
export function namespacePids(names: string[]): Map<string, number[]> {
  const byInode = new Map<string, string>();
  const result = new Map<string, number[]>();
  for (const name of names) {
    try {
      const st = statSync(join(NETNS_DIR, name));
      byInode.set(`${st.dev}:${st.ino}`, name);
      result.set(name, []);
    } catch {
      // already gone
    }
  }
  if (byInode.size === 0) return result;
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return result;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const st = statSync(`/proc/${entry}/ns/net`);
      const name = byInode.get(`${st.dev}:${st.ino}`);
      if (name) result.get(name)!.push(Number(entry));
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return result;
}

function listNamespaces(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
}

function deleteNamespacesSync(names: string[]): void {
  if (names.length === 0) return;
  const pids = [...namespacePids(names).values()].flat();
  killPidsSync(
    pids.map((pid) => ({ pid, startTime: procStartTime(pid) })),
    5000,
  );
  for (const name of names) runSync(["ip", "netns", "del", name]);
}

// ---- subnet claims: /tmp/wolf-test/subnets/<octet> holds "<pid> <starttime>" of its owner ----------

function claimOwner(octet: number): { pid: number; startTime: string } | undefined {
  try {
    const [pid, startTime] = readFileSync(join(SUBNET_DIR, String(octet)), "utf8")
      .trim()
      .split(" ");
    return { pid: Number(pid), startTime: startTime ?? "" };
  } catch {
    return undefined;
  }
}

function tryClaim(octet: number): boolean {
  mkdirSync(SUBNET_DIR, { recursive: true });
  let fd: number;
  try {
    fd = openSync(join(SUBNET_DIR, String(octet)), "wx");
  } catch {
    return false;
  }
  writeSync(fd, `${process.pid} ${procStartTime(process.pid) ?? "0"}\n`);
  closeSync(fd);
  return true;
}

function releaseClaim(octet: number): void {
  const owner = claimOwner(octet);
  if (owner?.pid !== process.pid) return;
  try {
    unlinkSync(join(SUBNET_DIR, String(octet)));
  } catch {
    // already released
  }
}

function sweepStaleClaims(): void {
  let names: string[];
  try {
    names = readdirSync(SUBNET_DIR);
  } catch {
    return;
  }
  for (const name of names) {
    const owner = claimOwner(Number(name));
    if (owner && pidAlive(owner.pid, owner.startTime)) continue;
    try {
      unlinkSync(join(SUBNET_DIR, name));
    } catch {
      // another sweeper got it
    }
  }
}

/**
 * Deletes namespaces (and kills their processes first) whose creating test process is gone, and
 * frees their subnet claims. Fast and silent when nothing is stale; never throws.
 * Returns the names of the namespaces it deleted.
 */
export function sweepStaleNamespaces(): string[] {
  const stale: string[] = [];
  try {
    for (const name of listNamespaces()) {
      const m = NS_NAME.exec(name);
      if (m && !ownerAlive(Number(m[1]))) stale.push(name);
    }
    if (stale.length > 0 && Bun.which("ip") !== null) deleteNamespacesSync(stale);
    sweepStaleClaims();
  } catch (err) {
    console.error(`[harness] namespace sweep failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  return stale.filter((name) => !listNamespaces().includes(name));
}

// ---- TestNet -------------------------------------------------------------------------------------

export interface TestNetOptions {
  /** Third octet of the LAN subnet 10.77.<octet>.0/24; default: the lowest one no live TestNet holds. */
  octet?: number;
}

export interface AddHostOptions {
  /** Put the host behind a NAT router: it can reach the LAN, the LAN cannot reach it. */
  behindNat?: boolean;
}

type Tracked = { proc: Bun.Subprocess; startTime?: string };

// Order 0: before the run dir's own cleanup (order 100) removes the PID records.
const liveNets: LiveSet<TestNet> = new LiveSet<TestNet>({
  what: "TestNet(s)",
  order: 0,
  destroySync: (net) => net.destroySync(),
  stop: (net) => net.destroy(),
});

export class Host {
  /** For a host behind NAT: the router's namespace and the LAN address its traffic appears from. */
  readonly nat?: { routerNs: string; publicIp: string };

  constructor(
    private readonly net: TestNet,
    /** The name given to addHost. */
    readonly name: string,
    /** Namespace name (for `ip netns exec`, `startMariaDB({ netns })`, `runWolf(…, { netns })`). */
    readonly ns: string,
    /** Address on the LAN, or the private address behind the NAT. */
    readonly ip: string,
    nat?: { routerNs: string; publicIp: string },
  ) {
    this.nat = nat;
  }

  /** Runs a command in this host's namespace and returns its exit code and output (default deadline 10 s). */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return execArgv(["ip", "netns", "exec", this.ns, ...argv], opts);
  }

  /** Starts a long-running process in this host's namespace; the TestNet kills it on destroy. */
  spawn<
    const In extends Bun.SpawnOptions.Writable = "ignore",
    const Out extends Bun.SpawnOptions.Readable = "pipe",
    const Err extends Bun.SpawnOptions.Readable = "inherit",
  >(argv: string[], opts?: Bun.SpawnOptions.SpawnOptions<In, Out, Err>): Bun.Subprocess<In, Out, Err> {
    return this.net.spawnIn(this.ns, argv, opts);
  }

  /** Ping `target` once from this host: true if a reply came back within `timeoutS` seconds. */
  async canPing(target: string, timeoutS = 1): Promise<boolean> {
    const r = await this.exec(["ping", "-c", "1", "-W", String(timeoutS), "-q", target], {
      timeoutMs: timeoutS * 1000 + 5000,
    });
    return r.code === 0;
  }
}

export class TestNet {
  readonly hosts: Host[] = [];
  private readonly namespaces: string[] = [];
  private readonly tracked = new Set<Tracked>();
  /** Each host's port on the LAN bridge. */
  private readonly ports = new Map<Host, string>();
  private attachments = 0;
  private destroying?: Promise<void>;
  private destroyed = false;

  private constructor(
    /** Third octet: the LAN is 10.77.<octet>.0/24. */
    readonly octet: number,
    /** The namespace holding the bridge. */
    readonly lanNs: string,
  ) {}

  /** The LAN subnet in CIDR notation. */
  get subnet(): string {
    return `10.77.${this.octet}.0/24`;
  }

  static async create(opts: TestNetOptions = {}): Promise<TestNet> {
    const reason = netnsSkipReason();
    if (reason) throw new Error(`TestNet ${reason}`);
    runDir(); // records this process's start time, so sweeps can tell a reused PID from us
    const octet = claimOctet(opts.octet);
    const net = new TestNet(octet, `wt${process.pid}-${octet}_lan`);
    liveNets.add(net);
    try {
      await net.addNamespace(net.lanNs);
      await ip(["-n", net.lanNs, "link", "add", "br0", "type", "bridge"], "creating the LAN bridge");
      await ip(["-n", net.lanNs, "link", "set", "br0", "up"]);
    } catch (err) {
      await net.destroy();
      throw err;
    }
    return net;
  }

  /** Adds a host (a namespace attached to the LAN, or behind a NAT router attached to the LAN). */
  async addHost(name: string, opts: AddHostOptions = {}): Promise<Host> {
    if (this.destroying) throw new Error("TestNet.addHost: this TestNet was destroyed");
    if (!HOST_NAME.test(name)) throw new Error(`TestNet.addHost: host name must match ${HOST_NAME} (got "${name}")`);
    if (this.hosts.some((h) => h.name === name)) throw new Error(`TestNet.addHost: host "${name}" exists already`);
    if (this.attachments >= MAX_ATTACHMENTS)
      throw new Error(`TestNet.addHost: at most ${MAX_ATTACHMENTS} hosts per TestNet`);
    const index = this.attachments++;
    const lanIp = `10.77.${this.octet}.${HOST_BASE + index}`;
    const ns = `wt${process.pid}-${this.octet}-${name}`;

    if (!opts.behindNat) {
      await this.attach(ns, index, "eth0", lanIp);
      const host = new Host(this, name, ns, lanIp);
      this.hosts.push(host);
      this.ports.set(host, `p${index}`);
      return host;
    }

    if (Bun.which("nft") === null) throw new Error("TestNet.addHost({ behindNat }) needs nftables (`nft`)");
    const router = `wt${process.pid}-${this.octet}_nat-${name}`;
    const privNet = `192.168.${index}`;
    await this.attach(router, index, "lan0", lanIp);
    await this.addNamespace(ns);
    await ip(
      ["link", "add", "priv0", "netns", router, "type", "veth", "peer", "name", "eth0", "netns", ns],
      "creating the NAT link",
    );
    await ip(["-n", router, "addr", "add", `${privNet}.1/24`, "dev", "priv0"]);
    await ip(["-n", router, "link", "set", "priv0", "up"]);
    await ip(["-n", ns, "addr", "add", `${privNet}.2/24`, "dev", "eth0"]);
    await ip(["-n", ns, "link", "set", "eth0", "up"]);
    await ip(["-n", ns, "route", "add", "default", "via", `${privNet}.1`]);
    const fwd = await execArgv(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    if (fwd.code !== 0) throw new Error(`enabling forwarding in ${router}: ${fwd.stderr.trim()}`);
    // Masquerade what leaves towards the LAN; from the LAN only replies to connections made from inside.
    const rules = `
      table ip wolftest {
        chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname "lan0" masquerade; }
        chain forward {
          type filter hook forward priority filter; policy drop;
          ct state established,related accept
          iifname "priv0" oifname "lan0" accept
        }
      }`;
    const nft = await execArgv(["ip", "netns", "exec", router, "nft", "-f", "-"], { stdin: rules });
    if (nft.code !== 0) throw new Error(`loading NAT rules in ${router}: ${nft.stderr.trim()}`);
    const host = new Host(this, name, ns, `${privNet}.2`, { routerNs: router, publicIp: lanIp });
    this.hosts.push(host);
    this.ports.set(host, `p${index}`);
    return host;
  }

  /** Unplugs a host's cable from the LAN switch (its LAN port goes down); `reconnect` plugs it back. */
  async disconnect(host: Host): Promise<void> {
    await ip(["-n", this.lanNs, "link", "set", this.portOf(host), "down"]);
  }

  async reconnect(host: Host): Promise<void> {
    await ip(["-n", this.lanNs, "link", "set", this.portOf(host), "up"]);
  }

  private portOf(host: Host): string {
    const port = this.ports.get(host);
    if (!port) throw new Error(`host ${host.name} is not on this TestNet`);
    return port;
  }

  /** Starts a process in namespace `ns` and tracks it (killed by PID on destroy and on exit). */
  spawnIn<
    const In extends Bun.SpawnOptions.Writable = "ignore",
    const Out extends Bun.SpawnOptions.Readable = "pipe",
    const Err extends Bun.SpawnOptions.Readable = "inherit",
  >(ns: string, argv: string[], opts?: Bun.SpawnOptions.SpawnOptions<In, Out, Err>): Bun.Subprocess<In, Out, Err> {
    if (this.destroying) throw new Error("TestNet.spawn: this TestNet was destroyed");
    // setpriv and `ip netns exec` both exec in place, so the PID we get is the command's own.
    const proc = Bun.spawn(
      [...dieWithParentPrefix(), "ip", "netns", "exec", ns, ...argv],
      opts ?? ({} as Bun.SpawnOptions.SpawnOptions<In, Out, Err>),
    );
    const entry: Tracked = { proc, startTime: procStartTime(proc.pid) };
    this.tracked.add(entry);
    trackPid(proc.pid, `netns ${ns}: ${argv.join(" ")}`);
    void proc.exited.then(() => {
      this.tracked.delete(entry);
      untrackPid(proc.pid);
    });
    return proc;
  }

  /**
   * Kills every process started here or still inside its namespaces (SIGTERM, then SIGKILL after
   * `graceMs`) and deletes the namespaces. Idempotent; safe to call from afterAll after a failure.
   */
  destroy(graceMs = 3000): Promise<void> {
    this.destroying ??= this.teardown(graceMs);
    return this.destroying;
  }

  private async teardown(graceMs: number): Promise<void> {
    const victims = new Map<number, string | undefined>();
    for (const t of this.tracked) victims.set(t.proc.pid, t.startTime);
    for (const pid of [...namespacePids(this.namespaces).values()].flat()) {
      if (!victims.has(pid)) victims.set(pid, procStartTime(pid));
    }
    const alive = () => [...victims].filter(([pid, st]) => pidAlive(pid, st));
    for (const [pid] of alive()) signalPid(pid, "SIGTERM");
    try {
      await waitUntil(() => alive().length === 0, {
        timeoutMs: graceMs,
        intervalMs: 20,
        what: "test processes to exit",
      });
    } catch {
      for (const [pid] of alive()) signalPid(pid, "SIGKILL");
      await waitUntil(() => alive().length === 0, { timeoutMs: 5000, intervalMs: 20, what: "test processes to die" });
    }
    for (const pid of victims.keys()) untrackPid(pid);
    this.tracked.clear();
    const errors: string[] = [];
    for (const ns of [...this.namespaces].reverse()) {
      const r = await execArgv(["ip", "netns", "del", ns]);
      if (r.code !== 0 && listNamespaces().includes(ns)) errors.push(`${ns}: ${r.stderr.trim()}`);
    }
    this.namespaces.length = 0;
    releaseClaim(this.octet);
    this.destroyed = true;
    liveNets.delete(this);
    if (errors.length > 0) throw new Error(`TestNet.destroy: could not delete namespaces: ${errors.join("; ")}`);
  }

  /** Exit-handler variant of destroy: synchronous, SIGKILL only. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    killPidsSync([...this.tracked].map((t) => ({ pid: t.proc.pid, startTime: t.startTime })));
    deleteNamespacesSync([...this.namespaces].reverse());
    this.namespaces.length = 0;
    releaseClaim(this.octet);
    liveNets.delete(this);
  }

  private async addNamespace(ns: string): Promise<void> {
    await ip(["netns", "add", ns], "creating a namespace");
    this.namespaces.push(ns);
    await ip(["-n", ns, "link", "set", "lo", "up"]);
  }

  /** Creates namespace `ns` and plugs its interface `ifname` (address `lanIp`) into LAN port p<index>. */
  private async attach(ns: string, index: number, ifname: string, lanIp: string): Promise<void> {
    await this.addNamespace(ns);
    const port = `p${index}`;
    await ip(
      ["link", "add", port, "netns", this.lanNs, "type", "veth", "peer", "name", ifname, "netns", ns],
      "creating a LAN link",
    );
    await ip(["-n", this.lanNs, "link", "set", port, "master", "br0"]);
    await ip(["-n", this.lanNs, "link", "set", port, "up"]);
    await ip(["-n", ns, "addr", "add", `${lanIp}/24`, "dev", ifname]);
    await ip(["-n", ns, "link", "set", ifname, "up"]);
  }
}

function claimOctet(wanted?: number): number {
  if (wanted !== undefined) {
    if (!Number.isInteger(wanted) || wanted < 1 || wanted > 254)
      throw new Error(`TestNet: octet must be 1..254 (got ${wanted})`);
    if (!tryClaim(wanted))
      throw new Error(`TestNet: subnet 10.77.${wanted}.0/24 is held by pid ${claimOwner(wanted)?.pid}`);
    return wanted;
  }
  for (let octet = 1; octet <= 254; octet++) if (tryClaim(octet)) return octet;
  throw new Error(`TestNet: all 254 subnets 10.77.x.0/24 are claimed (see ${SUBNET_DIR})`);
}
