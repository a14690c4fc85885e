import { kindForStatus, ProviderError } from "./errors";
import {
  anthropicRateLimits,
  exhaustedResetMs,
  openaiRateLimits,
  parseDuration,
  parseResetTime,
} from "./rate-limits";
import { parseProtoDuration, parseRetryAfter, retryAfterMsFromHeaders, retryHintMs } from "./retry-hints";

const getter =
  (h: Record<string, string>) =>
  (n: string): string | undefined =>
    h[n];

describe("error classification", () => {
  it.each([
    [429, "rate_limit", true],
    [500, "server", true],
    [503, "server", true],
    [529, "server", true],
    [408, "timeout", true],
    [401, "auth", false],
    [403, "auth", false],
    [400, "client", false],
    [404, "client", false],
    [422, "client", false],
  ] as const)("status %i is %s (retryable %s)", (status, kind, retryable) => {
    expect(kindForStatus(status)).toBe(kind);
    expect(new ProviderError(kindForStatus(status), "m", "p", { status }).retryable).toBe(retryable);
  });
});

describe("retry hints", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  it("reads Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("7", now)).toBe(7000);
    expect(parseRetryAfter("1.5", now)).toBe(1500);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Wed, 31 Dec 2025 23:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
  it("prefers retry-after-ms", () => {
    expect(retryAfterMsFromHeaders(getter({ "retry-after-ms": "250", "retry-after": "9" }), now)).toBe(250);
    expect(retryAfterMsFromHeaders(getter({ "retry-after": "9" }), now)).toBe(9000);
  });
  it("reads OpenAI's Go-style reset durations", () => {
    expect(parseDuration("1s")).toBe(1000);
    expect(parseDuration("6m0s")).toBe(360_000);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1h2m3.5s")).toBe(3_723_500);
    expect(parseDuration("0.5s")).toBe(500);
    expect(parseDuration("2m")).toBe(120_000);
    expect(parseDuration("")).toBeUndefined();
    expect(parseDuration("soon")).toBeUndefined();
  });
  it("reads Anthropic's RFC 3339 reset times", () => {
    expect(parseResetTime("2026-01-01T00:00:12Z", now)).toBe(12_000);
    expect(parseResetTime("2025-12-31T23:59:00Z", now)).toBe(0);
    expect(parseResetTime("nope", now)).toBeUndefined();
  });
  it("reads Gemini's RetryInfo delay", () => {
    expect(parseProtoDuration("17s")).toBe(17_000);
    expect(parseProtoDuration("0.250s")).toBe(250);
    expect(parseProtoDuration(17)).toBeUndefined();
    expect(parseProtoDuration("17")).toBeUndefined();
  });
  it("parses OpenAI rate-limit headers and finds the exhausted window's reset", () => {
    const info = openaiRateLimits(
      getter({
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "1m30s",
      }),
    );
    expect(info).toEqual({
      requests: { limit: 500, remaining: 499, resetMs: 120 },
      tokens: { limit: 30000, remaining: 0, resetMs: 90_000 },
    });
    expect(exhaustedResetMs(info)).toBe(90_000);
    expect(openaiRateLimits(getter({}))).toBeUndefined();
  });
  it("parses Anthropic rate-limit headers, input and output tokens apart", () => {
    const info = anthropicRateLimits(
      getter({
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-01-01T00:00:05Z",
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "29000",
        "anthropic-ratelimit-input-tokens-reset": "2026-01-01T00:00:02Z",
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": "2026-01-01T00:00:09Z",
      }),
      now,
    );
    expect(info).toEqual({
      requests: { limit: 50, remaining: 0, resetMs: 5000 },
      inputTokens: { limit: 30000, remaining: 29000, resetMs: 2000 },
      outputTokens: { limit: 8000, remaining: 0, resetMs: 9000 },
    });
    expect(exhaustedResetMs(info)).toBe(9000);
  });
  it("takes the most precise hint first: header, then body delay, then exhausted reset", () => {
    const rateLimit = { tokens: { remaining: 0, resetMs: 4000 } };
    expect(retryHintMs(getter({ "retry-after": "2" }), { bodyDelayMs: 17_000, rateLimit, now })).toBe(2000);
    expect(retryHintMs(getter({}), { bodyDelayMs: 17_000, rateLimit, now })).toBe(17_000);
    expect(retryHintMs(getter({}), { rateLimit, now })).toBe(4000);
    expect(retryHintMs(getter({}), { now })).toBeUndefined();
  });
});
