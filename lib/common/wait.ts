/** Polling with a deadline: the one way we wait for a condition (never a fixed sleep). */
import { WolfError } from "./errors.ts";

/** What we waited for did not happen in time: something outside (a server, a peer), not a bug. */
export class TimeoutError extends WolfError {
  constructor(what: string, ms: number, last?: unknown) {
    const detail = last === undefined ? "" : ` (last: ${last instanceof Error ? last.message : String(last)})`;
    super(
      "network",
      `timed out after ${ms} ms waiting for ${what}${detail}`,
      last === undefined ? undefined : { cause: last },
    );
    this.name = "TimeoutError";
  }
}

export interface WaitOptions {
  /** Give up after this many milliseconds. */
  timeoutMs: number;
  /** Pause between polls. */
  intervalMs?: number;
  /** Shown in the timeout error. */
  what?: string;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it returns a value other than undefined/false/null, and returns that value.
 * A thrown error counts as "not yet" and is reported if the deadline passes.
 */
export async function waitUntil<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: WaitOptions,
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  const interval = opts.intervalMs ?? 50;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw new TimeoutError(opts.what ?? "condition", opts.timeoutMs, last);
    await sleep(Math.min(interval, Math.max(1, deadline - Date.now())));
  }
}
