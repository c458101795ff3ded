/**
 * Linux TUN devices through ioctls: create (TUNSETIFF with IFF_TUN|IFF_NO_PI), then address,
 * netmask, MTU and link up via SIOCSIF* on an AF_INET socket, so no iproute2 is needed.
 * The device is not persistent: it disappears when the last fd to it closes (the daemon exits).
 */
import { ptr } from "bun:ffi";
import { AF_INET, check, closeFd, cstr, libc, O_CLOEXEC, O_RDWR, SOCK_DGRAM } from "./libc.ts";

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_MULTI_QUEUE = 0x0100;
const SIOCGIFFLAGS = 0x8913;
const SIOCSIFFLAGS = 0x8914;
const SIOCSIFADDR = 0x8916;
const SIOCSIFNETMASK = 0x891c;
const SIOCSIFMTU = 0x8922;
const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;
const IFNAMSIZ = 16;

function ifreq(name: string): { buf: Uint8Array; view: DataView } {
  if (name.length === 0 || name.length >= IFNAMSIZ)
    throw new Error(`interface name must be 1-15 characters: ${JSON.stringify(name)}`);
  const buf = new Uint8Array(40);
  buf.set(new TextEncoder().encode(name));
  return { buf, view: new DataView(buf.buffer) };
}

/** Opens (creates) the TUN device `name`; returns its fd. `multiQueue` lets several fds share it. */
export function openTun(name: string, opts: { multiQueue?: boolean } = {}): number {
  const c = libc();
  const path = cstr("/dev/net/tun");
  const fd = check("open(/dev/net/tun)", c.open(ptr(path), O_RDWR | O_CLOEXEC, 0));
  const req = ifreq(name);
  req.view.setUint16(16, IFF_TUN | IFF_NO_PI | (opts.multiQueue ? IFF_MULTI_QUEUE : 0), true);
  try {
    check(`ioctl(TUNSETIFF ${name})`, c.ioctl(fd, TUNSETIFF, ptr(req.buf)));
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return fd;
}

function withInetSocket<T>(fn: (sock: number) => T): T {
  const sock = check("socket(AF_INET)", libc().socket(AF_INET, SOCK_DGRAM, 0));
  try {
    return fn(sock);
  } finally {
    closeFd(sock);
  }
}

function setSockaddr(req: { view: DataView }, ip: number): void {
  req.view.setUint16(16, AF_INET, true);
  req.view.setUint32(20, ip >>> 0, false);
}

/** Sets the IPv4 address (host-order u32) and prefix length, the MTU, and brings the link up. */
export function configureInterface(name: string, opts: { address: number; prefixLength: number; mtu: number }): void {
  const c = libc();
  withInetSocket((sock) => {
    const addr = ifreq(name);
    setSockaddr(addr, opts.address);
    check(`ioctl(SIOCSIFADDR ${name})`, c.ioctl(sock, SIOCSIFADDR, ptr(addr.buf)));
    const mask = ifreq(name);
    setSockaddr(mask, opts.prefixLength === 0 ? 0 : (0xffffffff << (32 - opts.prefixLength)) >>> 0);
    check(`ioctl(SIOCSIFNETMASK ${name})`, c.ioctl(sock, SIOCSIFNETMASK, ptr(mask.buf)));
    const mtu = ifreq(name);
    mtu.view.setInt32(16, opts.mtu, true);
    check(`ioctl(SIOCSIFMTU ${name})`, c.ioctl(sock, SIOCSIFMTU, ptr(mtu.buf)));
    const flags = ifreq(name);
    check(`ioctl(SIOCGIFFLAGS ${name})`, c.ioctl(sock, SIOCGIFFLAGS, ptr(flags.buf)));
    flags.view.setUint16(16, flags.view.getUint16(16, true) | IFF_UP | IFF_RUNNING, true);
    check(`ioctl(SIOCSIFFLAGS ${name})`, c.ioctl(sock, SIOCSIFFLAGS, ptr(flags.buf)));
  });
}
