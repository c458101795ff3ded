/** Where config files live and how `init` writes them (atomically, never clobbering by accident). */
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { ConfigError } from "../errors.ts";

/** `/etc/wolf/<name>.toml`, or `$WOLF_CONFIG_DIR/<name>.toml` (handy for several nodes on one machine). */
export function defaultConfigPath(name: string): string {
  const dir = process.env.WOLF_CONFIG_DIR || "/etc/wolf";
  return `${dir}/${name}.toml`;
}

/**
 * Writes a config file via temp file + rename, mode 0600 (configs hold secrets).
 * Refuses to replace an existing file unless `force` is set.
 */
export function writeConfigFile(path: string, text: string, opts: { force?: boolean } = {}): void {
  if (existsSync(path) && !opts.force) {
    throw new ConfigError("already exists; not overwriting it", { file: path, hint: "pass --force to replace it" });
  }
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}
