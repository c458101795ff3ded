/** `net.toml`: wolf net (encrypted mesh VPN over TUN). */
import { renderConfig } from "../common/config/index.ts";
import { ConfigError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import { maskOf, parseCidr, parseIPv4 } from "./device/allowedips.ts";
import { decodeKey } from "./device/keys.ts";
import {
  bool,
  checkAbsolutePath,
  checkCidr,
  checkIPv4,
  defineSchema,
  type InferFields,
  int,
  nodeSection,
  section,
  str,
  tables,
} from "../common/config/index.ts";

/** "host:port" or "ip:port" with a port from 1 to 65535. */
export function isEndpoint(text: string): boolean {
  const port = /^[^\s:]+:(\d{1,5})$/.exec(text)?.[1];
  return port !== undefined && Number(port) >= 1 && Number(port) <= 65535;
}

const checkEndpoint = (v: string) =>
  v === "" || isEndpoint(v) ? undefined : `expected ip:port or host:port (port 1-65535), got ${JSON.stringify(v)}`;

export const netSchema = defineSchema(
  "net",
  "wolf net — encrypted mesh VPN over TUN (Noise IK, ChaCha20-Poly1305).",
  {
    node: nodeSection({ dataDir: "/var/lib/wolf/net" }),
    interface: section("The TUN interface and this node's overlay address.", {
      name: str("Interface name (max 15 characters).", "wolfnet0", {
        pattern: /^[A-Za-z0-9_.-]{1,15}$/,
        patternHint: "1-15 characters of [A-Za-z0-9_.-]",
      }),
      address: str("This node's overlay IPv4 address.", "10.0.10.1", { check: checkIPv4 }),
      subnet: str("Overlay network.", "10.0.10.0/24", { check: checkCidr }),
      listen_port: int("UDP port for the encrypted transport.", 9600, { min: 1, max: 65535 }),
      endpoint: str(
        'host:port other nodes reach this node at; put into invites ("" = this host\'s first non-loopback IPv4 and listen_port).',
        "",
        { check: checkEndpoint },
      ),
      mtu: int("Interface MTU.", 1400, { min: 576, max: 9000 }),
      socket_buffer: int(
        "UDP socket send/receive buffer in bytes (large, so bursts are not dropped: UdpRcvbufErrors).",
        8 * 1024 * 1024,
        { min: 65536, max: 1 << 30 },
      ),
      key_file: str("Private key file (0600).", "/etc/wolf/net.key", { check: checkAbsolutePath }),
      control_socket: str("Unix socket `wolf ctl net` talks to.", "/run/wolf/net.sock", { check: checkAbsolutePath }),
      discovery: bool(
        "Find peers on the LAN by broadcast. (Not built yet: ignored; peers come from [[peers]], invites and announcements.)",
        true,
      ),
      gateway: bool(
        "Act as an internet gateway for the mesh (NAT masquerade). (Not built yet: `wolf net up` refuses true.)",
        false,
      ),
    }),
    peers: tables(
      "Known peers. Only these keys (and peers admitted by an invite) are accepted.",
      {
        name: str("Peer name (for humans).", ""),
        public_key: str("Peer's public key (base64).", "", {
          pattern: /^[A-Za-z0-9+/]{43}=$/,
          patternHint: "a 32-byte base64 key from `wolf net pubkey`",
          required: true,
        }),
        endpoint: str('ip:port or host:port ("" = learned when it contacts us).', "", { check: checkEndpoint }),
        allowed_ip: str("The peer's overlay IPv4 address.", "", {
          check: (v) => (v === "" ? undefined : checkIPv4(v)),
        }),
      },
      { name: "node2", public_key: "<base64 public key>", endpoint: "192.168.1.12:9600", allowed_ip: "10.0.10.2" },
    ),
  },
  { check: (config, file) => void netSettings(config as NetConfig, file) },
);

export type NetConfig = InferFields<typeof netSchema.fields>;

// ----- derived settings ----------------------------------------------------------------------

export type NetPeerConfig = NetConfig["peers"][number];

/** What the daemon needs, parsed once: addresses as numbers, keys as bytes. */
export interface NetSettings {
  interfaceName: string;
  address: number;
  subnet: { ip: number; length: number };
  listenPort: number;
  mtu: number;
  keyFile: string;
  controlSocket: string;
  dataDir: string;
  peers: { name: string; publicKey: Uint8Array; endpoint: string; allowedIp: number }[];
}

export function netSettings(config: NetConfig, file: string): NetSettings {
  const i = config.interface;
  const subnet = parseCidr(i.subnet)!;
  const address = parseIPv4(i.address)!;
  if ((address & maskOf(subnet.length)) >>> 0 !== subnet.ip) {
    throw new ConfigError(`address ${i.address} is not inside subnet ${i.subnet}`, { file, key: "interface.address" });
  }
  const seen = new Map<number, string>([[address, "this node"]]);
  const peers = config.peers.map((p, n) => {
    const key = `peers[${n}]`;
    if (p.allowed_ip === "")
      throw new ConfigError("a peer needs its overlay address (allowed_ip)", { file, key: `${key}.allowed_ip` });
    const allowedIp = parseIPv4(p.allowed_ip)!;
    const other = seen.get(allowedIp);
    if (other)
      throw new ConfigError(`allowed_ip ${p.allowed_ip} is already used by ${other}`, {
        file,
        key: `${key}.allowed_ip`,
      });
    seen.set(allowedIp, p.name || `peer ${n}`);
    return { name: p.name, publicKey: decodeKey(p.public_key, `${key}.public_key`), endpoint: p.endpoint, allowedIp };
  });
  return {
    interfaceName: i.name,
    address,
    subnet,
    listenPort: i.listen_port,
    mtu: i.mtu,
    keyFile: i.key_file,
    controlSocket: i.control_socket,
    dataDir: config.node.data_dir,
    peers,
  };
}

/**
 * Adds (or updates, by public key) peers in the config file, keeping everything else. The file is
 * re-rendered from the schema (comments come back), written to a temp file and renamed.
 */
export function savePeers(file: string, config: NetConfig, peers: NetPeerConfig[]): NetConfig {
  const merged = [...config.peers];
  for (const peer of peers) {
    const at = merged.findIndex((p) => p.public_key === peer.public_key);
    if (at >= 0) merged[at] = { ...merged[at]!, ...peer, endpoint: peer.endpoint || merged[at]!.endpoint };
    else merged.push(peer);
  }
  const next = { ...config, peers: merged };
  writeNetConfig(file, next);
  return next;
}

export function writeNetConfig(file: string, config: NetConfig): void {
  writeFileAtomic(file, renderConfig(netSchema, config));
}
