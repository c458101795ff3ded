/** Where config files live and how `init` writes them (atomically, never clobbering by accident). */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "../errors.ts";
import { writeFileAtomic } from "../files.ts";

/** `/etc/wolf/<name>.toml`, or `$WOLF_CONFIG_DIR/<name>.toml` (handy for several nodes on one machine). */
export function defaultConfigPath(name: string): string {
  const dir = process.env.WOLF_CONFIG_DIR || "/etc/wolf";
  return `${dir}/${name}.toml`;
}

/**
 * Writes a config file via temp file + rename, mode 0600 (configs hold secrets).
 * Refuses to replace an existing file unless `force` is set.
 */
export function writeConfigFile(path: string, text: string, opts: { force?: boolean; name?: string } = {}): void {
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) {
      throw new ConfigError("is a directory", {
        file: path,
        hint: `--config takes the file's path, e.g. --config ${join(path, `${opts.name ?? "wolf"}.toml`)}`,
      });
    }
    if (!opts.force)
      throw new ConfigError("already exists; not overwriting it", { file: path, hint: "pass --force to replace it" });
  }
  writeFileAtomic(path, text);
}
