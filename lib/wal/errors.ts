/** WAL failures a user has to act on. */
import { WolfError } from "../common/errors.ts";

/** Damage that is not a torn tail: acknowledged entries may be affected, so we refuse to start. */
export class WalCorruptionError extends WolfError {
  readonly file: string;
  readonly offset: number;
  constructor(file: string, offset: number, detail: string) {
    super("io", `WAL segment ${file} is corrupt at byte ${offset}: ${detail}`, {
      hint:
        "this is damage inside written data, not an interrupted write, so wolf will not guess. " +
        "Rebuild this node from a healthy peer (wolf ctl scale migrate --from <node>) or move the WAL directory aside.",
    });
    this.name = "WalCorruptionError";
    this.file = file;
    this.offset = offset;
  }
}
