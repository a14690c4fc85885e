import { exhaustedResetMs, type HeaderGetter, type RateLimitInfo } from "./rate-limits";

/**
 * Reads "come back later" hints from every place providers put them, in order of precision:
 *   retry-after-ms (OpenAI), retry-after (seconds or an HTTP date; all three),
 *   a retry delay from the error body (Gemini's RetryInfo.retryDelay, "17s"),
 *   the reset time of an exhausted rate-limit window (OpenAI durations, Anthropic RFC 3339).
 * Returns ms from `now`, or undefined when there is no usable hint.
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

export function retryAfterMsFromHeaders(get: HeaderGetter, now = Date.now()): number | undefined {
  const ms = get("retry-after-ms");
  if (ms && /^\d+(\.\d+)?$/.test(ms.trim())) return Math.round(Number(ms.trim()));
  return parseRetryAfter(get("retry-after"), now);
}

/** A protobuf Duration in JSON form ("17s", "0.250s"), as Gemini's RetryInfo carries it. */
export function parseProtoDuration(value: unknown): number | undefined {
  if (typeof value !== "string") return undefined;
  const m = /^(\d+(?:\.\d+)?)s$/.exec(value.trim());
  return m?.[1] === undefined ? undefined : Math.round(Number(m[1]) * 1000);
}

export function retryHintMs(
  get: HeaderGetter,
  opts: { bodyDelayMs?: number; rateLimit?: RateLimitInfo; now?: number } = {},
): number | undefined {
  return (
    retryAfterMsFromHeaders(get, opts.now) ??
    opts.bodyDelayMs ??
    exhaustedResetMs(opts.rateLimit) ??
    undefined
  );
}
