/**
 * The rate-limit state upstreams report in response headers, parsed into one shape:
 *   OpenAI     x-ratelimit-{limit,remaining,reset}-{requests,tokens}, resets as durations ("1m30s")
 *   Anthropic  anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset},
 *              resets as RFC 3339 times
 * Gemini sends none on success; its 429 body carries a RetryInfo.retryDelay instead (see retry-hints).
 */
export type HeaderGetter = (name: string) => string | undefined;

export interface RateLimitWindow {
  limit?: number;
  remaining?: number;
  /** Time until the window is back to full, in ms from the answer. */
  resetMs?: number;
}

export interface RateLimitInfo {
  requests?: RateLimitWindow;
  tokens?: RateLimitWindow;
  inputTokens?: RateLimitWindow;
  outputTokens?: RateLimitWindow;
}

type WindowName = keyof RateLimitInfo;

const DURATION =
  /^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$/;

/** Go-style durations as OpenAI writes them: "1s", "6m0s", "1h2m3.5s", "250ms", "0.5s". */
export function parseDuration(value: string | undefined): number | undefined {
  if (!value) return undefined;
  const m = DURATION.exec(value.trim());
  if (!m || m[0] === "") return undefined;
  const [, h, min, s, ms] = m;
  const total =
    Number(h ?? 0) * 3_600_000 + Number(min ?? 0) * 60_000 + Number(s ?? 0) * 1000 + Number(ms ?? 0);
  return Math.round(total);
}

/** An absolute time (RFC 3339, as Anthropic sends it) as ms from `now`, never negative. */
export function parseResetTime(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(value.trim());
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

const count = (v: string | undefined): number | undefined => {
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Number(v.trim());
};

function window(
  limit: string | undefined,
  remaining: string | undefined,
  resetMs: number | undefined,
): RateLimitWindow | undefined {
  const w: RateLimitWindow = {};
  const l = count(limit);
  const r = count(remaining);
  if (l !== undefined) w.limit = l;
  if (r !== undefined) w.remaining = r;
  if (resetMs !== undefined) w.resetMs = resetMs;
  return Object.keys(w).length > 0 ? w : undefined;
}

function collect(entries: [WindowName, RateLimitWindow | undefined][]): RateLimitInfo | undefined {
  const info: RateLimitInfo = {};
  for (const [name, w] of entries) if (w) info[name] = w;
  return Object.keys(info).length > 0 ? info : undefined;
}

export function openaiRateLimits(get: HeaderGetter): RateLimitInfo | undefined {
  const w = (suffix: string) =>
    window(
      get(`x-ratelimit-limit-${suffix}`),
      get(`x-ratelimit-remaining-${suffix}`),
      parseDuration(get(`x-ratelimit-reset-${suffix}`)),
    );
  return collect([
    ["requests", w("requests")],
    ["tokens", w("tokens")],
  ]);
}

export function anthropicRateLimits(get: HeaderGetter, now = Date.now()): RateLimitInfo | undefined {
  const w = (name: string) =>
    window(
      get(`anthropic-ratelimit-${name}-limit`),
      get(`anthropic-ratelimit-${name}-remaining`),
      parseResetTime(get(`anthropic-ratelimit-${name}-reset`), now),
    );
  return collect([
    ["requests", w("requests")],
    ["tokens", w("tokens")],
    ["inputTokens", w("input-tokens")],
    ["outputTokens", w("output-tokens")],
  ]);
}

/** When every exhausted window is full again, in ms; undefined when none is exhausted. */
export function exhaustedResetMs(info: RateLimitInfo | undefined): number | undefined {
  if (!info) return undefined;
  let worst: number | undefined;
  for (const w of Object.values(info) as RateLimitWindow[]) {
    if (w.remaining === 0 && w.resetMs !== undefined) worst = Math.max(worst ?? 0, w.resetMs);
  }
  return worst;
}
