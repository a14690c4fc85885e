/**
 * Exponential backoff with "equal jitter": a delay drawn from [cap/2, cap] where
 * cap = min(max, base * 2^(attempt-1)). The jitter spreads retries of many jobs that failed
 * together; the floor keeps each retry meaningfully later than the last.
 * An upstream retry hint (Retry-After and friends) wins: we come back when asked, plus a
 * little jitter (at most 10% or 1 s) so a fleet of waiting jobs does not return in lockstep.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export function backoffDelay(
  attempt: number,
  opts: BackoffOptions,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number {
  if (retryAfterMs !== undefined && retryAfterMs > 0) {
    return Math.round(retryAfterMs + random() * Math.min(1_000, retryAfterMs * 0.1));
  }
  const cap = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(cap / 2 + (random() * cap) / 2);
}
