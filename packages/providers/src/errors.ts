/**
 * Every upstream failure is classified into a kind that decides what the queue does with it:
 *   retryable kinds (rate_limit, server, timeout, connection, malformed) go back with backoff;
 *   client and auth errors fail the job at once with the upstream's message; cancelled ends it.
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

export class ProviderError extends Error {
  readonly retryable: boolean;

  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly provider: string,
    readonly status?: number,
    /** When the upstream said to come back (Retry-After and friends), in ms from now. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "ProviderError";
    this.retryable = RETRYABLE.has(kind);
  }
}

export function kindForStatus(status: number): ProviderErrorKind {
  if (status === 429) return "rate_limit";
  if (status === 401 || status === 403) return "auth";
  if (status === 408) return "timeout";
  if (status === 409) return "server"; // OpenAI uses 409 for transient conflicts; it asks clients to retry
  if (status >= 500) return "server";
  return "client";
}
