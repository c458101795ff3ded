/**
 * Logging: consola to stderr (journald picks it up), colour only when allowed.
 * NO_COLOR (https://no-color.org) and a non-TTY stderr both turn colours off.
 */
import { forceColorRequested } from "./color.ts";
import { createConsola, type ConsolaInstance, LogLevels, type LogType } from "consola";

export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";
export const LOG_LEVEL_NAMES: LogLevelName[] = ["silent", "error", "warn", "info", "debug", "trace"];

export function colorEnabled(): boolean {
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== "") return false;
  if (forceColorRequested()) return true;
  return Boolean(process.stderr.isTTY);
}

function levelNumber(name: LogLevelName): number {
  return name === "silent" ? LogLevels.silent : LogLevels[name as LogType];
}

let root: ConsolaInstance | undefined;

export function logger(tag?: string): ConsolaInstance {
  if (!root) {
    const envLevel = process.env.WOLF_LOG_LEVEL as LogLevelName | undefined;
    root = createConsola({
      level: levelNumber(envLevel && LOG_LEVEL_NAMES.includes(envLevel) ? envLevel : "info"),
      stdout: process.stderr,
      stderr: process.stderr,
      formatOptions: { colors: colorEnabled(), date: true, compact: true },
    });
  }
  return tag ? root.withTag(tag) : root;
}

export function setLogLevel(name: LogLevelName): void {
  logger().level = levelNumber(name);
}
