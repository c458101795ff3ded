/**
 * IPv4 UDP sockets through libc (wireguard-go's conn/): opening one with sized kernel buffers, a
 * single non-blocking send for the control plane, and UdpBatch, the sendmmsg/recvmmsg wrapper the
 * data-plane Workers loop on. Like libc(), use these from the thread that created them.
 */
import { ptr, read as readPtr } from "bun:ffi";
import {
  AF_INET,
  check,
  EAGAIN,
  EINTR,
  errno,
  libc,
  MSG_DONTWAIT,
  MSG_WAITFORONE,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOL_SOCKET,
  SyscallError,
} from "./libc.ts";

const SOCKADDR_IN_BYTES = 16;
const IOVEC_BYTES = 16;
const MMSGHDR_BYTES = 64; // struct mmsghdr on x86-64/arm64 (56-byte msghdr + msg_len + padding)
const MSG_LEN_OFFSET = 56;

/** struct sockaddr_in (16 bytes) for an IPv4 address given as a host-order u32 and a port. */
function sockaddrIn(ip: number, port: number, into = new Uint8Array(SOCKADDR_IN_BYTES)): Uint8Array {
  writeSockaddrIn(new DataView(into.buffer, into.byteOffset, SOCKADDR_IN_BYTES), 0, ip, port);
  return into;
}

/** Writes a sockaddr_in at `offset` of `view`: the allocation-free form for preallocated arrays. */
function writeSockaddrIn(view: DataView, offset: number, ip: number, port: number): void {
  view.setUint16(offset, AF_INET, true);
  view.setUint16(offset + 2, port, false);
  view.setUint32(offset + 4, ip >>> 0, false);
}

function setIntOption(fd: number, level: number, name: number, value: number, label: string): void {
  const v = new Int32Array([value]);
  check(`setsockopt(${label})`, libc().setsockopt(fd, level, name, ptr(v), 4));
}

