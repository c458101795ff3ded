/**
 * The joiner's side of invite/join (see invite.ts for the protocol): send the authenticated join
 * request to the inviter until it answers or the deadline passes, then write the offered address
 * and the peer list into net.toml. If this node's daemon is already running, it reloads its peers.
 */
import { WolfError } from "../common/errors.ts";
import { logger } from "../common/log.ts";
import { formatIPv4 } from "./device/allowedips.ts";
import { type NetConfig, writeNetConfig } from "./config.ts";
import { controlRequest } from "./control.ts";
import { resolveEndpoint } from "./daemon.ts";
import { type InviteToken, type JoinResponse, makeJoinRequest, readJoinResponse } from "./invite.ts";
import { encodeKey, type KeyPair } from "./device/keys.ts";
import { unpackEndpoint } from "./device/session.ts";

const log = logger("net");

export async function joinMesh(opts: {
  file: string;
  config: NetConfig;
  token: InviteToken;
  keys: KeyPair;
  name: string;
  timeoutMs: number;
}): Promise<{ address: string; peers: number }> {
  const { token, config } = opts;
  if (encodeKey(opts.keys.publicKey) === token.inviterKey)
    throw new WolfError("usage", "this invite was made by this node itself; run join on the new node");
  const target = unpackEndpoint(await resolveEndpoint(token.endpoint, { quiet: true }));
  if (!target) {
    throw new WolfError("network", `cannot resolve the inviter's endpoint ${token.endpoint}`, {
      hint: "check the host name (DNS, /etc/hosts), or ask for an invite with --endpoint IP:PORT",
    });
  }
  const request = makeJoinRequest(token.secret, {
    public_key: encodeKey(opts.keys.publicKey),
    name: opts.name,
    listen_port: config.interface.listen_port,
  });

  let answer: JoinResponse | undefined;
  let wake: () => void = () => {};
  const socket = await Bun.udpSocket({
    socket: {
      data(_s, data) {
        const r = readJoinResponse(token.secret, new Uint8Array(data));
        if (r) {
          answer = r;
          wake();
        }
      },
      // Bun reports an ICMP "port unreachable" with no error object; keep retrying until the deadline.
      error(_s, err?: Error) {
        log.debug(`join socket: ${err?.message ?? "send failed (nothing listens there?)"}`);
      },
    },
  });
  try {
    const deadline = Date.now() + opts.timeoutMs;
    while (!answer && Date.now() < deadline) {
      socket.send(request, target.port, formatIPv4(target.ip));
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, Math.min(1000, Math.max(1, deadline - Date.now())));
      });
    }
  } finally {
    socket.close();
  }
  if (!answer) {
    throw new WolfError(
      "network",
      `no answer from the inviter at ${token.endpoint} within ${Math.round(opts.timeoutMs / 1000)} s`,
      {
        hint: "is `wolf net up` running there and UDP reachable? An unknown or damaged invite also gets no answer.",
      },
    );
  }
  if (!answer.ok) throw new WolfError("auth", `the inviter refused: ${answer.error}`);

  const peers = answer.peers.filter((p) => p.public_key !== encodeKey(opts.keys.publicKey));
  const next: NetConfig = {
    ...config,
    interface: { ...config.interface, address: answer.address, subnet: answer.subnet },
    peers: [...config.peers.filter((p) => !peers.some((q) => q.public_key === p.public_key)), ...peers],
  };
  writeNetConfig(opts.file, next);
  // A running daemon picks up the new peers at once.
  await controlRequest(config.interface.control_socket, "POST", "/reload").catch(() => undefined);
  return { address: answer.address, peers: peers.length };
}
