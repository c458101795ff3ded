/**
 * The daemon's local control API: HTTP/JSON over a unix socket (mode 0600, so only root talks to
 * it). `wolf ctl net` and `wolf net invite` are its clients. Status is live, never a stale file.
 *   GET  /status   interface, address, key, listen port, uptime, drop counters
 *   GET  /peers    each peer: name, key, overlay IP, endpoint, last handshake, rx/tx
 *   POST /invite   {ttl_s?, address?, endpoint?} → {token, address, expires}
 *   POST /reload   re-read peers from net.toml
 */
import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { defaultConfigPath } from "../common/config/index.ts";
import { DaemonClient } from "../common/daemon-client.ts";
import { WolfError } from "../common/errors.ts";
import { ensureDir } from "../common/files.ts";

export interface PeerStatus {
  name: string;
  public_key: string;
  allowed_ip: string;
  endpoint: string | null;
  last_handshake: string | null;
  last_handshake_ago_s: number | null;
  handshakes: number;
  rx_bytes: number;
  tx_bytes: number;
  rx_packets: number;
  tx_packets: number;
  session: { local_index: number; age_s: number; tx_counter: number; initiator: boolean } | null;
}

export interface NodeStatus {
  interface: string;
  address: string;
  subnet: string;
  public_key: string;
  listen_port: number;
  mtu: number;
  uptime_s: number;
  pid: number;
  aead: string;
  workers: number;
  peers: number;
  peers_with_session: number;
  drops: Record<string, number>;
  /** Packets that waited for a handshake (sent once it completed, or dropped after 10 s). */
  staged_waiting_for_key: number;
  rejected_handshakes: Record<string, number>;
  pending_invites: number;
}

export interface ControlHandlers {
  status(): NodeStatus;
  peers(): PeerStatus[];
  invite(body: {
    ttl_s?: number;
    address?: string;
    endpoint?: string;
  }): Promise<{ token: string; address: string; expires: string }>;
  reload(): Promise<{ peers: number }>;
}

/**
 * Makes sure the control socket can be served: its directory exists, no live daemon answers on it
 * (a stale socket file from a killed daemon is removed). The daemon calls this before it creates
 * the TUN interface, so a second `wolf net up` says "already running" and touches nothing.
 */
export async function claimControlSocket(socketPath: string): Promise<void> {
  ensureDir(dirname(socketPath), "the control socket's directory (interface.control_socket)");
  if (existsSync(socketPath)) {
    const alive = await controlRequest(socketPath, "GET", "/status").then(
      () => true,
      () => false,
    );
    if (alive)
      throw new WolfError("state", `a wolf net daemon is already running (control socket ${socketPath})`, {
        hint: "stop it first, or give this one another config (interface.control_socket, name, listen_port)",
      });
    unlinkSync(socketPath);
  }
}

export async function serveControl(socketPath: string, handlers: ControlHandlers): Promise<{ stop(): void }> {
  await claimControlSocket(socketPath);
  const json = (data: unknown, status = 200) => Response.json(data, { status });
  const server = Bun.serve({
    unix: socketPath,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      try {
        if (req.method === "GET" && path === "/status") return json(handlers.status());
        if (req.method === "GET" && path === "/peers") return json(handlers.peers());
        if (req.method === "GET" && path === "/info")
          return json({ ...handlers.status(), peer_list: handlers.peers() });
        if (req.method === "POST" && path === "/invite")
          return json(await handlers.invite((await req.json().catch(() => ({}))) as never));
        if (req.method === "POST" && path === "/reload") return json(await handlers.reload());
        return json({ error: `no such endpoint: ${req.method} ${path}` }, 404);
      } catch (err) {
        const e = err as WolfError;
        return json({ error: e.message, code: e.code ?? "internal" }, 400);
      }
    },
  });
  chmodSync(socketPath, 0o600);
  return {
    stop() {
      server.stop(true);
      try {
        unlinkSync(socketPath);
      } catch {
        // already gone
      }
    },
  };
}

const CONTROL_TIMEOUT_MS = 5000;

/** Calls the daemon; throws a WolfError a user can act on when it is not running. */
export function controlRequest<T = unknown>(
  socketPath: string,
  method: "GET" | "POST",
  path: string,
  body?: unknown,
  opts: { configFile?: string } = {},
): Promise<T> {
  const configFile = opts.configFile;
  const config = configFile && configFile !== defaultConfigPath("net") ? ` --config ${configFile}` : "";
  const client = new DaemonClient(
    { base: "http://wolf-net", socketPath },
    {
      service: "wolf net",
      startHint: `start it with \`wolf net up${config}\` (or check interface.control_socket in ${configFile ?? "net.toml"})`,
      timeoutMs: CONTROL_TIMEOUT_MS,
    },
  );
  return client.request<T>(method, path, body);
}
