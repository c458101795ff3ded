/**
 * libc through bun:ffi: the system calls Bun has no API for (TUN ioctls, raw UDP sockets with
 * sized buffers, recvmmsg/sendmmsg, poll, eventfd). Each thread (Worker) that calls these must
 * `libc()` itself: FFI handles are per thread. Errors are read from errno right after the call.
 *
 * Other subsystems may add functions here; keep it a flat list of thin bindings.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";

const { i32, u32, u64, ptr: P } = FFIType;

function open() {
  return dlopen("libc.so.6", {
    open: { args: [P, i32, i32], returns: i32 },
    close: { args: [i32], returns: i32 },
    read: { args: [i32, P, u64], returns: FFIType.i64_fast },
    write: { args: [i32, P, u64], returns: FFIType.i64_fast },
    ioctl: { args: [i32, u64, P], returns: i32 },
    fcntl: { args: [i32, i32, i32], returns: i32 },
    socket: { args: [i32, i32, i32], returns: i32 },
    bind: { args: [i32, P, u32], returns: i32 },
    setsockopt: { args: [i32, i32, i32, P, u32], returns: i32 },
    getsockopt: { args: [i32, i32, i32, P, P], returns: i32 },
    getsockname: { args: [i32, P, P], returns: i32 },
    sendto: { args: [i32, P, u64, i32, P, u32], returns: FFIType.i64_fast },
    recvfrom: { args: [i32, P, u64, i32, P, P], returns: FFIType.i64_fast },
    sendmmsg: { args: [i32, P, u32, i32], returns: i32 },
    recvmmsg: { args: [i32, P, u32, i32, P], returns: i32 },
    poll: { args: [P, u64, i32], returns: i32 },
    eventfd: { args: [u32, i32], returns: i32 },
    __errno_location: { args: [], returns: P },
    strerror: { args: [i32], returns: FFIType.cstring },
  });
}

export type Libc = ReturnType<typeof open>["symbols"];

let cached: Libc | undefined;
/** The libc bindings for the calling thread. */
export function libc(): Libc {
  cached ??= open().symbols;
  return cached;
}

export function errno(): number {
  const where = libc().__errno_location();
  return where === null ? 0 : read.i32(where, 0);
}

export const EAGAIN = 11;
export const EINTR = 4;

export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;

export const AF_INET = 2;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_REUSEADDR = 2;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const MSG_DONTWAIT = 0x40;
export const MSG_WAITFORONE = 0x10000;
export const POLLIN = 1;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

/** A system call failure with the errno name and text, e.g. "ioctl(TUNSETIFF): EPERM Operation not permitted". */
export class SyscallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${ERRNO_NAMES[errno] ?? `errno ${errno}`} ${String(libc().strerror(errno))}`);
    this.name = "SyscallError";
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  4: "EINTR",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  24: "EMFILE",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  101: "ENETUNREACH",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

/** Throws a SyscallError if `result` is negative. */
export function check(call: string, result: number | bigint): number {
  const n = Number(result);
  if (n < 0) throw new SyscallError(call, errno());
  return n;
}

/** A NUL-terminated C string in a buffer that lives as long as the returned array. */
export function cstr(text: string): Uint8Array {
  return new TextEncoder().encode(`${text}\0`);
}

export function setNonBlocking(fd: number, on: boolean): void {
  const c = libc();
  const flags = check("fcntl(F_GETFL)", c.fcntl(fd, F_GETFL, 0));
  check("fcntl(F_SETFL)", c.fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK));
}

/** struct sockaddr_in (16 bytes) for an IPv4 address given as a host-order u32 and a port. */
export function sockaddrIn(ip: number, port: number, into = new Uint8Array(16)): Uint8Array {
  const view = new DataView(into.buffer, into.byteOffset, 16);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port, false);
  view.setUint32(4, ip >>> 0, false);
  return into;
}

export function setIntOption(fd: number, level: number, name: number, value: number, label: string): void {
  const v = new Int32Array([value]);
  check(`setsockopt(${label})`, libc().setsockopt(fd, level, name, ptr(v), 4));
}

export function getIntOption(fd: number, level: number, name: number): number {
  const v = new Int32Array(1);
  const len = new Uint32Array([4]);
  check("getsockopt", libc().getsockopt(fd, level, name, ptr(v), ptr(len)));
  return v[0]!;
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
    check(`bind(udp port ${opts.port})`, c.bind(fd, ptr(addr), 16));
    return fd;
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

/** The local port a socket is bound to. */
export function boundPort(fd: number): number {
  const addr = new Uint8Array(16);
  const len = new Uint32Array([16]);
  check("getsockname", libc().getsockname(fd, ptr(addr), ptr(len)));
  return new DataView(addr.buffer).getUint16(2, false);
}

export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

// ---- wolf disk: chunk file writeback ------------------------------------------------------------

export const SYNC_FILE_RANGE_WRITE = 2;

let fileSyms: ReturnType<typeof openFileSyms>["symbols"] | undefined;
function openFileSyms() {
  return dlopen("libc.so.6", { sync_file_range: { args: [i32, FFIType.i64, FFIType.i64, u32], returns: i32 } });
}

/**
 * sync_file_range(2): with SYNC_FILE_RANGE_WRITE, starts writeback of a file's dirty pages without
 * waiting for it (a later fdatasync then finds little left to do). Returns 0 or -errno.
 */
export function syncFileRange(fd: number, offset: number, nbytes: number, flags = SYNC_FILE_RANGE_WRITE): number {
  fileSyms ??= openFileSyms().symbols;
  return fileSyms.sync_file_range(fd, offset, nbytes, flags) === 0 ? 0 : -errno();
}
