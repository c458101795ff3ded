/**
 * One client for wolf's daemon APIs: HTTP/JSON over TCP (scale's node API, with the admin token as
 * `Authorization: Bearer`) or over a unix socket (net's control socket). `send` is the bare
 * request (a daemon talking to another node reads the answer itself); `request` is what the CLI
 * uses: parsed JSON, and a WolfError a user can act on when the daemon is not there or refuses.
 */
import { describeSystemError, type ErrorCode, errnoName, errnoReason, EXIT_CODES, WolfError } from "./errors.ts";

export interface DaemonEndpoint {
  /** `http://host:port` (for a unix socket, any `http://name`: only the path is used). */
  base: string;
  socketPath?: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
}

/** How the CLI names the daemon in its errors. */
export interface DaemonDescription {
  /** "wolf scale": errors say "the wolf scale daemon", its log is `journalctl -u wolf-scale`. */
  service: string;
  /** How to start it (the hint when nothing answers). */
  startHint: string;
  /** Errors start with `GET /path:` (a command that makes several requests says which failed). */
  namesRequest?: boolean;
  /** Default per-request timeout. */
  timeoutMs: number;
}

export interface SendOptions {
  body?: unknown;
  headers?: Record<string, string>;
  /** No timeout when absent (a dump streams for as long as it takes). */
  timeoutMs?: number;
}

export class DaemonClient {
  constructor(
    readonly endpoint: DaemonEndpoint,
    private readonly described?: DaemonDescription,
  ) {}

  /** The bare request: the token, a JSON body, a timeout. Transport errors propagate as they are. */
  send(method: "GET" | "POST", path: string, opts: SendOptions = {}): Promise<Response> {
    const { base, socketPath, token } = this.endpoint;
    return fetch(`${base}${path}`, {
      ...(socketPath ? { unix: socketPath } : {}),
      method,
      headers: {
        ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}),
        ...(opts.body === undefined ? {} : { "content-type": "application/json" }),
        ...opts.headers,
      },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.timeoutMs === undefined ? undefined : AbortSignal.timeout(opts.timeoutMs),
    } as RequestInit);
  }

  /** Parsed JSON of a 2xx answer; otherwise a WolfError naming the daemon and what to do. */
  async request<T>(method: "GET" | "POST", path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const timeout = timeoutMs ?? this.described?.timeoutMs ?? 30_000;
    let res: Response;
    try {
      res = await this.send(method, path, { body, timeoutMs: timeout });
    } catch (err) {
      throw this.notReachable(err, timeout);
    }
    const text = await res.text();
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
    if (!res.ok) throw this.refused(method, path, res.status, data, text);
    return data as T;
  }

  private get name(): string {
    return this.described ? `${this.described.service} daemon` : "daemon";
  }

  /** The daemon answered with an error: its own code when it sends one, else one from the status. */
  private refused(method: string, path: string, status: number, data: unknown, text: string): WolfError {
    const e = (data && typeof data === "object" ? data : {}) as { error?: unknown; hint?: unknown; code?: unknown };
    const code: ErrorCode =
      typeof e.code === "string" && Object.hasOwn(EXIT_CODES, e.code)
        ? (e.code as ErrorCode)
        : status === 401
          ? "auth"
          : status === 400
            ? "usage"
            : "state";
    const hint = typeof e.hint === "string" ? e.hint : undefined;
    if (this.described?.namesRequest)
      return new WolfError(code, `${method} ${path}: ${typeof e.error === "string" ? e.error : text.slice(0, 300)}`, {
        hint,
      });
    const message =
      typeof e.error === "string" ? e.error : `the ${this.name} answered HTTP ${status} to ${method} ${path}`;
    return new WolfError(code, message, { hint });
  }

  /** Why the daemon did not answer: not running, not ours to talk to, stuck, or something else. */
  private notReachable(err: unknown, timeoutMs: number): WolfError {
    const { base, socketPath } = this.endpoint;
    const where = socketPath ?? base;
    const start = { hint: this.described?.startHint, cause: err };
    const name = errnoName(err) ?? (err as Error).name;
    if (name === "ENOENT" && socketPath)
      return new WolfError("state", `the ${this.name} is not running (no control socket at ${socketPath})`, start);
    if (name === "ECONNREFUSED") {
      const why = socketPath
        ? `nothing listens on ${socketPath}; the daemon that made it is gone`
        : `nothing answers at ${base}`;
      return new WolfError("state", `the ${this.name} is not running (${why})`, start);
    }
    if ((name === "EACCES" || name === "EPERM") && socketPath) {
      return new WolfError(
        "io",
        `permission denied on the ${this.described?.service ?? "daemon's"} control socket ${socketPath}`,
        {
          hint: "it is mode 0600 (the daemon runs as root): run this as root",
          cause: err,
        },
      );
    }
    if (name === "TimeoutError" || name === "AbortError") {
      return new WolfError(
        "network",
        `the ${this.name} did not answer ${socketPath ? "on" : "at"} ${where} within ${timeoutMs / 1000} s`,
        {
          hint: `it may be overloaded or stuck; see its log (journalctl -u ${this.described?.service.replace(/ /g, "-") ?? "wolf"})`,
          cause: err,
        },
      );
    }
    const known = socketPath ? undefined : describeSystemError(err, base);
    if (known)
      return new WolfError(known.code, `the ${this.name} is not reachable: ${known.message}`, {
        hint: known.hint ?? start.hint,
        cause: err,
      });
    return new WolfError("state", `the ${this.name} is not reachable at ${where}: ${errnoReason(err)}`, start);
  }
}
