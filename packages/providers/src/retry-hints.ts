/**
 * Reads "come back later" hints from response headers. Returns milliseconds from `now`,
 * or undefined when there is no usable hint. Later issues add the provider-specific ones.
 */
export type HeaderGetter = (name: string) => string | undefined;

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
