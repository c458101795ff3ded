/** Sections every daemon has: where its state lives, its control API, and logging. */
import { randomBytes } from "node:crypto";
import { LOG_LEVEL_NAMES, type LogLevelName } from "../log.ts";
import { checkAbsolutePath, checkHostPort, oneOf, section, str } from "./schema.ts";

export function nodeSection(defaults: { dataDir: string }) {
  return section("This node: where it keeps its state.", {
    data_dir: str("Directory for all state of this node (overridden by --data-dir).", defaults.dataDir, {
      check: checkAbsolutePath,
    }),
    log_level: oneOf("Log level", LOG_LEVEL_NAMES as unknown as readonly LogLevelName[], "info"),
  });
}

export function apiSection(defaults: { listen: string }) {
  return section("Local HTTP control API (status JSON, Prometheus /metrics, admin actions) used by `wolf ctl`.", {
    listen: str("Address:port of the API.", defaults.listen, { check: checkHostPort }),
    admin_token: str("Token required for admin actions (Authorization: Bearer <token>). `init` generates one.", "", {
      pattern: /^[A-Za-z0-9_-]{16,}$/,
      patternHint: "at least 16 characters of [A-Za-z0-9_-]",
      generate: () => randomBytes(24).toString("base64url"),
      secret: true,
    }),
  });
}
