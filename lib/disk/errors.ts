/**
 * Filesystem errors carry a Linux errno: the FUSE adapter replies with it. Thrown by lib/disk/fs
 * for every refusal (ENOENT, EEXIST, ENOTEMPTY, EIO, ...).
 */
import { ERRNO } from "../../native/errno.ts";

/** The errnos a filesystem operation reports; any other failure is EIO (see errnoOf). */
const FS_ERRNOS = [
  "EPERM",
  "ENOENT",
  "EIO",
  "ENXIO",
  "E2BIG",
  "EBADF",
  "EAGAIN",
  "ENOMEM",
  "EACCES",
  "EBUSY",
  "EEXIST",
  "EXDEV",
  "ENODEV",
  "ENOTDIR",
  "EISDIR",
  "EINVAL",
  "EFBIG",
  "ENOSPC",
  "ESPIPE",
  "EROFS",
  "EMLINK",
  "ERANGE",
  "ENAMETOOLONG",
  "ENOSYS",
  "ENOTEMPTY",
  "ELOOP",
  "ENODATA",
  "EOVERFLOW",
  "EOPNOTSUPP",
  "ENOTCONN",
] as const;

export type FsErrnoName = (typeof FS_ERRNOS)[number];

const FS_ERRNO_SET = new Set<string>(FS_ERRNOS);

export class FsError extends Error {
  readonly errno: number;
  constructor(
    readonly code: FsErrnoName,
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
  if (typeof code === "string" && FS_ERRNO_SET.has(code)) return ERRNO[code as FsErrnoName];
  return ERRNO.EIO;
}
