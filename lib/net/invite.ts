/**
 * Invite/join without copying anything back.
 *
 * `wolf net invite` asks the running daemon for an invite: it allocates an overlay address no
 * peer and no other pending invite holds, draws a random 32-byte one-time secret, remembers both
 * (persisted, so a restart keeps them) and prints one line:
 *   wolfnet1:<base64url JSON {e: endpoint, a: offered address, s: subnet, i: inviter address,
 *                             k: inviter public key, x: secret}>
 * `wolf net join <line>` configures the joiner and sends a join request to the inviter's UDP port:
 *   [16,0,0,0] | invite id (8) | nonce (12) | ChaCha20-Poly1305(k_request, {public_key, name, listen_port})
 * The inviter answers (only if the request authenticates under the secret) with
 *   [17,0,0,0] | invite id (8) | nonce (12) | ChaCha20-Poly1305(k_response, {ok, address, peers} | {ok: false, error})
 * and adds the joiner as a peer. The invite id is a hash of the secret, the keys are derived from
 * it, so only the holder of the line can join, and nobody learns the secret from the wire.
 * A used invite answers the same joiner again (its reply may have been lost) and refuses anyone else;
 * an expired one is refused.
 */
import { existsSync, readFileSync } from "node:fs";
import { WolfError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import { formatIPv4, maskOf, parseCidr, parseIPv4, type Prefix } from "./device/allowedips.ts";
import { isEndpoint } from "./config.ts";
import { decodeKey } from "./device/keys.ts";
import { aeadOpen, aeadSeal, concat, hash, kdf2, randomBytes } from "./device/noise.ts";

export const MSG_JOIN_REQUEST = 16;
export const MSG_JOIN_RESPONSE = 17;
const HEADER_BYTES = 4 + 8 + 12;
const TOKEN_PREFIX = "wolfnet1:";
export const DEFAULT_INVITE_TTL_MS = 24 * 3600_000;

export interface InviteToken {
  /** host:port of the inviter's transport. */
  endpoint: string;
  /** Overlay address offered to the joiner. */
  address: string;
  subnet: string;
  /** The inviter's overlay address and public key (the joiner's first peer). */
  inviterAddress: string;
  inviterKey: string;
  secret: Uint8Array;
}

export function encodeToken(t: InviteToken): string {
  const body = {
    e: t.endpoint,
    a: t.address,
    s: t.subnet,
    i: t.inviterAddress,
    k: t.inviterKey,
    x: Buffer.from(t.secret).toString("base64url"),
  };
  return TOKEN_PREFIX + Buffer.from(JSON.stringify(body)).toString("base64url");
}

export function decodeToken(text: string): InviteToken {
  const bad = (why: string) =>
    new WolfError("usage", `not a valid invite line: ${why}`, {
      hint: "copy the whole line `wolf net invite` printed (it starts with wolfnet1:)",
    });
  const trimmed = text.trim();
  if (!trimmed.startsWith(TOKEN_PREFIX)) throw bad("it does not start with wolfnet1:");
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(trimmed.slice(TOKEN_PREFIX.length), "base64url").toString("utf8"));
  } catch {
    throw bad("it is truncated or damaged");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw bad("it is truncated or damaged");
  const fields = body as Record<string, unknown>;
  const str = (k: string) => {
    const v = fields[k];
    if (typeof v !== "string" || v === "") throw bad(`field ${k} is missing`);
    return v;
  };
  const token: InviteToken = {
    endpoint: str("e"),
    address: str("a"),
    subnet: str("s"),
    inviterAddress: str("i"),
    inviterKey: str("k"),
    secret: new Uint8Array(Buffer.from(str("x"), "base64url")),
  };
  if (token.secret.length !== 32) throw bad("the secret has the wrong length");
  const address = parseIPv4(token.address);
  const subnet = parseCidr(token.subnet);
  if (address === undefined || parseIPv4(token.inviterAddress) === undefined || !subnet)
    throw bad("an address is malformed");
  if ((address & maskOf(subnet.length)) >>> 0 !== subnet.ip) throw bad("the offered address is outside the subnet");
  if (!isEndpoint(token.endpoint)) throw bad("the endpoint is malformed");
  try {
    decodeKey(token.inviterKey, "the inviter's public key");
  } catch {
    throw bad("the inviter's public key is malformed");
  }
  return token;
}

