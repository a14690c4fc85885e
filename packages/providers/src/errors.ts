import { redactSecrets } from "@switchyard/core";
import type { RateLimitInfo } from "./rate-limits";

/**
 * Every upstream failure is classified into a kind that decides what the queue does with it:
 *   retryable kinds (rate_limit, server, timeout, connection, malformed) are retried with
 *   backoff on the same route link, then fall back to the next link;
 *   auth means the key or account is unusable: the link is skipped at once (no retries);
 *   client errors fail the job with the upstream's message; cancelled ends it.
 */
export type ProviderErrorKind =
  "rate_limit" | "server" | "timeout" | "connection" | "malformed" | "client" | "auth" | "cancelled";

const RETRYABLE: ReadonlySet<ProviderErrorKind> = new Set([
  "rate_limit",
  "server",
  "timeout",
  "connection",
  "malformed",
]);

export interface ProviderErrorDetails {
  /** HTTP status of the upstream answer, when there was one. */
  status?: number;
  /** When the upstream said to come back (Retry-After and friends), in ms from now. */
  retryAfterMs?: number;
  /** The upstream's rate-limit headers, parsed; the limiter uses them to correct its view. */
  rateLimit?: RateLimitInfo;
  /** The upstream's own error code or type (e.g. "overloaded_error", "RESOURCE_EXHAUSTED"). */
  code?: string;
}

export class ProviderError extends Error {
  readonly retryable: boolean;
  readonly status?: number;
  readonly retryAfterMs?: number;
  readonly rateLimit?: RateLimitInfo;
  readonly code?: string;

  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly provider: string,
    details: ProviderErrorDetails = {},
  ) {
    // Upstream and library text may quote keys or tokens: nothing shaped like one goes further.
    super(redactSecrets(message));
    this.name = "ProviderError";
    this.retryable = RETRYABLE.has(kind);
    if (details.status !== undefined) this.status = details.status;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
    if (details.rateLimit !== undefined) this.rateLimit = details.rateLimit;
    if (details.code !== undefined) this.code = details.code;
  }
}

export function kindForStatus(status: number): ProviderErrorKind {
  if (status === 429) return "rate_limit";
  if (status === 401 || status === 403) return "auth";
  if (status === 408) return "timeout";
  if (status === 409) return "server"; // OpenAI uses 409 for transient conflicts; it asks clients to retry
  if (status >= 500) return "server"; // includes Anthropic's 529 overloaded_error
  return "client";
}
