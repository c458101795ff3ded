/**
 * The materialised metadata of one drive: inodes, directory entries, chunk lists, xattrs, and the
 * reference count of every chunk. It changes only through `apply(op)`, deterministically: every
 * decision (inode numbers, times, chunk hashes) is inside the op, so replaying the journal — here
 * after a crash, or on another node once the journal is shipped through lib/cluster — rebuilds
 * exactly the same state. Validation (ENOENT, EEXIST, ...) happens before an op is committed
 * (lib/disk/fs); apply assumes a valid op.
 *
 * Names, symlink targets and xattr names are byte strings held as latin1 JS strings, so any Linux
 * name round-trips unchanged.
 */

export type Time = [sec: number, nsec: number];

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const ROOT_INO = 1;

export interface Inode {
  ino: number;
  /** Type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  size: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
  /** Directories: the parent directory (for ".."); others: 0. */
  parent: number;
  /** Directories: name → inode. */
  entries?: Map<string, number>;
  /** Symlinks. */
  target?: string;
  /** Regular files: chunk index → SHA-256 of its data; an absent index is a hole (zeros). */
  chunks?: Map<number, string>;
  xattrs?: Map<string, Buffer>;
}

export type MetaOp =
  | {
      op: "mknod";
      ino: number;
      parent: number;
      name: string;
      mode: number;
      uid: number;
      gid: number;
      rdev: number;
      time: Time;
      target?: string;
    }
  | { op: "link"; ino: number; parent: number; name: string; time: Time }
  | { op: "unlink"; parent: number; name: string; time: Time }
  | { op: "rename"; parent: number; name: string; newParent: number; newName: string; exchange?: boolean; time: Time }
  | {
      op: "setattr";
      ino: number;
      mode?: number;
      uid?: number;
      gid?: number;
      atime?: Time;
      mtime?: Time;
      ctime?: Time;
      /** New size: chunks at or past ceil(size / chunkSize) are dropped. Applied before `chunks`. */
      size?: number;
      /** Chunk replacements: [index, hash or null for a hole]. */
      chunks?: [number, string | null][];
    }
  | { op: "setxattr"; ino: number; name: string; value: string; time: Time }
  | { op: "removexattr"; ino: number; name: string; time: Time }
  /** Drops an inode with no links left once nobody has it open. */
  | { op: "purge"; ino: number };

export const isDir = (mode: number) => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number) => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number) => (mode & S_IFMT) === S_IFLNK;

export class MetaState {
  readonly inodes = new Map<number, Inode>();
  /** Chunk hash → number of (file, index) slots that reference it. */
  readonly refs = new Map<string, number>();
  /** Inodes whose link count reached 0 (kept until purged: they may still be open). */
  readonly orphans = new Set<number>();
  nextIno = ROOT_INO + 1;
  /** Called when a chunk loses its last reference (it becomes garbage once that is durable). */
  onUnreferenced?: (hash: string) => void;

  constructor(readonly chunkSize: number) {}

  static fresh(chunkSize: number, time: Time, root: { mode?: number; uid?: number; gid?: number } = {}): MetaState {
    const state = new MetaState(chunkSize);
    state.inodes.set(ROOT_INO, {
      ino: ROOT_INO,
      mode: S_IFDIR | (root.mode ?? 0o755),
      uid: root.uid ?? 0,
      gid: root.gid ?? 0,
      nlink: 2,
      rdev: 0,
      size: 0,
      atime: time,
      mtime: time,
      ctime: time,
      parent: ROOT_INO,
      entries: new Map(),
    });
    return state;
  }

  get(ino: number): Inode | undefined {
    return this.inodes.get(ino);
  }

  lookup(parent: number, name: string): Inode | undefined {
    const ino = this.inodes.get(parent)?.entries?.get(name);
    return ino === undefined ? undefined : this.inodes.get(ino);
  }

  private must(ino: number): Inode {
    const inode = this.inodes.get(ino);
    if (!inode) throw new Error(`metadata op refers to unknown inode ${ino}`);
    return inode;
  }

