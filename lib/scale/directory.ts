/**
 * Where each node's HTTP API is. The leader's address travels in its marker entry (so every
 * follower knows where to forward writes); the others register with the leader every few
 * seconds and get the whole list back (so `migrate --from <node>` can find any node). Kept in a
 * small file so a node that restarts (or is NeedsMigration and cannot read the log) still knows.
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../common/files.ts";
import { logger } from "../common/log.ts";

export interface DirectoryEntry {
  id: number;
  api: string;
  /** ms epoch of the newest information. */
  at: number;
  /** A witness node (no database, never serves): shown as such in `wolf ctl scale list servers`. */
  witness?: boolean;
}

const log = logger("scale");

export class Directory {
  private readonly nodes = new Map<number, DirectoryEntry>();
  private dirty = false;

  constructor(
    private readonly file: string,
    self: { id: number; api: string; witness?: boolean },
  ) {
    if (existsSync(file)) {
      try {
        for (const e of JSON.parse(readFileSync(file, "utf8")) as DirectoryEntry[]) this.nodes.set(e.id, e);
      } catch (err) {
        log.warn(`${file}: ignoring an unreadable node directory (${(err as Error).message})`);
      }
    }
    this.set(self.id, self.api, Date.now(), self.witness === true);
  }

  set(id: number, api: string, at = Date.now(), witness = false): void {
    const prev = this.nodes.get(id);
    if (prev && prev.at > at) return;
    if (prev?.api === api && (prev.witness === true) === witness) {
      prev.at = at;
      return;
    }
    this.nodes.set(id, { id, api, at, ...(witness ? { witness } : {}) });
    this.dirty = true;
  }

  merge(entries: DirectoryEntry[]): void {
    for (const e of entries)
      if (typeof e?.id === "number" && typeof e.api === "string") this.set(e.id, e.api, e.at, e.witness === true);
  }

  /** Whether `id` said it is a witness (when it registered). */
  isWitness(id: number): boolean {
    return this.nodes.get(id)?.witness === true;
  }

  get(id: number): string | undefined {
    return this.nodes.get(id)?.api;
  }

  all(): DirectoryEntry[] {
    return [...this.nodes.values()].sort((a, b) => a.id - b.id);
  }

  save(): void {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      writeFileAtomic(this.file, JSON.stringify(this.all()), { mode: 0o666 }); // 0666 less the umask, as always
    } catch (err) {
      log.warn(`could not save the node directory: ${(err as Error).message}`); // names the file
    }
  }
}