function inviteId(secret: Uint8Array): Uint8Array {
  return hash(new TextEncoder().encode("wolfnet invite id"), secret).slice(0, 8);
}

function inviteKeys(secret: Uint8Array): { request: Uint8Array; response: Uint8Array } {
  const [request, response] = kdf2(secret, new TextEncoder().encode("wolfnet invite keys"));
  return { request, response };
}

function seal(type: number, secret: Uint8Array, key: Uint8Array, body: unknown): Uint8Array {
  const header = new Uint8Array(HEADER_BYTES);
  header[0] = type;
  header.set(inviteId(secret), 4);
  const nonce = randomBytes(12);
  header.set(nonce, 12);
  // The 12-byte random nonce goes in the header; the AEAD counter form takes 8 bytes, so use the
  // header as associated data and the nonce's last 8 bytes as the counter (random, single use).
  const counter = new DataView(nonce.buffer).getBigUint64(4, true);
  return concat(header, aeadSeal(key, counter, new TextEncoder().encode(JSON.stringify(body)), header));
}

function open(packet: Uint8Array, key: Uint8Array): unknown {
  if (packet.length < HEADER_BYTES + 16) return undefined;
  const header = packet.subarray(0, HEADER_BYTES);
  const counter = new DataView(packet.buffer, packet.byteOffset + 12, 12).getBigUint64(4, true);
  const plain = aeadOpen(key, counter, packet.subarray(HEADER_BYTES), header);
  if (!plain) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(plain));
  } catch {
    return undefined;
  }
}

export interface JoinRequest {
  public_key: string;
  name: string;
  listen_port: number;
}

export interface JoinPeer {
  name: string;
  public_key: string;
  endpoint: string;
  allowed_ip: string;
}

export type JoinResponse =
  | { ok: true; address: string; subnet: string; peers: JoinPeer[] }
  | { ok: false; error: string };

export function makeJoinRequest(secret: Uint8Array, req: JoinRequest): Uint8Array {
  return seal(MSG_JOIN_REQUEST, secret, inviteKeys(secret).request, req);
}

export function readJoinResponse(secret: Uint8Array, packet: Uint8Array): JoinResponse | undefined {
  if (packet[0] !== MSG_JOIN_RESPONSE) return undefined;
  if (!Buffer.from(packet.subarray(4, 12)).equals(Buffer.from(inviteId(secret)))) return undefined;
  return open(packet, inviteKeys(secret).response) as JoinResponse | undefined;
}

interface StoredInvite {
  id: string;
  secret: string;
  address: string;
  expiresMs: number;
  usedBy?: string;
  usedAtMs?: number;
  createdMs: number;
}

function isStoredInvite(i: unknown): i is StoredInvite {
  const v = i as Partial<StoredInvite> | null;
  return (
    typeof v === "object" &&
    v !== null &&
    typeof v.id === "string" &&
    typeof v.secret === "string" &&
    typeof v.address === "string" &&
    typeof v.expiresMs === "number"
  );
}

export interface AcceptedJoin {
  publicKey: string;
  name: string;
  address: string;
  listenPort: number;
}

/**
 * The inviter's pending invites: allocation, persistence (JSON, 0600) and answering join requests.
 * `decide` lets the daemon add the peer (and veto, e.g. the key is this node's own); it returns the
 * peer list to send back.
 */
export class InviteBook {
  private invites: StoredInvite[] = [];

  constructor(
    private readonly file: string,
    private readonly now: () => number = Date.now,
  ) {
    if (existsSync(file)) {
      try {
        const data = JSON.parse(readFileSync(file, "utf8"));
        // Keep only well-formed entries: a hand-edited or damaged file must not crash the daemon.
        if (Array.isArray(data)) this.invites = data.filter(isStoredInvite);
      } catch {
        this.invites = [];
      }
    }
  }

  private save(): void {
    writeFileAtomic(this.file, JSON.stringify(this.invites, null, 1));
  }

  /** Forget invites that expired more than a day ago (keeping recent ones to say "expired"). */
  private prune(): void {
    const cutoff = this.now() - 24 * 3600_000;
    this.invites = this.invites.filter((i) => i.expiresMs > cutoff);
  }

  pending(): { address: string; expiresMs: number; used: boolean }[] {
    return this.invites.map((i) => ({ address: i.address, expiresMs: i.expiresMs, used: i.usedBy !== undefined }));
  }

