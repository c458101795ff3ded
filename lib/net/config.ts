/** `net.toml`: wolf net (encrypted mesh VPN over TUN). */
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

const checkEndpoint = (v: string) => (v === "" || /^[^\s:]+:\d{1,5}$/.test(v) ? undefined : `expected ip:port or host:port, got ${JSON.stringify(v)}`);

export const netSchema = defineSchema("net", "wolf net — encrypted mesh VPN over TUN (Noise IK, ChaCha20-Poly1305).", {
  node: nodeSection({ dataDir: "/var/lib/wolf/net" }),
  interface: section("The TUN interface and this node's overlay address.", {
    name: str("Interface name (max 15 characters).", "wolfnet0", { pattern: /^[A-Za-z0-9_.-]{1,15}$/, patternHint: "1-15 characters of [A-Za-z0-9_.-]" }),
    address: str("This node's overlay IPv4 address.", "10.0.10.1", { check: checkIPv4 }),
    subnet: str("Overlay network.", "10.0.10.0/24", { check: checkCidr }),
    listen_port: int("UDP port for the encrypted transport.", 9600, { min: 1, max: 65535 }),
    mtu: int("Interface MTU.", 1400, { min: 576, max: 9000 }),
    key_file: str("Private key file (0600).", "/etc/wolf/net.key", { check: checkAbsolutePath }),
    control_socket: str("Unix socket `wolf ctl net` talks to.", "/run/wolf/net.sock", { check: checkAbsolutePath }),
    discovery: bool("Find peers on the LAN by broadcast.", true),
    gateway: bool("Act as an internet gateway for the mesh (NAT masquerade).", false),
  }),
  peers: tables(
    "Known peers. Only these keys (and peers admitted by an invite) are accepted.",
    {
      name: str("Peer name (for humans).", ""),
      public_key: str("Peer's public key (base64).", "", { pattern: /^[A-Za-z0-9+/]{43}=$/, patternHint: "a 32-byte base64 key from `wolf net pubkey`", required: true }),
      endpoint: str("ip:port or host:port (\"\" = learned when it contacts us).", "", { check: checkEndpoint }),
      allowed_ip: str("The peer's overlay IPv4 address.", "", { check: (v) => (v === "" ? undefined : checkIPv4(v)) }),
    },
    { name: "node2", public_key: "<base64 public key>", endpoint: "192.168.1.12:9600", allowed_ip: "10.0.10.2" },
  ),
});

export type NetConfig = InferFields<typeof netSchema.fields>;
