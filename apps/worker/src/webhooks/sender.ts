import { request, type Agent } from "undici";
import { parseRetryAfter } from "@switchyard/providers";
import { BlockedTargetError, signedHeaders } from "@switchyard/webhooks";

/** What one delivery attempt came to. */
export interface AttemptResult {
  ok: boolean;
  /** The receiver's HTTP status, when it answered. */
  status?: number;
  /** Why it failed, for the delivery record (never a secret, never the body). */
  error?: string;
  /** The receiver's Retry-After on 429 or 503, in ms. */
  retryAfterMs?: number;
  /** The target is refused by the address policy: retrying cannot help. */
  blocked?: boolean;
  durationMs: number;
}

const MAX_RETRY_AFTER_MS = 86_400_000;

/**
 * The receiver's Retry-After (seconds or an HTTP date, read as the providers' is), capped at a
 * day; undefined when absent, unreadable or already past (the schedule applies then).
 */
export function webhookRetryAfter(
  value: string | string[] | undefined,
  now = Date.now(),
): number | undefined {
  const ms = parseRetryAfter(Array.isArray(value) ? value[0] : value, now);
  return ms === undefined || ms <= 0 ? undefined : Math.min(ms, MAX_RETRY_AFTER_MS);
}

/**
 * Posts one signed delivery through the guarded agent. Redirects are not followed (a 3xx is a
 * failed attempt); the answer's body is read up to a small limit and thrown away.
 */
export class WebhookSender {
  constructor(
    private readonly agent: Agent,
    /** The whole attempt's limit, connect included (webhooks.timeout_ms; a reload changes it). */
    public timeoutMs: number,
    private readonly userAgent = "Switchyard-Webhooks/1.0",
  ) {}

  async send(url: string, secrets: readonly string[], msgId: string, body: string): Promise<AttemptResult> {
    const started = Date.now();
    const headers = {
      "content-type": "application/json",
      "user-agent": this.userAgent,
      ...signedHeaders(secrets, msgId, body, started),
    };
    try {
      const res = await request(url, {
        method: "POST",
        headers,
        body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.timeoutMs),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      const durationMs = Date.now() - started;
      const status = res.statusCode;
      if (status >= 200 && status < 300) return { ok: true, status, durationMs };
      const result: AttemptResult = { ok: false, status, durationMs, error: `receiver answered ${status}` };
      if (status >= 300 && status < 400)
        result.error = `receiver answered ${status}; redirects are not followed`;
      if (status === 429 || status === 503) {
        const after = webhookRetryAfter(res.headers["retry-after"], started);
        if (after !== undefined) result.retryAfterMs = after;
      }
      return result;
    } catch (err) {
      const durationMs = Date.now() - started;
      const cause = (err as { cause?: unknown }).cause;
      const blocked = err instanceof BlockedTargetError || cause instanceof BlockedTargetError;
      if (blocked) {
        const msg = (cause instanceof BlockedTargetError ? cause : (err as Error)).message;
        return { ok: false, blocked: true, error: msg, durationMs };
      }
      const e = err as NodeJS.ErrnoException;
      const timedOut = e.name === "TimeoutError" || e.name === "AbortError" || /Timeout/.test(e.code ?? "");
      return {
        ok: false,
        durationMs,
        error: timedOut
          ? `no answer within ${this.timeoutMs} ms`
          : `connection failed: ${e.code ?? e.message}`,
      };
    }
  }
}
