/**
 * Starting a real cluster node from the `[cluster]` config: TCP transport, discovery beacons,
 * static peers and the ClusterNode on the real clock. Scale calls this with its own LogStore (its
 * WAL), StableStore and FSM.
 */
import { networkInterfaces } from "node:os";
import { logger } from "../common/log.ts";
import type { ClusterConfig } from "./config.ts";
import { Discovery } from "./discovery.ts";
import { ClusterNode } from "./node.ts";
import { TcpTransport } from "./transport-tcp.ts";
import type { FSM, LogStore, StableStore } from "./types.ts";

export interface RunningCluster {
  node: ClusterNode;
  transport: TcpTransport;
  discovery: Discovery | null;
  /** host:port other nodes use to reach this one. */
  address: string;
  stop(): void;
}

/** First non-loopback IPv4 address of this host (the default advertise address). */
export function firstIPv4(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

export async function startCluster(
  cfg: ClusterConfig,
  deps: { logStore: LogStore; stableStore: StableStore; fsm: FSM },
  opts: { bootstrap?: boolean } = {},
): Promise<RunningCluster> {
  const log = logger("cluster");
  const host =
    cfg.advertise_address || (cfg.bind_address !== "0.0.0.0" ? cfg.bind_address : firstIPv4()) || "127.0.0.1";
  const address = `${host}:${cfg.port}`;
  let node: ClusterNode | null = null;
  const transport = new TcpTransport({
    id: cfg.node_id,
    clusterName: cfg.name,
    secret: cfg.secret,
    bindHost: cfg.bind_address,
    port: cfg.port,
    advertiseAddr: address,
    deadConnectionMs: Math.max(1000, 4 * cfg.heartbeat_ms),
    onPeer: (id, addr) => node?.addPeer(id, addr),
  });
  await transport.listen();
  node = new ClusterNode(
    {
      id: cfg.node_id,
      addr: address,
      heartbeatMs: cfg.heartbeat_ms,
      quorum: cfg.quorum,
      deadAfterMs: cfg.dead_after_ms,
      minVoters: cfg.min_voters,
      neverLeader: cfg.never_leader,
      witness: cfg.witness,
      bootstrapExpect: cfg.bootstrap_expect,
      lagEntries: cfg.lag_entries,
      failback: cfg.failback,
    },
    { transport, ...deps },
  );
  if (opts.bootstrap) node.bootstrap([{ id: cfg.node_id, addr: address }]);
  for (const p of cfg.peers) transport.addStaticPeer(p);
  let discovery: Discovery | null = null;
  if (cfg.discovery) {
    discovery = new Discovery({
      id: cfg.node_id,
      clusterName: cfg.name,
      secret: cfg.secret,
      port: cfg.discovery_port,
      advertiseAddr: address,
      intervalMs: Math.max(cfg.heartbeat_ms, 1000),
      onPeer: (id, addr) => node?.addPeer(id, addr),
    });
    await discovery.start();
  }
  node.start();
  log.info(
    `node ${cfg.node_id} of cluster "${cfg.name}" listening on ${cfg.bind_address}:${cfg.port} (advertised ${address})`,
  );
  return {
    node,
    transport,
    discovery,
    address,
    stop() {
      node?.stop();
      discovery?.stop();
      transport.close();
    },
  };
}
