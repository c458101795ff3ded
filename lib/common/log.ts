/**
 * Logging: consola to stderr (journald picks it up), colour only when allowed.
 * NO_COLOR (https://no-color.org) and a non-TTY stderr both turn colours off.
 */
import { forceColorRequested, noColorRequested } from "./color.ts";
import { createConsola, type ConsolaInstance, LogLevels, type LogType } from "consola";

export type LogLevelName = "silent" | "error" | "warn" | "info" | "debug" | "trace";
export const LOG_LEVEL_NAMES: LogLevelName[] = ["silent", "error", "warn", "info", "debug", "trace"];

export function colorEnabled(): boolean {
  if (noColorRequested()) return false;
  if (forceColorRequested()) return true;
  return Boolean(process.stderr.isTTY);
}

function levelNumber(name: LogLevelName): number {
  return name === "silent" ? LogLevels.silent : LogLevels[name as LogType];
}

/** Whether `name` is one of LOG_LEVEL_NAMES. */
export function isLogLevel(name: unknown): name is LogLevelName {
  return typeof name === "string" && (LOG_LEVEL_NAMES as string[]).includes(name);
}

let root: ConsolaInstance | undefined;
/** One logger per tag: consola copies the level into each tagged instance, so setLogLevel updates them all. */
const tagged = new Map<string, ConsolaInstance>();

export function logger(tag?: string): ConsolaInstance {
  if (!root) {
    const envLevel = process.env.WOLF_LOG_LEVEL;
    root = createConsola({
      level: levelNumber(isLogLevel(envLevel) ? envLevel : "info"),
      stdout: process.stderr,
      stderr: process.stderr,
      formatOptions: { colors: colorEnabled(), date: true, compact: true },
    });
  }
  if (!tag) return root;
  let l = tagged.get(tag);
  if (!l) tagged.set(tag, (l = root.withTag(tag)));
  return l;
}

/** Changes the level of every logger, also those made before (a daemon's, at runtime). */
export function setLogLevel(name: LogLevelName): void {
  logger().level = levelNumber(name);
  for (const l of tagged.values()) l.level = levelNumber(name);
}

export function getLogLevel(): LogLevelName {
  const level = logger().level;
  return LOG_LEVEL_NAMES.find((name) => levelNumber(name) === level) ?? "info";
}
