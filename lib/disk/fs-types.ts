/** The types and constants of lib/disk/fs's interface: what the FUSE adapter and tests pass and get back. */
import type { Time } from "./meta-state.ts";

export const MAX_FILE_SIZE = 2 ** 52;
export const NAME_MAX = 255;
export const SYMLINK_MAX = 4095;
export const XATTR_NAME_MAX = 255;
export const XATTR_SIZE_MAX = 65536;

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

export interface Ctx {
  uid: number;
  gid: number;
}

export interface Attr {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Time | "now";
  mtime?: Time | "now";
  ctime?: Time;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** Type bits (S_IFMT part of the mode). */
  type: number;
  /** Offset to pass to readdir to continue after this entry. */
  next: number;
}

export interface StatFs {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  frsize: number;
  namelen: number;
}

export interface DiskFsOptions {
  /** The drive's directory: chunks/ and meta/ live under it. */
  dir: string;
  /** Chunk size for a new drive (an existing drive keeps its own). Default 4 MiB. */
  chunkSize?: number;
  /** Dirty write-back data above which writers wait for flushes. Default 256 MiB. */
  writeBufferBytes?: number;
  /** Make data and metadata durable when a handle that wrote is flushed (close). Default true. */
  syncOnClose?: boolean;
  /** Journal bytes between checkpoints. */
  checkpointBytes?: number;
  /** Background tick: syncs the journal, collects garbage, flushes old dirty data. 0 = no timer. */
  tickMs?: number;
  /** Dirty data older than this is flushed by the tick. */
  dirtyExpireMs?: number;
  /** Memory for whole chunks read by sequential readers. Default 64 MiB. */
  cacheBytes?: number;
  /** Owner of the root directory of a new drive. */
  root?: { mode?: number; uid?: number; gid?: number };
}
