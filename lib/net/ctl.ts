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

/** GETs `path` from the daemon named by the config in `args`. */
function ask<T>(args: { config?: string }, path: string): Promise<T> {
  const { file, config } = loadFromArgs(netSchema, args);
  return controlRequest<T>(config.interface.control_socket, "GET", path, undefined, { configFile: file });
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

/** A read-only verb: asks the daemon for `path` and prints it as a table, or JSON with --json. */
function view<T>(name: string, description: string, path: string, print: (value: T) => void) {
  return defineCommand({
    meta: { name, description },
    args: netArgs,
    async run({ args }) {
      const value = await ask<T>(args, path);
      if (args.json) printJson(value);
      else print(value);
    },
  });
}

export const ctlNetCommands = {
  status: view("status", "Daemon and interface status", "/status", printStatus),
  peers: view("peers", "Peers with endpoint, last handshake, rx/tx", "/peers", printPeers),
  info: view<NodeStatus & { peer_list: PeerStatus[] }>("info", "Status and the peer list together", "/info", (info) => {
    printStatus(info);
    process.stdout.write("\n");
    printPeers(info.peer_list);
  }),
};
