/**
 * Discovery: authenticated UDP beacons, broadcast on every IPv4 interface's subnet (and sent to any
 * static targets) once per interval. A beacon says "node <id> of cluster <name> is at <addr>";
 * it is MACed with the cluster key (derived from secret + name, auth.ts), so a stranger's or
 * another cluster's beacon is dropped and counted, never trusted. Each beacon carries a random boot
 * ID, a sequence number and a timestamp: a replayed beacon (same boot, old sequence, or an old boot
 * older than 5 minutes) is dropped.
 *
 * Several nodes (and several clusters) on one machine share the port: sockets bind with
 * SO_REUSEADDR and broadcasts are delivered to every one of them.
 */
import { createSocket, type Socket } from "node:dgram";
import { networkInterfaces } from "node:os";
import { randomBytes } from "node:crypto";
import { logger } from "../common/log.ts";
import { BEACON_CONTEXT, clusterKey, MAC_BYTES, open, seal } from "./auth.ts";
import type { NodeId } from "./types.ts";

export interface DiscoveryOptions {
  id: NodeId;
  clusterName: string;
  secret: string;
  /** UDP port of the beacons (cluster.discovery_port). */
  port: number;
  bindHost?: string;
  /** The cluster transport address to announce (host:port). */
  advertiseAddr: string;
  intervalMs?: number;
  /** Broadcast on every IPv4 interface (default true). */
  broadcast?: boolean;
  /** Extra unicast destinations, host:port. */
  targets?: string[];
  onPeer: (id: NodeId, addr: string) => void;
}

interface Beacon {
  v: 1;
  cluster: string;
  id: NodeId;
  addr: string;
  boot: string;
  seq: number;
  ts: number;
}

const MAX_CLOCK_SKEW_MS = 5 * 60_000;

/** Directed broadcast addresses of this host's IPv4 interfaces (no default route needed). */
export function broadcastAddresses(): string[] {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family !== "IPv4" || a.internal || !a.netmask) continue;
      const ip = a.address.split(".").map(Number);
      const mask = a.netmask.split(".").map(Number);
      out.add(ip.map((o, i) => (o | (~mask[i]! & 255)) & 255).join("."));
    }
  }
  return [...out];
}

export class Discovery {
  private readonly log = logger("discovery");
  private readonly key: Buffer;
  private readonly boot = randomBytes(8).toString("hex");
  private seq = 0;
  private socket: Socket | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private seen = new Map<NodeId, { boot: string; seq: number; addr: string; at: number }>();
  private readonly stats: Record<string, number> = {
    beacons_out: 0,
    beacons_in: 0,
    forged: 0,
    other_cluster: 0,
    replayed: 0,
    malformed: 0,
    duplicate_id: 0,
    send_errors: 0,
  };

  constructor(private readonly opts: DiscoveryOptions) {
    this.key = clusterKey(opts.secret, opts.clusterName);
  }

  async start(): Promise<void> {
    const socket = createSocket({ type: "udp4", reuseAddr: true });
    // Without an error handler an ICMP unreachable (or any socket error) would crash the process.
    socket.on("error", (err) => {
      this.stats.send_errors!++;
      this.log.debug(`discovery socket: ${err.message}`);
    });
    socket.on("message", (msg) => this.onPacket(msg));
    await new Promise<void>((resolve) => socket.bind(this.opts.port, this.opts.bindHost ?? "0.0.0.0", () => resolve()));
    socket.setBroadcast(true);
    this.socket = socket;
    this.announce();
    this.timer = setInterval(() => this.announce(), this.opts.intervalMs ?? 1000);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.socket?.close();
    this.socket = null;
  }

  counters(): Record<string, number> {
    return { ...this.stats };
  }

  /** Nodes seen, with the address they announced. */
  peers(): Map<NodeId, string> {
    return new Map([...this.seen].map(([id, s]) => [id, s.addr]));
  }

  /** The signed packet we would send now (exposed for tests). */
  beacon(): Buffer {
    const b: Beacon = {
      v: 1,
      cluster: this.opts.clusterName,
      id: this.opts.id,
      addr: this.opts.advertiseAddr,
      boot: this.boot,
      seq: ++this.seq,
      ts: Date.now(),
    };
    return seal(this.key, Buffer.from(JSON.stringify(b)), BEACON_CONTEXT);
  }

  private announce(): void {
    const socket = this.socket;
    if (!socket) return;
    const packet = this.beacon();
    const dests: [string, number][] = [];
    if (this.opts.broadcast ?? true) for (const b of broadcastAddresses()) dests.push([b, this.opts.port]);
    for (const t of this.opts.targets ?? []) {
      const m = /^(.*):(\d+)$/.exec(t);
      if (m) dests.push([m[1]!, Number(m[2])]);
    }
    for (const [host, port] of dests) {
      this.stats.beacons_out!++;
      socket.send(packet, port, host, (err) => {
        if (err) this.stats.send_errors!++;
      });
    }
  }

  /** Handles one received packet (public for tests that inject packets). */
  onPacket(packet: Buffer): void {
    this.stats.beacons_in!++;
    if (packet.length <= MAC_BYTES || packet.length > 4096) {
      this.stats.malformed!++;
      return;
    }
    let claimed: Partial<Beacon>;
    try {
      claimed = JSON.parse(packet.subarray(0, packet.length - MAC_BYTES).toString("utf8")) as Partial<Beacon>;
    } catch {
      this.stats.malformed!++;
      return;
    }
    if (claimed.cluster !== this.opts.clusterName) {
      this.stats.other_cluster!++;
      return;
    }
    if (!open(this.key, packet, BEACON_CONTEXT)) {
      this.stats.forged!++;
      return;
    }
    const b = claimed as Beacon;
    if (
      typeof b.id !== "number" ||
      typeof b.addr !== "string" ||
      typeof b.boot !== "string" ||
      typeof b.seq !== "number" ||
      typeof b.ts !== "number"
    ) {
      this.stats.malformed!++;
      return;
    }
    if (b.id === this.opts.id) {
      if (b.boot !== this.boot) {
        this.stats.duplicate_id!++;
        this.log.warn(`another node announces our node ID ${b.id} from ${b.addr}: node IDs must be unique`);
      }
      return;
    }
    const prev = this.seen.get(b.id);
    if (prev && prev.boot === b.boot ? b.seq <= prev.seq : Math.abs(b.ts - Date.now()) > MAX_CLOCK_SKEW_MS) {
      this.stats.replayed!++;
      return;
    }
    const isNew = !prev || prev.addr !== b.addr;
    this.seen.set(b.id, { boot: b.boot, seq: b.seq, addr: b.addr, at: Date.now() });
    if (isNew) this.log.debug(`discovered node ${b.id} at ${b.addr}`);
    this.opts.onPeer(b.id, b.addr);
  }
}
