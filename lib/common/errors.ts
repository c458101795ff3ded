/**
 * Typed errors with a message a user can act on. Every error that reaches the CLI is a WolfError
 * (or is wrapped into one), so the top level prints one clear line and picks the exit code.
 */
import { errnoName as nameOfErrno } from "../../native/errno.ts";

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
    // A code from outside (e.g. a daemon's JSON answer) that is not ours is still a failure.
    return EXIT_CODES[this.code] ?? EXIT_CODES.internal;
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

/** The errno name of a system error: Node/Bun's `code` ("ENOENT"), or native SyscallError's number. */
export function errnoName(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) return code;
  const errno = (err as { errno?: unknown }).errno;
  if (err.name === "SyscallError" && typeof errno === "number") return nameOfErrno(errno);
  return undefined;
}

const REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "it is a directory",
  ENOTDIR: "a part of the path is not a directory",
  EEXIST: "it already exists",
  ENOSPC: "no space left on the device",
  EROFS: "the file system is read-only",
  ENOTEMPTY: "the directory is not empty",
  EMFILE: "too many open files",
  EBUSY: "the device or resource is busy",
};

/** Why a system call failed, in words and without the paths Node puts in its messages. */
export function errnoReason(err: unknown): string {
  const name = errnoName(err);
  return (name && REASONS[name]) ?? (err instanceof Error ? err.message : String(err));
}

type SystemErrorInfo = { code: ErrorCode; message: string; hint?: string };

/**
 * A sentence a user can act on for a well-known system error, instead of Node's
 * "EACCES: permission denied, open '/x'" or Bun's "Was there a typo in the url or port?".
 * `what` names the object when the error itself does not (e.g. "config file /etc/wolf/net.toml").
 */
export function describeSystemError(err: unknown, what?: string): SystemErrorInfo | undefined {
  const name = errnoName(err);
  if (!name) return undefined;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number; hostname?: string };
  const path = typeof e.path === "string" && !/^[a-z]+:\/\//.test(e.path) ? e.path : undefined;
  const url = typeof e.path === "string" && path === undefined ? e.path : undefined;
  const target = what ?? path;
  const on = target ? `${target}: ` : "";
  const peer = e.address ? `${e.address}${e.port ? `:${e.port}` : ""}` : (url ?? what);
  // File errors without a path to name would only be vaguer than the original message.
  if (!target && ["ENOENT", "EISDIR", "ENOTDIR", "EEXIST", "ENOTEMPTY"].includes(name)) return undefined;
  switch (name) {
    case "ENOENT":
      return { code: "io", message: `${on}no such file or directory` };
    case "EACCES":
    case "EPERM":
      return {
        code: "io",
        message: `${on}${name === "EPERM" ? "operation not permitted" : "permission denied"}`,
        hint: "run as root (wolf's files are 0600 and TUN/FUSE need privileges), or fix the owner and mode",
      };
    case "EISDIR":
      return { code: "io", message: `${target} is a directory, not a file` };
    case "ENOTDIR":
      return { code: "io", message: `${on}a part of the path is not a directory` };
    case "EEXIST":
      return e.syscall === "mkdir"
        ? {
            code: "io",
            message: `${target} exists and is not a directory`,
            hint: "pick another directory, or move the file away",
          }
        : { code: "io", message: `${on}already exists` };
    case "ENOSPC":
      return { code: "io", message: `${on}no space left on the device` };
    case "EROFS":
      return { code: "io", message: `${on}the file system is read-only` };
    case "EMFILE":
    case "ENFILE":
      return {
        code: "io",
        message: "too many open files",
        hint: "raise the limit (ulimit -n, or LimitNOFILE= in the systemd unit)",
      };
    case "ENOTEMPTY":
      return { code: "io", message: `${on}the directory is not empty` };
    case "EADDRINUSE": {
      const port = e.port ?? /port (\d+)/.exec(e.message)?.[1];
      const where = e.address || port ? `${e.address ?? ""}${port ? `:${port}` : ""}` : "the address";
      return {
        code: "network",
        message: `${what ? `${what}: ` : ""}${where} is already in use`,
        hint: "another process (or another wolf daemon) listens there: stop it, or change the port in the config (`ss -lntup` shows who)",
      };
    }
    case "EADDRNOTAVAIL":
      return {
        code: "network",
        message: `${peer ? `${peer}: ` : ""}the address is not available on this host`,
        hint: "check the bind/listen address in the config",
      };
    case "ECONNREFUSED":
      return {
        code: "network",
        message: `connection refused${peer ? ` by ${peer}` : ""}`,
        hint: "is the service running there and listening on that port?",
      };
    case "ECONNRESET":
      return { code: "network", message: `connection reset${peer ? ` by ${peer}` : ""}` };
    case "ETIMEDOUT":
      return { code: "network", message: `timed out${peer ? ` connecting to ${peer}` : ""}` };
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return {
        code: "network",
        message: `${peer ? `${peer}: ` : ""}no route to the host`,
        hint: "check the address and the network (firewall, routes)",
      };
    case "ENOTFOUND":
    case "EAI_NONAME":
      return {
        code: "network",
        message: `cannot resolve ${e.hostname ?? peer ?? "the host name"}`,
        hint: "check the host name (DNS, /etc/hosts)",
      };
    default:
      return undefined;
  }
}

/** Turns anything thrown into a WolfError, keeping the original as the cause. */
export function asWolfError(err: unknown): WolfError {
  if (err instanceof WolfError) return err;
  if (err instanceof Error) {
    const known = describeSystemError(err);
    if (known) return new WolfError(known.code, known.message, { hint: known.hint, cause: err });
    if (errnoName(err)) return new WolfError("io", err.message, { cause: err });
    return new WolfError("internal", err.message || err.name, {
      hint: "this is a bug in wolf; run with WOLF_DEBUG=1 for the stack trace and report it",
      cause: err,
    });
  }
  return new WolfError("internal", String(err), { hint: "this is a bug in wolf; please report it" });
}