/** Creates a blocking IPv4 UDP socket bound to `ip:port` (0 = any) with the given buffer sizes. */
export function udpSocket(opts: { ip?: number; port: number; bufferBytes?: number }): number {
  const c = libc();
  const fd = check("socket(AF_INET, SOCK_DGRAM)", c.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  try {
    if (opts.bufferBytes) {
      // FORCE variants (root) ignore net.core.rmem_max/wmem_max; fall back to the capped ones.
      for (const [force, plain, label] of [
        [SO_RCVBUFFORCE, SO_RCVBUF, "SO_RCVBUF"],
        [SO_SNDBUFFORCE, SO_SNDBUF, "SO_SNDBUF"],
      ] as const) {
        try {
          setIntOption(fd, SOL_SOCKET, force, opts.bufferBytes, `${label}FORCE`);
        } catch {
          setIntOption(fd, SOL_SOCKET, plain, opts.bufferBytes, label);
        }
      }
    }
    const addr = sockaddrIn(opts.ip ?? 0, opts.port);
    check(`bind(udp port ${opts.port})`, c.bind(fd, ptr(addr), SOCKADDR_IN_BYTES));
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/** The local port a socket is bound to. */
export function boundPort(fd: number): number {
  const addr = new Uint8Array(SOCKADDR_IN_BYTES);
  const len = new Uint32Array([SOCKADDR_IN_BYTES]);
  check("getsockname", libc().getsockname(fd, ptr(addr), ptr(len)));
  return new DataView(addr.buffer).getUint16(2, false);
}

/**
 * A sender of single datagrams on `fd` that never blocks: a full socket buffer or an unreachable
 * network drops the datagram, as the network itself may (handshakes are retried by their timers).
 */
export function udpSender(fd: number): (packet: Uint8Array, ip: number, port: number) => void {
  const c = libc();
  const addr = new Uint8Array(SOCKADDR_IN_BYTES);
  return (packet, ip, port) => {
    sockaddrIn(ip, port, addr);
    c.sendto(fd, ptr(packet), packet.length, MSG_DONTWAIT, ptr(addr), SOCKADDR_IN_BYTES);
  };
}

/**
 * sendmmsg/recvmmsg over one message per buffer: struct mmsghdr[n] with one iovec and one
 * sockaddr_in each, allocated once, pointing into the caller's `buffers`. The per-packet methods
 * only write into these arrays (no objects), so the data-plane loops stay allocation-free.
 * The kernel holds raw pointers into the arrays and the buffers: the batch keeps all of them
 * reachable, so keep the batch itself alive as long as its fd is in use.
 */
export class UdpBatch {
  /** Number of messages (= buffers). */
  readonly size: number;
  private readonly hdrs: Uint8Array;
  private readonly iovs: Uint8Array;
  private readonly addrs: Uint8Array;
  private readonly hdrPtr: number;
  private readonly hv: DataView;
  private readonly iv: DataView;
  private readonly av: DataView;
  private readonly c = libc();

  constructor(
    private readonly fd: number,
    readonly buffers: Uint8Array[],
  ) {
    const n = buffers.length;
    this.size = n;
    this.hdrs = new Uint8Array(MMSGHDR_BYTES * n);
    this.iovs = new Uint8Array(IOVEC_BYTES * n);
    this.addrs = new Uint8Array(SOCKADDR_IN_BYTES * n);
    this.hv = new DataView(this.hdrs.buffer);
    this.iv = new DataView(this.iovs.buffer);
    this.av = new DataView(this.addrs.buffer);
    this.hdrPtr = ptr(this.hdrs);
    const iovBase = ptr(this.iovs);
    const addrBase = ptr(this.addrs);
    for (let i = 0; i < n; i++) {
      this.iv.setBigUint64(i * IOVEC_BYTES, BigInt(ptr(buffers[i]!)), true);
      this.iv.setBigUint64(i * IOVEC_BYTES + 8, BigInt(buffers[i]!.length), true);
      this.hv.setBigUint64(i * MMSGHDR_BYTES, BigInt(addrBase + i * SOCKADDR_IN_BYTES), true); // msg_name
      this.hv.setUint32(i * MMSGHDR_BYTES + 8, SOCKADDR_IN_BYTES, true); // msg_namelen
      this.hv.setBigUint64(i * MMSGHDR_BYTES + 16, BigInt(iovBase + i * IOVEC_BYTES), true); // msg_iov
      this.hv.setBigUint64(i * MMSGHDR_BYTES + 24, 1n, true); // msg_iovlen
    }
  }

  /** Addresses message `i` to `ip:port` with the first `length` bytes of buffers[i]. */
  setMessage(i: number, length: number, ip: number, port: number): void {
    this.iv.setBigUint64(i * IOVEC_BYTES + 8, BigInt(length), true);
    writeSockaddrIn(this.av, i * SOCKADDR_IN_BYTES, ip, port);
  }

  /**
   * Sends messages 0..n-1 with as few sendmmsg calls as the kernel allows. A message the kernel
   * refuses (ENETUNREACH, EPERM from a firewall...) is dropped and the rest still go.
   */
  send(n: number): void {
    let sent = 0;
    while (sent < n) {
      const r = this.c.sendmmsg(this.fd, this.hdrPtr + sent * MMSGHDR_BYTES, n - sent, 0);
      if (r < 0) {
        const e = errno();
        if (e === EINTR) continue;
        sent++;
        continue;
      }
      sent += r;
    }
  }

  /**
   * Blocks until at least one datagram arrives, then takes what else is queued, up to `size`
   * (MSG_WAITFORONE). Returns how many; 0 if interrupted (EINTR/EAGAIN). Each message's full
   * buffer is offered, so set no lengths with setMessage on a receiving batch.
   */
  receive(): number {
    for (let i = 0; i < this.size; i++) this.hv.setUint32(i * MMSGHDR_BYTES + 8, SOCKADDR_IN_BYTES, true);
    const n = this.c.recvmmsg(this.fd, this.hdrPtr, this.size, MSG_WAITFORONE, null);
    if (n < 0) {
      const e = errno();
      if (e === EINTR || e === EAGAIN) return 0;
      throw new SyscallError("recvmmsg", e);
    }
    return n;
  }

  /** Bytes received into buffers[i] by the last receive(). */
  length(i: number): number {
    return readPtr.u32(this.hdrPtr, i * MMSGHDR_BYTES + MSG_LEN_OFFSET);
  }

  /** Source address of message `i` of the last receive(), as a host-order u32. */
  sourceIp(i: number): number {
    return this.av.getUint32(i * SOCKADDR_IN_BYTES + 4, false);
  }

  /** Source port of message `i` of the last receive(). */
  sourcePort(i: number): number {
    return this.av.getUint16(i * SOCKADDR_IN_BYTES + 2, false);
  }
}
