/** `wolf ctl net status|peers|info`: asks the running daemon over its unix socket and prints the answer. */
import { defineCommand } from "citty";
import { configArgs, loadFromArgs } from "../common/config-commands.ts";
import { formatBytes, formatTable } from "../common/format.ts";
import { netSchema } from "./config.ts";
import { controlRequest, type NodeStatus, type PeerStatus } from "./control.ts";

const netArgs = {
  ...configArgs("net"),
  json: { type: "boolean", description: "Print JSON instead of a table" },
} as const;

function netSocket(args: { config?: string }): string {
  return loadFromArgs(netSchema, args).config.interface.control_socket;
}

function printPeers(peers: PeerStatus[]): void {
  const rows = [["NAME", "OVERLAY IP", "ENDPOINT", "LAST HANDSHAKE", "RX", "TX", "PUBLIC KEY"]];
  for (const p of peers) {
    rows.push([
      p.name || "-",
      p.allowed_ip,
      p.endpoint ?? "(unknown)",
      p.last_handshake_ago_s === null ? "never" : `${p.last_handshake_ago_s}s ago`,
      formatBytes(p.rx_bytes),
      formatBytes(p.tx_bytes),
      p.public_key,
    ]);
  }
  process.stdout.write(`${formatTable(rows)}\n`);
}

function printStatus(s: NodeStatus): void {
  const drops = Object.entries(s.drops).filter(([, n]) => n > 0);
  const lines = [
    `interface   ${s.interface} ${s.address} (${s.subnet}), mtu ${s.mtu}`,
    `public key  ${s.public_key}`,
    `listening   udp ${s.listen_port}`,
    `uptime      ${s.uptime_s}s (pid ${s.pid}), ${s.aead} ChaCha20-Poly1305, ${s.workers} data-plane workers`,
    `peers       ${s.peers} (${s.peers_with_session} with a session), ${s.pending_invites} pending invite(s)`,
    `dropped     ${drops.length ? drops.map(([k, n]) => `${k}=${n}`).join(" ") : "nothing"}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export const ctlNetCommands = {
  status: defineCommand({
    meta: { name: "status", description: "Daemon and interface status" },
    args: netArgs,
    async run({ args }) {
      const s = await controlRequest<NodeStatus>(netSocket(args), "GET", "/status");
      if (args.json) printJson(s);
      else printStatus(s);
    },
  }),
  peers: defineCommand({
    meta: { name: "peers", description: "Peers with endpoint, last handshake, rx/tx" },
    args: netArgs,
    async run({ args }) {
      const peers = await controlRequest<PeerStatus[]>(netSocket(args), "GET", "/peers");
      if (args.json) printJson(peers);
      else printPeers(peers);
    },
  }),
  info: defineCommand({
    meta: { name: "info", description: "Status and the peer list together" },
    args: netArgs,
    async run({ args }) {
      const info = await controlRequest<NodeStatus & { peer_list: PeerStatus[] }>(netSocket(args), "GET", "/info");
      if (args.json) return printJson(info);
      printStatus(info);
      process.stdout.write("\n");
      printPeers(info.peer_list);
    },
  }),
};
