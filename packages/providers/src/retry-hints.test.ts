import { kindForStatus, ProviderError } from "./errors";
import { parseRetryAfter, retryAfterMsFromHeaders } from "./retry-hints";

describe("error classification", () => {
  it.each([
    [429, "rate_limit", true],
    [500, "server", true],
    [503, "server", true],
    [408, "timeout", true],
    [401, "auth", false],
    [403, "auth", false],
    [400, "client", false],
    [404, "client", false],
    [422, "client", false],
  ] as const)("status %i is %s (retryable %s)", (status, kind, retryable) => {
    expect(kindForStatus(status)).toBe(kind);
    expect(new ProviderError(kindForStatus(status), "m", "p", status).retryable).toBe(retryable);
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
    const headers: Record<string, string> = { "retry-after-ms": "250", "retry-after": "9" };
    expect(retryAfterMsFromHeaders((n) => headers[n], now)).toBe(250);
    expect(retryAfterMsFromHeaders((n) => ({ "retry-after": "9" })[n], now)).toBe(9000);
  });
});
