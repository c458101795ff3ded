/**
 * The cluster core (used by wolf scale): discovery, membership, election with terms and quorum,
 * and a replicated append-only log. See node.ts for the API and election.ts / membership.ts /
 * replication.ts for the rules.
 */
export { ClusterNode, type NodeOptions, type NodeDeps, type NodeEvents } from "./node.ts";
export { startCluster, type RunningCluster } from "./start.ts";
export { clusterSection, type ClusterConfig } from "./config.ts";
export { MemoryLogStore, FileLogStore } from "./log-store.ts";
export { MemoryStableStore, FileStableStore } from "./stable-store.ts";
export { TcpTransport } from "./transport-tcp.ts";
export { SimNetwork, MemoryTransport } from "./transport-memory.ts";
export { Discovery } from "./discovery.ts";
export { SimClock, realClock, seededRng } from "./clock.ts";
export { formatStatus, type ClusterStatus, type PeerStatus } from "./status.ts";
export * from "./types.ts";
