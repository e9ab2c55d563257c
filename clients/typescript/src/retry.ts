/** How a subscription reconnects: exponential backoff with full jitter, bounded, so that many
 * clients dropped at once (a deploy, a network blip) do not come back in step. */
export interface ReconnectOptions {
  /** Consecutive failed attempts before giving up (an attempt that delivered an event resets it). Default 10. */
  maxAttempts?: number;
  /** The first delay, before the server says otherwise (SSE `retry:`). Default 1000 ms. */
  initialDelayMs?: number;
  /** The longest delay. Default 30000 ms. */
  maxDelayMs?: number;
}

export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A bearer token, or a function that returns a current one (called at every (re)connection, so
 * a subscription outlives one token's expiry). */
export type TokenSource = string | (() => string | Promise<string>);

export async function resolveToken(token: TokenSource): Promise<string> {
  return typeof token === "function" ? await token() : token;
}
