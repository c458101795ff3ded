/**
 * libc through bun:ffi: the system calls Bun has no API for (TUN ioctls, raw UDP sockets with
 * sized buffers, recvmmsg/sendmmsg, poll). Each thread (Worker) that calls these must
 * `libc()` itself: FFI handles are per thread. Errors are read from errno right after the call.
 *
 * Other subsystems may add functions here; keep it a flat list of thin bindings.
 */
import { dlopen, FFIType, read } from "bun:ffi";
import { ERRNO, errnoName } from "./errno.ts";

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
    getsockname: { args: [i32, P, P], returns: i32 },
    sendto: { args: [i32, P, u64, i32, P, u32], returns: FFIType.i64_fast },
    recvfrom: { args: [i32, P, u64, i32, P, P], returns: FFIType.i64_fast },
    sendmmsg: { args: [i32, P, u32, i32], returns: i32 },
    recvmmsg: { args: [i32, P, u32, i32, P], returns: i32 },
    poll: { args: [P, u64, i32], returns: i32 },
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

export const { EAGAIN, EINTR } = ERRNO;

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

/** A system call failure with the errno name and text, e.g. "ioctl(TUNSETIFF): EPERM Operation not permitted". */
export class SyscallError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${errnoName(errno) ?? `errno ${errno}`} ${String(libc().strerror(errno))}`);
    this.name = "SyscallError";
  }
}

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