  /**
   * The lowest free host address in `subnet` that is not `taken` and not held by an unexpired,
   * unused invite (used invites' addresses are peers by then, so in `taken`).
   */
  allocateAddress(subnet: Prefix, taken: Set<number>): string {
    const now = this.now();
    const held = new Set(this.invites.filter((i) => !i.usedBy && i.expiresMs > now).map((i) => parseIPv4(i.address)!));
    const size = 2 ** (32 - subnet.length);
    for (let n = 1; n < size - 1; n++) {
      const ip = (subnet.ip + n) >>> 0;
      if (!taken.has(ip) && !held.has(ip)) return formatIPv4(ip);
    }
    throw new WolfError("state", `no free address left in ${formatIPv4(subnet.ip)}/${subnet.length}`);
  }

  create(opts: { subnet: Prefix; taken: Set<number>; ttlMs: number; address?: string }): {
    secret: Uint8Array;
    address: string;
    expiresMs: number;
  } {
    this.prune();
    const secret = randomBytes(32);
    let address = opts.address;
    if (address !== undefined) {
      const ip = parseIPv4(address);
      if (ip === undefined || (ip & maskOf(opts.subnet.length)) >>> 0 !== opts.subnet.ip)
        throw new WolfError("usage", `address ${address} is not in the subnet`);
      if (
        opts.taken.has(ip) ||
        this.invites.some((i) => !i.usedBy && i.expiresMs > this.now() && i.address === address)
      ) {
        throw new WolfError("usage", `address ${address} is already taken`);
      }
    } else {
      address = this.allocateAddress(opts.subnet, opts.taken);
    }
    const expiresMs = this.now() + opts.ttlMs;
    this.invites.push({
      id: Buffer.from(inviteId(secret)).toString("hex"),
      secret: Buffer.from(secret).toString("base64url"),
      address,
      expiresMs,
      createdMs: this.now(),
    });
    this.save();
    return { secret, address, expiresMs };
  }

  /**
   * Answers a join request. Returns undefined (send nothing) unless it authenticates under a known
   * invite; otherwise the reply to send and, if the joiner was admitted now, who it is.
   */
  handleRequest(
    packet: Uint8Array,
    admit: (join: AcceptedJoin) => { peers: JoinPeer[]; subnet: string } | { error: string },
  ): { reply: Uint8Array; accepted?: AcceptedJoin } | undefined {
    if (packet.length < HEADER_BYTES + 16 || packet[0] !== MSG_JOIN_REQUEST) return undefined;
    const id = Buffer.from(packet.subarray(4, 12)).toString("hex");
    const invite = this.invites.find((i) => i.id === id);
    if (!invite) return undefined;
    const secret = new Uint8Array(Buffer.from(invite.secret, "base64url"));
    const body = open(packet, inviteKeys(secret).request) as Partial<JoinRequest> | undefined;
    if (!body || typeof body.public_key !== "string") return undefined;
    const respond = (r: JoinResponse) => seal(MSG_JOIN_RESPONSE, secret, inviteKeys(secret).response, r);
    try {
      decodeKey(body.public_key, "public_key");
    } catch {
      return { reply: respond({ ok: false, error: "the join request carries a malformed public key" }) };
    }
    const join: AcceptedJoin = {
      publicKey: body.public_key,
      name: typeof body.name === "string" ? body.name.slice(0, 64) : "",
      address: invite.address,
      listenPort:
        typeof body.listen_port === "number" && body.listen_port > 0 && body.listen_port < 65536
          ? body.listen_port
          : 9600,
    };
    if (invite.usedBy !== undefined && invite.usedBy !== body.public_key) {
      return {
        reply: respond({
          ok: false,
          error: "this invite was already used by another node; ask for a new one (wolf net invite)",
        }),
      };
    }
    if (invite.usedBy === undefined && invite.expiresMs <= this.now()) {
      return { reply: respond({ ok: false, error: "this invite expired; ask for a new one (wolf net invite)" }) };
    }
    const decision = admit(join);
    if ("error" in decision) return { reply: respond({ ok: false, error: decision.error }) };
    const firstUse = invite.usedBy === undefined;
    if (firstUse) {
      invite.usedBy = body.public_key;
      invite.usedAtMs = this.now();
      this.save();
    }
    return {
      reply: respond({ ok: true, address: invite.address, subnet: decision.subnet, peers: decision.peers }),
      accepted: firstUse ? join : undefined,
    };
  }
}
