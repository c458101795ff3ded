/**
 * `wolf net up`: wires the pieces together. The main thread runs the control plane (PeerSet:
 * handshakes and timers), the control socket, invites, peer announcements and DNS re-resolution;
 * two Workers run the data plane (TUN → encrypt → UDP, UDP → decrypt → TUN).
 */
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import { closeFd, setNonBlocking } from "../../native/libc.ts";
import { aead } from "../../native/sodium.ts";
import { configureInterface, openTun } from "../../native/tun.ts";
import { boundPort, udpSender, udpSocket } from "../../native/udp.ts";
import { errnoReason, WolfError } from "../common/errors.ts";
import { ensureDir } from "../common/files.ts";
import { logger } from "../common/log.ts";
import { startWorker } from "../common/workers.ts";
import { formatIPv4, parseIPv4 } from "./device/allowedips.ts";
import { type NetConfig, netSettings, savePeers } from "./config.ts";
import { claimControlSocket, type ControlHandlers, type NodeStatus, type PeerStatus, serveControl } from "./control.ts";
import type { DataplaneEvent, DataplaneStart } from "./device/dataplane.worker.ts";
import { messageType, MSG_COOKIE_REPLY, MSG_INITIATION, MSG_RESPONSE } from "./device/handshake.ts";
import { DEFAULT_INVITE_TTL_MS, encodeToken, InviteBook, type JoinPeer, MSG_JOIN_REQUEST } from "./invite.ts";
import { encodeKey, type KeyPair, loadKeyFile } from "./device/keys.ts";
import { type Peer, PeerSet } from "./device/peers.ts";
import { decodeAnnouncement, encodeAnnouncement, PEX_PORT } from "./pex.ts";
import { G_STAGED, G_WORKERS_READY, KP_VALID, packEndpoint, SessionTable, unpackEndpoint } from "./device/session.ts";

const log = logger("net");

export function formatEndpoint(packed: bigint): string | null {
  const ep = unpackEndpoint(packed);
  return ep ? `${formatIPv4(ep.ip)}:${ep.port}` : null;
}

/** Resolves "ip:port" or "host:port" to a packed endpoint (0n if empty or unresolvable; logged unless quiet). */
export async function resolveEndpoint(text: string, opts: { quiet?: boolean } = {}): Promise<bigint> {
  if (!text) return 0n;
  const at = text.lastIndexOf(":");
  const host = text.slice(0, at);
  const port = Number(text.slice(at + 1));
  const literal = parseIPv4(host);
  if (literal !== undefined) return packEndpoint(literal, port);
  try {
    const [first] = await Bun.dns.lookup(host, { family: 4 });
    const ip = first ? parseIPv4(first.address) : undefined;
    return ip === undefined ? 0n : packEndpoint(ip, port);
  } catch (err) {
    if (!opts.quiet) log.warn(`cannot resolve ${host}: ${(err as Error).message}; will retry`);
    return 0n;
  }
}

