/**
 * Filesystem errors carry a Linux errno: the FUSE adapter replies with it, the S3/WebDAV views map
 * it. Thrown by lib/disk/fs for every refusal (ENOENT, EEXIST, ENOTEMPTY, EIO, ...).
 */

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EMLINK: 31,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ENOTCONN: 107,
} as const;

export type ErrnoName = keyof typeof ERRNO;

export class FsError extends Error {
  readonly errno: number;
  constructor(
    readonly code: ErrnoName,
    message?: string,
  ) {
    super(message ? `${code}: ${message}` : code);
    this.name = "FsError";
    this.errno = ERRNO[code];
  }
}

/** The errno to report for anything thrown by a filesystem operation (unknown failures are EIO). */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in ERRNO) return ERRNO[code as ErrnoName];
  return ERRNO.EIO;
}
