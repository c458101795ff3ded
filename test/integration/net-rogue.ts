/**
 * The attacker and the wiretap for the wolf net attack tests (run inside a namespace with
 * `ip netns exec`, one JSON line per result on stdout):
 *   capture <port> <max>          record UDP datagrams to/from <port> seen on this namespace's
 *                                 interfaces (AF_PACKET), until <max> were seen (or it is killed)
 *   handshake <pubkey> <ip:port>  send a well-formed initiation (valid mac1) from a key nobody knows
 *   send <ip:port> <base64>...    send raw datagrams
 * `handshake` and `send` then listen 1.5 s and report how many replies came back.
 */
import { ptr } from "bun:ffi";
import { check, closeFd, EAGAIN, errno, libc, MSG_DONTWAIT, POLLIN } from "../../native/libc.ts";
import { CookieGenerator } from "../../lib/net/device/cookie.ts";
import { createInitiation, HandshakeState, INITIATION_MAC1_OFFSET } from "../../lib/net/device/handshake.ts";
import { decodeKey, newKeyPair } from "../../lib/net/device/keys.ts";

const [mode, ...rest] = process.argv.slice(2);
const out = (obj: unknown) => process.stdout.write(`${JSON.stringify(obj)}\n`);

async function listenAndSend(target: string, packets: Uint8Array[]): Promise<void> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  let replies = 0;
  const sock = await Bun.udpSocket({
    socket: {
      data() {
        replies++;
      },
      error() {},
    },
  });
  for (const p of packets) sock.send(p, port, host);
  await Bun.sleep(1500); // an attacker waits a while for an answer that must never come
  sock.close();
  out({ sent: packets.length, replies });
}

async function capture(port: number, max: number): Promise<void> {
  const c = libc();
  const ETH_P_IP = 0x0800;
  const fd = check("socket(AF_PACKET)", c.socket(17, 2, ((ETH_P_IP & 0xff) << 8) | (ETH_P_IP >> 8)));
  const buf = new Uint8Array(65536);
  const pfd = new Uint8Array(8);
  new DataView(pfd.buffer).setInt32(0, fd, true);
  new DataView(pfd.buffer).setInt16(4, POLLIN, true);
  out({ capturing: true });
  let seen = 0;
  while (seen < max) {
    c.poll(ptr(pfd), 1, 50);
    for (;;) {
      const n = Number(c.recvfrom(fd, ptr(buf), buf.length, MSG_DONTWAIT, null, null));
      if (n < 0) {
        if (errno() !== EAGAIN) throw new Error(`recvfrom: errno ${errno()}`);
        break;
      }
      const v = new DataView(buf.buffer, 0, n);
      if (n < 28 || buf[0]! >> 4 !== 4 || buf[9] !== 17) continue;
      const ihl = (buf[0]! & 15) * 4;
      const sport = v.getUint16(ihl, false);
      const dport = v.getUint16(ihl + 2, false);
      if (sport !== port && dport !== port) continue;
      const ip = (o: number) => [buf[o], buf[o + 1], buf[o + 2], buf[o + 3]].join(".");
      out({
        src: `${ip(12)}:${sport}`,
        dst: `${ip(16)}:${dport}`,
        data: Buffer.from(buf.subarray(ihl + 8, v.getUint16(2, false))).toString("base64"),
      });
      seen++;
    }
    await Bun.sleep(0);
  }
  closeFd(fd);
}

if (mode === "capture") {
  await capture(Number(rest[0]), Number(rest[1] ?? 1000));
} else if (mode === "handshake") {
  const victim = decodeKey(rest[0]!);
  const stranger = newKeyPair();
  const init = createInitiation(new HandshakeState(stranger, victim), 4242, Date.now());
  new CookieGenerator(victim).addMacs(init, INITIATION_MAC1_OFFSET, Date.now());
  await listenAndSend(rest[1]!, [init]);
} else if (mode === "send") {
  await listenAndSend(
    rest[0]!,
    rest.slice(1).map((b) => new Uint8Array(Buffer.from(b, "base64"))),
  );
} else {
  console.error("usage: net-rogue.ts capture <port> <max> | handshake <pubkey> <ip:port> | send <ip:port> <base64>...");
  process.exit(2);
}
