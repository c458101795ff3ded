/**
 * Talking to a userspace wireguard-go through its UAPI socket (the reference peer that interop
 * tests and the VPN benchmark compare wolf net against). The socket directory is shared by all
 * namespaces, so each test picks its own interface name.
 */
import { connect } from "node:net";

/** Where wireguard-go puts the UAPI socket of `ifname`. */
export const wgSocketPath = (ifname: string) => `/var/run/wireguard/${ifname}.sock`;

/** A key in UAPI's hex form. */
export const wgHex = (key: Uint8Array) => Buffer.from(key).toString("hex");

/** Sends a raw UAPI request ("set=1\n…" or "get=1\n") and returns the reply, up to its blank line. */
export function wgUapi(ifname: string, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(wgSocketPath(ifname));
    let reply = "";
    sock.on("data", (d) => {
      reply += d.toString();
      if (reply.includes("\n\n")) {
        sock.end();
        resolve(reply);
      }
    });
    sock.on("error", reject);
    sock.write(`${request}\n`);
  });
}

/** A UAPI `set` (lines like "private_key=…\nlisten_port=…\n"); rejects unless it answers errno=0. */
export async function wgSet(ifname: string, body: string): Promise<void> {
  const reply = await wgUapi(ifname, `set=1\n${body}`);
  if (!/errno=0/.test(reply)) throw new Error(`UAPI ${ifname}: ${reply.trim()}`);
}
