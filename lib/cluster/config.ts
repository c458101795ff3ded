/**
 * The `[cluster]` config section, shared by wolf scale and wolf disk (one definition, two users).
 * Each subsystem picks its own default ports so both can run on one machine.
 */
import { randomBytes } from "node:crypto";
import {
  bool,
  checkHostPort,
  checkIPv4,
  type InferFields,
  int,
  oneOf,
  section,
  str,
  strList,
} from "../common/config/index.ts";

export function clusterSection(defaults: { port: number; discoveryPort: number; name: string }) {
  return section("Cluster membership, election and log shipping (shared by every node of this cluster).", {
    name: str("Cluster name. Nodes only talk to nodes with the same name and secret.", defaults.name, {
      pattern: /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/,
      patternHint: "letters, digits, '.', '_' or '-' (max 63)",
    }),
    secret: str(
      "Shared secret that authenticates every cluster frame and discovery beacon (hex, >= 32 chars).\n`init` generates one; copy the same value to every node of the cluster.",
      "",
      {
        pattern: /^[0-9a-f]{32,}$/,
        patternHint: "at least 32 lowercase hex characters (run `wolf <sub> init` to generate one)",
        generate: () => randomBytes(32).toString("hex"),
        secret: true,
      },
    ),
    node_id: int(
      "This node's ID (1-1023), unique in the cluster. The lowest eligible ID leads, unless an operator set a\npreferred leader (`wolf ctl scale promote <id>`).",
      1,
      {
        min: 1,
        max: 1023,
      },
    ),
    bind_address: str("Address the cluster transport listens on.", "0.0.0.0", { check: checkIPv4 }),
    advertise_address: str('Address other nodes use to reach this one ("" = first non-loopback IPv4).', "", {
      check: (v) => (v === "" ? undefined : checkIPv4(v)),
    }),
    port: int("TCP port of the cluster transport.", defaults.port, { min: 1, max: 65535 }),
    peers: strList("Static peers as host:port (optional with discovery on).", [], { item: checkHostPort }),
    discovery: bool("Find peers by authenticated UDP broadcast beacons on the LAN.", true),
    discovery_port: int("UDP port for discovery beacons.", defaults.discoveryPort, { min: 1, max: 65535 }),
    heartbeat_ms: int("Heartbeat interval in milliseconds.", 500, { min: 50, max: 60_000 }),
    dead_after_ms: int(
      "A node silent this long is Offline; the leader then removes it from the voters (while more than\nmin_voters remain) and adds it back once it returns and has caught up (ms).",
      30_000,
      { min: 1_000 },
    ),
    min_voters: int(
      "Automatic removal of dead voters never takes the voter set below this many nodes (so a 3-node\ncluster keeps needing 2 of 3 votes however long a node is gone).",
      3,
      { min: 1, max: 1023 },
    ),
    quorum: oneOf(
      "Majority rule. auto (= always): a leader needs a majority of the voters for elections and commits,\nso a minority side never serves (a 2-node cluster stops when one node is gone; add a witness).\nnever = one survivor keeps serving: it can lose acknowledged writes on failover or partition.",
      ["auto", "always", "never"] as const,
      "auto",
    ),
    never_leader: bool("Never let this node become leader.", false),
    failback: oneOf(
      "Who moves leadership back to the preferred leader (the one `wolf ctl scale promote` set, else the lowest\neligible ID) once it is back and caught up: auto = the leader hands over by itself; manual = nobody,\nleadership moves only on a failure or an operator's promote/demote.",
      ["auto", "manual"] as const,
      "auto",
    ),
    witness: bool(
      "This node is a witness (like Galera's arbitrator): it votes and stores the log durably (its copy counts\nfor acknowledgements) but runs no database and never serves; it leads only for a moment when no other\nvoter has the newest entries, then hands over. A third vote for a 2-node cluster, on any small machine.",
      false,
    ),
    bootstrap_expect: int(
      "Form a brand-new cluster once this many nodes with empty logs see each other (the lowest ID writes the\nfirst voter set). 0 = join an existing cluster (the leader adds this node), or use `start --bootstrap`.",
      0,
      { min: 0, max: 1023 },
    ),
    lag_entries: int(
      "A follower more than this many entries behind the leader is Lagging (or Syncing after a start).",
      1000,
      { min: 1 },
    ),
  });
}

/** The `[cluster]` section as loaded. */
export type ClusterConfig = InferFields<ReturnType<typeof clusterSection>["fields"]>;
