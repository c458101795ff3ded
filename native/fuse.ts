/**
 * The kernel side of FUSE without libfuse: open /dev/fuse, mount(2) with fd=N, umount2(2).
 * The protocol itself (requests read from the fd, replies written to it) is lib/disk/fuse.
 * Reading the fd blocks, so it happens in a Worker (lib/disk/fuse-reader.worker.ts) with `readFuse`.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { closeSync, existsSync, openSync, writeFileSync } from "node:fs";
import { cstr, errno, libc, SyscallError } from "./libc.ts";

const { i32, u64, ptr: P } = FFIType;

function open() {
  return dlopen("libc.so.6", {
    mount: { args: [P, P, P, u64, P], returns: i32 },
    umount2: { args: [P, i32], returns: i32 },
    write: { args: [i32, P, u64], returns: FFIType.i64_fast },
    writev: { args: [i32, P, i32], returns: FFIType.i64_fast },
  });
}

let cached: ReturnType<typeof open>["symbols"] | undefined;
function sys() {
  cached ??= open().symbols;
  return cached;
}

export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MNT_DETACH = 2;

export interface MountOptions {
  /** Shown as the source in /proc/mounts, e.g. "wolf:default". */
  source: string;
  /** Filesystem subtype: the type becomes "fuse.<subtype>". */
  subtype: string;
  allowOther?: boolean;
  defaultPermissions?: boolean;
  maxRead?: number;
}

/** Opens /dev/fuse and mounts it at `target`. Returns the fd the protocol runs on. */
export function mountFuse(target: string, opts: MountOptions): number {
  const fd = openSync("/dev/fuse", "r+");
  const data = [`fd=${fd}`, "rootmode=40000", "user_id=0", "group_id=0"];
  if (opts.defaultPermissions !== false) data.push("default_permissions");
  if (opts.allowOther !== false) data.push("allow_other");
  if (opts.maxRead) data.push(`max_read=${opts.maxRead}`);
  const src = cstr(opts.source);
  const tgt = cstr(target);
  const type = cstr(`fuse.${opts.subtype}`);
  const options = cstr(data.join(","));
  const rc = sys().mount(ptr(src), ptr(tgt), ptr(type), MS_NOSUID | MS_NODEV, ptr(options));
  if (rc !== 0) {
    const e = errno();
    closeSync(fd);
    throw new SyscallError(`mount(${target})`, e);
  }
  return fd;
}

/** umount2(2); returns 0 or the errno (EBUSY, EINVAL = not mounted, ...). */
export function unmount(target: string, flags = 0): number {
  const t = cstr(target);
  const rc = sys().umount2(ptr(t), flags);
  return rc === 0 ? 0 : errno();
}

/**
 * One blocking read of a request from the FUSE fd into `buf` (the calling thread sleeps in the
 * kernel until a request arrives). Returns the length, or a negative errno.
 */
export function readFuse(fd: number, buf: Uint8Array): number {
  const n = Number(libc().read(fd, ptr(buf), buf.length));
  return n >= 0 ? n : -errno();
}

/**
 * One reply (or notification) written to the FUSE fd with a single write(2): the kernel takes a
 * reply whole or not at all. Returns the bytes written, or a negative errno (ENOENT: the request
 * was interrupted; ENODEV: the connection is gone).
 */
export function writeFuse(fd: number, buf: Uint8Array, length = buf.length): number {
  const n = Number(sys().write(fd, ptr(buf), length));
  return n >= 0 ? n : -errno();
}

const iovecs = new BigUint64Array(2 * 8);

/** A reply in up to 8 pieces (header + body) with one writev(2), without joining them. */
export function writevFuse(fd: number, parts: Uint8Array[]): number {
  if (parts.length > 8) throw new Error("writevFuse: at most 8 parts");
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    iovecs[2 * i] = BigInt(p.length === 0 ? 0 : ptr(p));
    iovecs[2 * i + 1] = BigInt(p.length);
  }
  const n = Number(sys().writev(fd, ptr(iovecs), parts.length));
  return n >= 0 ? n : -errno();
}

/**
 * Aborts the FUSE connection `dev` ("major:minor" from mountinfo) through fusectl, mounting
 * fusectl at /sys/fs/fuse/connections if needed. Blocked readers and users get ENODEV/ENOTCONN.
 */
export function abortConnection(dev: string): boolean {
  const minor = dev.split(":")[1];
  const dir = "/sys/fs/fuse/connections";
  if (!existsSync(`${dir}/${minor}`)) {
    const src = cstr("fusectl");
    const tgt = cstr(dir);
    const rc = sys().mount(ptr(src), ptr(tgt), ptr(src), 0, null);
    if (rc !== 0) return false;
  }
  try {
    writeFileSync(`${dir}/${minor}/abort`, "1");
    return true;
  } catch {
    return false;
  }
}