/** This host's first non-loopback IPv4 address outside the overlay interface. */
function firstLocalIPv4(exclude: string): string | undefined {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (name === exclude) continue;
    for (const a of addrs ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return undefined;
}

export interface DaemonOptions {
  configFile: string;
  config: NetConfig;
}

export async function runNetDaemon(opts: DaemonOptions): Promise<number> {
  let config = opts.config;
  const settings = netSettings(config, opts.configFile);
  if (config.interface.gateway) {
    throw new WolfError("not_implemented", "interface.gateway = true: gateway mode is not built yet", {
      hint: `set gateway = false in ${opts.configFile}`,
    });
  }
  const keys: KeyPair = loadKeyFile(settings.keyFile);
  // Everything that can be refused is checked before the TUN interface exists.
  ensureDir(settings.dataDir, "the state directory (node.data_dir)");
  await claimControlSocket(settings.controlSocket);
  const startedMs = Date.now();
  const cipher = aead();

  let tunFd: number;
  try {
    tunFd = openTun(settings.interfaceName);
    configureInterface(settings.interfaceName, {
      address: settings.address,
      prefixLength: settings.subnet.length,
      mtu: settings.mtu,
    });
    setNonBlocking(tunFd, true);
  } catch (err) {
    throw new WolfError("io", `cannot create the TUN interface ${settings.interfaceName}: ${(err as Error).message}`, {
      hint: "wolf net up needs root (CAP_NET_ADMIN) and /dev/net/tun; is another daemon using this interface name?",
      cause: err,
    });
  }
  let udpFd: number;
  try {
    udpFd = udpSocket({ port: settings.listenPort, bufferBytes: config.interface.socket_buffer });
  } catch (err) {
    closeFd(tunFd);
    throw new WolfError("network", `cannot listen on UDP port ${settings.listenPort}: ${(err as Error).message}`, {
      hint: "another process (or wolf net daemon) uses it; change interface.listen_port",
      cause: err,
    });
  }
  const listenPort = boundPort(udpFd);
  const table = new SessionTable();

  const sendTo = udpSender(udpFd);
  const send = (packet: Uint8Array, endpoint: bigint) => {
    const ep = unpackEndpoint(endpoint);
    if (!ep) return;
    sendTo(packet, ep.ip, ep.port);
  };

  const peerSet = new PeerSet(keys, table, cipher, send, Date.now, {
    onHandshake: (peer, asInitiator) =>
      log.info(
        `session with ${peer.spec.name || peer.publicKeyText} (${formatIPv4(peer.spec.allowedIp)}) ${asInitiator ? "initiated" : "accepted"}`,
      ),
    onReject: (reason, source) => log.debug(`refused handshake from ${formatEndpoint(source)}: ${reason}`),
  });
  /** Peers whose endpoint is a hostname: re-resolved every 60 s. */
  const hostnames = new Map<Peer, string>();

  const addConfiguredPeer = async (p: { name: string; publicKey: Uint8Array; endpoint: string; allowedIp: number }) => {
    const peer = peerSet.addPeer({
      publicKey: p.publicKey,
      name: p.name,
      allowedIp: p.allowedIp,
      allowedPrefix: 32,
      endpoint: await resolveEndpoint(p.endpoint),
    });
    const host = p.endpoint.slice(0, p.endpoint.lastIndexOf(":"));
    if (p.endpoint && parseIPv4(host) === undefined) hostnames.set(peer, p.endpoint);
    return peer;
  };
  for (const p of settings.peers) await addConfiguredPeer(p);

  // ----- invites and announcements --------------------------------------------------------------
  const invites = new InviteBook(join(settings.dataDir, "invites.json"));
  const ownEndpoint = () =>
    config.interface.endpoint || `${firstLocalIPv4(settings.interfaceName) ?? "127.0.0.1"}:${listenPort}`;
  const peerEntry = (peer: Peer): JoinPeer => ({
    name: peer.spec.name,
    public_key: peer.publicKeyText,
    endpoint: formatEndpoint(table.endpoint(peer.index)) ?? "",
    allowed_ip: formatIPv4(peer.spec.allowedIp),
  });
  const persistPeers = (entries: JoinPeer[]) => {
    try {
      config = savePeers(opts.configFile, config, entries);
    } catch (err) {
      log.warn(`could not save peers to ${opts.configFile}: ${(err as Error).message}`);
    }
  };

  const pex = await Bun.udpSocket({
    hostname: formatIPv4(settings.address),
    port: PEX_PORT,
    socket: {
      data(_sock, data, port, address) {
        const sender = parseIPv4(address);
        const from = peerSet.peers.find((p) => p.spec.allowedIp === sender);
        if (!from || port !== PEX_PORT) return log.debug(`ignored announcement from ${address}:${port}`);
        const a = decodeAnnouncement(new Uint8Array(data));
        if (!a) return log.debug(`malformed announcement from ${address}`);
        for (const p of a.peers) {
          if (p.public_key === encodeKey(keys.publicKey)) continue;
          const ip = parseIPv4(p.allowed_ip)!;
          if (ip === settings.address) continue;
          const known = peerSet.byKey(p.public_key);
          const holder = peerSet.peers.find((q) => q.spec.allowedIp === ip);
          if (known || (holder && holder.publicKeyText !== p.public_key)) continue;
          void resolveEndpoint(p.endpoint).then((endpoint) => {
            try {
              const peer = peerSet.addPeer({
                publicKey: new Uint8Array(Buffer.from(p.public_key, "base64")),
                name: p.name,
                allowedIp: ip,
                allowedPrefix: 32,
                endpoint,
              });
              log.info(`peer ${p.name || p.public_key} (${p.allowed_ip}) introduced by ${from.spec.name || address}`);
              persistPeers([peerEntry(peer)]);
              if (endpoint !== 0n) peerSet.initiate(peer);
            } catch (err) {
              log.warn(`announced peer ${p.allowed_ip} refused: ${(err as Error).message}`);
            }
          });
        }
      },
      // Bun passes no error object for an ICMP "unreachable" answer.
      error(_sock, err?: Error) {
        log.debug(`announcement socket: ${err?.message ?? "send failed"}`);
      },
    },
  }).catch((err) => {
    closeFd(udpFd);
    closeFd(tunFd);
    throw new WolfError(
      "network",
      `cannot listen for peer announcements on ${formatIPv4(settings.address)}:${PEX_PORT}: ${errnoReason(err)}`,
      {
        hint: "another wolf net daemon on this host may use the same overlay address",
        cause: err,
      },
    );
  });
  const announce = (newPeer: Peer) => {
    const message = encodeAnnouncement({ type: "peers", peers: [peerEntry(newPeer)] });
    for (const p of peerSet.peers) {
      if (p === newPeer) continue;
      pex.send(message, PEX_PORT, formatIPv4(p.spec.allowedIp));
    }
  };

  const handleJoin = (packet: Uint8Array, source: bigint) => {
    const src = unpackEndpoint(source)!;
    const result = invites.handleRequest(packet, (j) => {
      if (j.publicKey === encodeKey(keys.publicKey)) return { error: "the joiner has this node's own key" };
      const ip = parseIPv4(j.address)!;
      const holder = peerSet.peers.find((p) => p.spec.allowedIp === ip);
      if (holder && holder.publicKeyText !== j.publicKey) return { error: `address ${j.address} is taken` };
      const existing = peerSet.byKey(j.publicKey);
      if (existing && existing.spec.allowedIp !== ip)
        return { error: "this key is already a peer with another address" };
      const peer = peerSet.addPeer({
        publicKey: new Uint8Array(Buffer.from(j.publicKey, "base64")),
        name: j.name,
        allowedIp: ip,
        allowedPrefix: 32,
        endpoint: packEndpoint(src.ip, j.listenPort),
      });
      const self: JoinPeer = {
        name: hostname(),
        public_key: encodeKey(keys.publicKey),
        endpoint: ownEndpoint(),
        allowed_ip: formatIPv4(settings.address),
      };
      return {
        subnet: config.interface.subnet,
        peers: [self, ...peerSet.peers.filter((p) => p !== peer).map(peerEntry)],
      };
    });
    if (!result)
      return log.debug(`ignored join request from ${formatEndpoint(source)} (unknown invite or bad authentication)`);
    send(result.reply, source);
    if (result.accepted) {
      const peer = peerSet.byKey(result.accepted.publicKey)!;
      log.info(`node ${result.accepted.name || result.accepted.publicKey} joined as ${result.accepted.address}`);
      persistPeers([peerEntry(peer)]);
      announce(peer);
    }
  };

  // ----- data plane ---------------------------------------------------------------------------------
  const onWorkerEvent = (event: MessageEvent<DataplaneEvent>) => {
    const e = event.data;
    if (e.type === "packet") {
      const type = messageType(e.data);
      if (type === MSG_INITIATION || type === MSG_RESPONSE || type === MSG_COOKIE_REPLY)
        peerSet.handlePacket(e.data, e.source);
      else if (type === MSG_JOIN_REQUEST) handleJoin(e.data, e.source);
    } else if (e.type === "kick") {
      peerSet.tick();
    } else if (e.type === "error") {
      log.error(`data plane (${e.role}) failed: ${e.message}`);
      shutdown(1);
    } else if (e.type === "ready") {
      log.debug(`data plane ${e.role} ready (${e.aead})`);
    }
  };
  const workers: Worker[] = [];
  for (const role of ["rx", "tx"] as const) {
    const worker = await startWorker("lib/net/device/dataplane.worker.ts");
    worker.onmessage = onWorkerEvent;
    worker.onerror = (ev) => {
      log.error(`data plane (${role}) crashed: ${ev.message}`);
      shutdown(1);
    };
    const start: DataplaneStart = { type: "start", role, tunFd, udpFd, mtu: settings.mtu, buffers: table.buffers };
    worker.postMessage(start);
    workers.push(worker);
  }

  // ----- control socket -------------------------------------------------------------------------------
  const peerStatus = (peer: Peer): PeerStatus => {
    const now = Date.now();
    const slot = table.currentSlot(peer.index);
    const valid = slot >= 0 && table.kpState(slot) === KP_VALID;
    const traffic = table.traffic(peer.index);
    return {
      name: peer.spec.name,
      public_key: peer.publicKeyText,
      allowed_ip: formatIPv4(peer.spec.allowedIp),
      endpoint: formatEndpoint(table.endpoint(peer.index)),
      last_handshake: peer.lastHandshakeMs ? new Date(peer.lastHandshakeMs).toISOString() : null,
      last_handshake_ago_s: peer.lastHandshakeMs ? Math.round((now - peer.lastHandshakeMs) / 100) / 10 : null,
      handshakes: peer.handshakes,
      rx_bytes: traffic.rxBytes,
      tx_bytes: traffic.txBytes,
      rx_packets: traffic.rxPackets,
      tx_packets: traffic.txPackets,
      session: valid
        ? {
            local_index: table.kpLocalIndex(slot),
            age_s: Math.round((now - table.kpCreatedMs(slot)) / 100) / 10,
            tx_counter: Number(table.kpSendCounter(slot)),
            initiator: table.kpIsInitiator(slot),
          }
        : null,
    };
  };
  const handlers: ControlHandlers = {
    status(): NodeStatus {
      const peers = peerSet.peers;
      return {
        interface: settings.interfaceName,
        address: formatIPv4(settings.address),
        subnet: config.interface.subnet,
        public_key: encodeKey(keys.publicKey),
        listen_port: listenPort,
        mtu: settings.mtu,
        uptime_s: Math.round((Date.now() - startedMs) / 1000),
        pid: process.pid,
        aead: cipher.name,
        workers: Atomics.load(table.global, G_WORKERS_READY),
        peers: peers.length,
        peers_with_session: peers.filter((p) => table.currentSlot(p.index) >= 0).length,
        drops: table.dropCounters(),
        staged_waiting_for_key: table.counter(G_STAGED),
        rejected_handshakes: Object.fromEntries(peerSet.rejects),
        pending_invites: invites.pending().filter((i) => !i.used && i.expiresMs > Date.now()).length,
      };
    },
    peers: () => peerSet.peers.map(peerStatus),
    async invite(body) {
      const taken = new Set<number>([settings.address, ...peerSet.peers.map((p) => p.spec.allowedIp)]);
      const ttlMs = typeof body.ttl_s === "number" && body.ttl_s > 0 ? body.ttl_s * 1000 : DEFAULT_INVITE_TTL_MS;
      const created = invites.create({ subnet: settings.subnet, taken, ttlMs, address: body.address });
      const endpoint = body.endpoint || ownEndpoint();
      const token = encodeToken({
        endpoint,
        address: created.address,
        subnet: config.interface.subnet,
        inviterAddress: formatIPv4(settings.address),
        inviterKey: encodeKey(keys.publicKey),
        secret: created.secret,
      });
      log.info(`invite created for ${created.address} (expires ${new Date(created.expiresMs).toISOString()})`);
      return { token, address: created.address, expires: new Date(created.expiresMs).toISOString() };
    },
    async reload() {
      const { loadConfig } = await import("../common/config/index.ts");
      const { netSchema } = await import("./config.ts");
      config = loadConfig(netSchema, opts.configFile);
      const fresh = netSettings(config, opts.configFile);
      for (const p of fresh.peers) {
        const peer = await addConfiguredPeer(p);
        if (table.currentSlot(peer.index) < 0 && table.endpoint(peer.index) !== 0n && !peer.initiationInFlight)
          peerSet.initiate(peer);
      }
      return { peers: peerSet.peers.length };
    },
  };
  const control = await serveControl(settings.controlSocket, handlers);

  // ----- timers -------------------------------------------------------------------------------------------
  const ticker = setInterval(() => peerSet.tick(), 100);
  const resolver = setInterval(async () => {
    for (const [peer, text] of hostnames) {
      const ep = await resolveEndpoint(text);
      if (ep !== 0n && ep !== table.endpoint(peer.index)) peerSet.setEndpoint(peer, ep);
    }
  }, 60_000);
  peerSet.initiateAll();

  log.info(
    `wolf net up: ${settings.interfaceName} ${formatIPv4(settings.address)}/${settings.subnet.length} mtu ${settings.mtu}, ` +
      `udp port ${listenPort}, ${peerSet.peers.length} peer(s), ${cipher.name} ChaCha20-Poly1305, key ${encodeKey(keys.publicKey)}`,
  );

  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((r) => (resolveExit = r));
  let stopping = false;
  function shutdown(code: number): void {
    if (stopping) return;
    stopping = true;
    clearInterval(ticker);
    clearInterval(resolver);
    control.stop();
    pex.close();
    for (const w of workers) w.terminate();
    log.info("wolf net stopped");
    resolveExit(code);
    // Workers blocked in read()/recvmmsg() do not stop on terminate(); closing the fds and exiting does.
    setTimeout(() => {
      closeFd(udpFd);
      closeFd(tunFd);
      process.exit(code);
    }, 50);
  }
  process.on("SIGINT", () => shutdown(0));
  process.on("SIGTERM", () => shutdown(0));
  return exited;
}
