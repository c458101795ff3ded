/** StableStores for term, vote and the last committed voter set: in memory, and a JSON file. */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { WolfError } from "../common/errors.ts";
import { writeFileAtomic } from "../common/files.ts";
import type { HardState, StableStore } from "./types.ts";

const EMPTY: HardState = { term: 0, votedFor: null, committedConfig: null };

export class MemoryStableStore implements StableStore {
  private state: HardState = structuredClone(EMPTY);
  get(): HardState {
    return structuredClone(this.state);
  }
  set(state: HardState): void {
    this.state = structuredClone(state);
  }
}

/** Written with temp file + fsync + rename, so a crash leaves either the old or the new state. */
export class FileStableStore implements StableStore {
  private state: HardState;

  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
    if (existsSync(path)) {
      try {
        this.state = { ...EMPTY, ...(JSON.parse(readFileSync(path, "utf8")) as Partial<HardState>) };
      } catch (err) {
        throw new WolfError("io", `${path}: cluster state file is unreadable: ${(err as Error).message}`, {
          hint: "it holds this node's term and vote; restore it from backup or remove the node's data dir and let it rejoin",
        });
      }
    } else {
      this.state = structuredClone(EMPTY);
    }
  }

  get(): HardState {
    return structuredClone(this.state);
  }

  set(state: HardState): void {
    writeFileAtomic(this.path, JSON.stringify(state));
    this.state = structuredClone(state);
  }
}