  private ref(hash: string): void {
    this.refs.set(hash, (this.refs.get(hash) ?? 0) + 1);
  }

  private unref(hash: string): void {
    const n = (this.refs.get(hash) ?? 0) - 1;
    if (n > 0) {
      this.refs.set(hash, n);
      return;
    }
    this.refs.delete(hash);
    this.onUnreferenced?.(hash);
  }

  private dropLink(parent: Inode, child: Inode, time: Time): void {
    if (isDir(child.mode)) {
      child.nlink = 0;
      parent.nlink--;
    } else {
      child.nlink--;
    }
    child.ctime = time;
    if (child.nlink <= 0) {
      child.nlink = 0;
      this.orphans.add(child.ino);
    }
  }

  apply(op: MetaOp): void {
    switch (op.op) {
      case "mknod": {
        const parent = this.must(op.parent);
        const dir = isDir(op.mode);
        const inode: Inode = {
          ino: op.ino,
          mode: op.mode,
          uid: op.uid,
          gid: op.gid,
          nlink: dir ? 2 : 1,
          rdev: op.rdev,
          size: 0,
          atime: op.time,
          mtime: op.time,
          ctime: op.time,
          parent: dir ? op.parent : 0,
        };
        if (dir) inode.entries = new Map();
        else if (isReg(op.mode)) inode.chunks = new Map();
        else if (isLnk(op.mode)) {
          inode.target = op.target ?? "";
          inode.size = inode.target.length;
        }
        this.inodes.set(op.ino, inode);
        parent.entries!.set(op.name, op.ino);
        if (dir) parent.nlink++;
        parent.mtime = parent.ctime = op.time;
        if (op.ino >= this.nextIno) this.nextIno = op.ino + 1;
        return;
      }
      case "link": {
        const parent = this.must(op.parent);
        const inode = this.must(op.ino);
        parent.entries!.set(op.name, op.ino);
        inode.nlink++;
        this.orphans.delete(op.ino);
        inode.ctime = op.time;
        parent.mtime = parent.ctime = op.time;
        return;
      }
      case "unlink": {
        const parent = this.must(op.parent);
        const ino = parent.entries!.get(op.name);
        if (ino === undefined) throw new Error(`unlink of missing entry ${op.name} in ${op.parent}`);
        parent.entries!.delete(op.name);
        this.dropLink(parent, this.must(ino), op.time);
        parent.mtime = parent.ctime = op.time;
        return;
      }
      case "rename": {
        const from = this.must(op.parent);
        const to = this.must(op.newParent);
        const srcIno = from.entries!.get(op.name);
        if (srcIno === undefined) throw new Error(`rename of missing entry ${op.name} in ${op.parent}`);
        const src = this.must(srcIno);
        const dstIno = to.entries!.get(op.newName);
        if (op.exchange) {
          if (dstIno === undefined) throw new Error(`exchange with missing entry ${op.newName}`);
          const dst = this.must(dstIno);
          from.entries!.set(op.name, dstIno);
          to.entries!.set(op.newName, srcIno);
          if (from !== to) {
            if (isDir(src.mode)) {
              src.parent = to.ino;
              from.nlink--;
              to.nlink++;
            }
            if (isDir(dst.mode)) {
              dst.parent = from.ino;
              to.nlink--;
              from.nlink++;
            }
          }
          dst.ctime = op.time;
        } else {
          if (dstIno === srcIno) return; // two links to one inode: POSIX says do nothing
          if (dstIno !== undefined) {
            to.entries!.delete(op.newName);
            this.dropLink(to, this.must(dstIno), op.time);
          }
          from.entries!.delete(op.name);
          to.entries!.set(op.newName, srcIno);
          if (isDir(src.mode) && from !== to) {
            src.parent = to.ino;
            from.nlink--;
            to.nlink++;
          }
        }
        src.ctime = op.time;
        from.mtime = from.ctime = op.time;
        to.mtime = to.ctime = op.time;
        return;
      }
      case "setattr": {
        const inode = this.must(op.ino);
        if (op.mode !== undefined) inode.mode = (inode.mode & S_IFMT) | (op.mode & ~S_IFMT);
        if (op.uid !== undefined) inode.uid = op.uid;
        if (op.gid !== undefined) inode.gid = op.gid;
        if (op.atime) inode.atime = op.atime;
        if (op.mtime) inode.mtime = op.mtime;
        if (op.ctime) inode.ctime = op.ctime;
        if (op.size !== undefined) {
          const chunks = inode.chunks;
          if (chunks) {
            const keep = Math.ceil(op.size / this.chunkSize);
            for (const [idx, hash] of chunks) {
              if (idx >= keep) {
                chunks.delete(idx);
                this.unref(hash);
              }
            }
          }
          inode.size = op.size;
        }
        if (op.chunks && inode.chunks) {
          for (const [idx, hash] of op.chunks) {
            const old = inode.chunks.get(idx);
            if (old === hash || (old === undefined && hash === null)) continue;
            if (hash === null) inode.chunks.delete(idx);
            else {
              this.ref(hash);
              inode.chunks.set(idx, hash);
            }
            if (old !== undefined) this.unref(old);
          }
        }
        return;
      }
      case "setxattr": {
        const inode = this.must(op.ino);
        (inode.xattrs ??= new Map()).set(op.name, Buffer.from(op.value, "base64"));
        inode.ctime = op.time;
        return;
      }
      case "removexattr": {
        const inode = this.must(op.ino);
        inode.xattrs?.delete(op.name);
        if (inode.xattrs?.size === 0) inode.xattrs = undefined;
        inode.ctime = op.time;
        return;
      }
      case "purge": {
        const inode = this.inodes.get(op.ino);
        if (!inode) return;
        this.inodes.delete(op.ino);
        this.orphans.delete(op.ino);
        if (inode.chunks) for (const hash of inode.chunks.values()) this.unref(hash);
        return;
      }
    }
  }

