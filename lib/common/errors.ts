/**
 * Typed errors with a message a user can act on. Every error that reaches the CLI is a WolfError
 * (or is wrapped into one), so the top level prints one clear line and picks the exit code.
 */

export type ErrorCode =
  | "config" // a config file or value is wrong
  | "usage" // the command line is wrong
  | "not_implemented" // the verb exists in the product but is not built yet
  | "io" // a file or device operation failed
  | "network" // a peer or socket failed
  | "protocol" // a peer sent something we refuse
  | "auth" // authentication failed
  | "state" // the operation is not valid in the current state
  | "internal";

/** Exit codes: stable so scripts can rely on them. */
export const EXIT_CODES: Record<ErrorCode, number> = {
  internal: 1,
  usage: 2,
  not_implemented: 3,
  config: 4,
  io: 5,
  network: 6,
  protocol: 7,
  auth: 8,
  state: 9,
};

export class WolfError extends Error {
  readonly code: ErrorCode;
  /** Optional hint printed after the message: what the user can do about it. */
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, options?: { hint?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "WolfError";
    this.code = code;
    this.hint = options?.hint;
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

export class ConfigError extends WolfError {
  readonly file?: string;
  readonly key?: string;

  constructor(message: string, options?: { file?: string; key?: string; hint?: string; cause?: unknown }) {
    const where = [options?.file, options?.key].filter(Boolean).join(": ");
    super("config", where ? `${where}: ${message}` : message, options);
    this.name = "ConfigError";
    this.file = options?.file;
    this.key = options?.key;
  }
}

export class UsageError extends WolfError {
  constructor(message: string, hint?: string) {
    super("usage", message, { hint });
    this.name = "UsageError";
  }
}

/** A product verb that is specified but not built yet. Never reports success. */
export class NotImplementedError extends WolfError {
  constructor(command: string, issue?: string) {
    super("not_implemented", `${command}: not built yet${issue ? ` (${issue})` : ""}`, {
      hint: "this verb is part of the product plan; see README.md for what works today",
    });
    this.name = "NotImplementedError";
  }
}

/** Turns anything thrown into a WolfError, keeping the original as the cause. */
export function asWolfError(err: unknown): WolfError {
  if (err instanceof WolfError) return err;
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (typeof errno === "string" && /^E[A-Z]+$/.test(errno)) return new WolfError("io", err.message, { cause: err });
    return new WolfError("internal", err.message, { cause: err });
  }
  return new WolfError("internal", String(err));
}