  /** The whole state as JSON (a checkpoint body). */
  serialize(): string {
    const inodes: unknown[] = [];
    for (const i of this.inodes.values()) {
      inodes.push({
        ...i,
        entries: i.entries ? [...i.entries] : undefined,
        chunks: i.chunks ? [...i.chunks] : undefined,
        xattrs: i.xattrs ? [...i.xattrs].map(([k, v]) => [k, v.toString("base64")]) : undefined,
      });
    }
    return JSON.stringify({ v: 1, chunkSize: this.chunkSize, nextIno: this.nextIno, inodes });
  }

  static deserialize(text: string): MetaState {
    const doc = JSON.parse(text) as {
      v: number;
      chunkSize: number;
      nextIno: number; // biome-ignore lint/suspicious/noExplicitAny: checkpoint JSON, shaped into an Inode below
      inodes: any[];
    };
    if (doc.v !== 1) throw new Error(`unsupported metadata checkpoint version ${doc.v}`);
    const state = new MetaState(doc.chunkSize);
    state.nextIno = doc.nextIno;
    for (const raw of doc.inodes) {
      const inode: Inode = {
        ...raw,
        entries: raw.entries ? new Map(raw.entries) : undefined,
        chunks: raw.chunks ? new Map(raw.chunks) : undefined,
        xattrs: raw.xattrs
          ? new Map(raw.xattrs.map(([k, v]: [string, string]) => [k, Buffer.from(v, "base64")]))
          : undefined,
      };
      for (const key of ["entries", "chunks", "xattrs", "target"] as const)
        if (inode[key] === undefined) delete inode[key];
      state.inodes.set(inode.ino, inode);
      if (inode.chunks) for (const hash of inode.chunks.values()) state.refs.set(hash, (state.refs.get(hash) ?? 0) + 1);
      if (inode.nlink === 0) state.orphans.add(inode.ino);
    }
    return state;
  }
}
