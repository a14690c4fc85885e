import { UnrecoverableError, Worker, type Job } from "bullmq";
import type { SwitchyardConfig } from "@switchyard/core";
import {
  inSpan,
  SpanKind,
  SpanStatusCode,
  tracingOff,
  type Logger,
  type Tracing,
} from "@switchyard/observability";
import type { Redis } from "@switchyard/queue";
import {
  WEBHOOK_BACKOFF,
  WEBHOOK_QUEUE,
  deliveryJobSchema,
  type Delivery,
  type DeliveryJob,
  type WebhookStore,
} from "@switchyard/webhooks";
import { RetryLater } from "../retry";
import type { DeliveryOutcome, WebhookMetrics } from "./metrics";
import type { WebhookSender } from "./sender";

/**
 * Consumes the webhooks queue: one signed POST per attempt, then success, a retry on the
 * configured schedule (or the receiver's Retry-After on 429/503), or a dead letter after the
 * last attempt. A 410 Gone, or an endpoint failing without a success for disable_after_hours,
 * disables the endpoint with a reason. Deliveries never share slots with LLM jobs.
 */
export class DeliveryWorker {
  private worker?: Worker<DeliveryJob>;

  constructor(
    private config: SwitchyardConfig,
    private readonly connection: Redis,
    private readonly store: WebhookStore,
    private readonly sender: WebhookSender,
    private readonly metrics: WebhookMetrics,
    private readonly log: Logger,
    private readonly tracing: Tracing = tracingOff,
    private readonly random: () => number = Math.random,
  ) {}

  async start(): Promise<void> {
    const wh = this.config.webhooks;
    this.worker = new Worker<DeliveryJob>(WEBHOOK_QUEUE, (job) => this.process(job), {
      connection: this.connection,
      prefix: this.config.queue.prefix,
      concurrency: wh.concurrency,
      lockDuration: Math.max(30_000, wh.timeout_ms * 2),
      ...(this.tracing.bullmq ? { telemetry: this.tracing.bullmq } : {}),
      settings: {
        backoffStrategy: (_attemptsMade: number, type?: string, err?: Error) =>
          type === WEBHOOK_BACKOFF && err instanceof RetryLater ? err.delayMs : 0,
      },
    });
    this.worker.on("error", (err) => this.log.error({ err }, "webhook worker error"));
    await this.worker.waitUntilReady();
  }

  /** Takes a reloaded config: schedule, limits and concurrency apply to the next deliveries. */
  configure(config: SwitchyardConfig): void {
    this.config = config;
    this.sender.timeoutMs = config.webhooks.timeout_ms;
    if (this.worker) this.worker.concurrency = config.webhooks.concurrency;
  }

  async stop(): Promise<void> {
    await this.worker?.close();
  }

  /** Delay before the retry after failed attempt number `attempt` (1-based), jittered. */
  scheduledDelayMs(attempt: number): number {
    const wh = this.config.webhooks;
    const step = wh.retry_schedule_seconds[Math.min(attempt, wh.retry_schedule_seconds.length) - 1] ?? 5;
    return Math.round(step * 1000 * (1 + wh.jitter * (2 * this.random() - 1)));
  }

  private async process(job: Job<DeliveryJob>): Promise<string> {
    const { delivery_id } = deliveryJobSchema.parse(job.data);
    const d = await this.store.delivery(delivery_id);
    if (!d) return "record expired";
    // A second run of a job that already succeeded (a stalled lock, a duplicate replay) sends nothing.
    if (d.status === "succeeded") return "already delivered";
    const target = await this.target(d);
    if ("skip" in target) {
      await this.store.updateDelivery(d.id, {
        status: "failed",
        next_attempt_at: null,
        last_error: target.skip,
      });
      this.count(d, "skipped");
      return target.skip;
    }

    const now = Date.now();
    const attempt = job.attemptsMade + 1;
    const isLast = attempt >= (job.opts.attempts ?? 1);
    const r = await this.attempt(d, target, attempt);
    const base = {
      attempts: d.attempts + 1,
      last_attempt_at: now,
      response_status: r.status ?? null,
      last_error: r.error ?? null,
    };
    if (r.ok) {
      await this.store.updateDelivery(d.id, { ...base, status: "succeeded", next_attempt_at: null });
      if (d.endpoint_id) await this.store.noteSuccess(d.endpoint_id, now);
      return this.done(d, "succeeded", r.durationMs);
    }
    if (r.blocked) {
      await this.store.updateDelivery(d.id, { ...base, status: "failed", next_attempt_at: null });
      this.done(d, "blocked", r.durationMs);
      throw new UnrecoverableError(r.error ?? "target blocked");
    }
    if (r.status === 410) {
      const reason = `the receiver answered 410 Gone on ${new Date(now).toISOString()}`;
      if (d.endpoint_id) await this.store.setEndpointStatus(d.endpoint_id, "disabled", reason, now);
      await this.store.updateDelivery(d.id, { ...base, status: "failed", next_attempt_at: null });
      this.done(d, "endpoint_disabled", r.durationMs);
      throw new UnrecoverableError(reason);
    }
    if (d.endpoint_id) {
      const since = await this.store.noteFailure(d.endpoint_id, now);
      const limitMs = this.config.webhooks.disable_after_hours * 3_600_000;
      if (now - since >= limitMs) {
        const reason = `deliveries have failed since ${new Date(since).toISOString()} without a success`;
        await this.store.setEndpointStatus(d.endpoint_id, "disabled", reason, now);
        await this.store.updateDelivery(d.id, { ...base, status: "failed", next_attempt_at: null });
        this.log.warn({ endpoint: d.endpoint_id, since }, "webhook endpoint disabled: failing for too long");
        this.done(d, "endpoint_disabled", r.durationMs);
        throw new UnrecoverableError(reason);
      }
    }
    if (isLast) {
      await this.store.updateDelivery(d.id, { ...base, status: "failed", next_attempt_at: null });
      this.done(d, "failed", r.durationMs);
      throw new UnrecoverableError(`${r.error ?? "failed"}; no attempts left (dead-lettered)`);
    }
    const delay = r.retryAfterMs ?? this.scheduledDelayMs(attempt);
    await this.store.updateDelivery(d.id, { ...base, status: "pending", next_attempt_at: now + delay });
    this.done(d, "retry", r.durationMs);
    throw new RetryLater(r.error ?? "failed", delay);
  }

  /**
   * One signed POST, in a CLIENT span of the job's trace (the delivery was queued in it). The
   * span names the receiver's host and path, never its query (a URL may carry a token there).
   */
  private attempt(d: Delivery, target: { url: string; secrets: string[] }, attempt: number) {
    const send = () => this.sender.send(target.url, target.secrets, d.webhook_id, d.body);
    const url = new URL(target.url);
    return inSpan(
      this.tracing,
      `webhook ${d.event_type}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "http.request.method": "POST",
          "server.address": url.hostname,
          "url.path": url.pathname,
          "switchyard.delivery.id": d.id,
          "switchyard.delivery.attempt": attempt,
          "switchyard.job.id": d.job_id,
          "switchyard.webhook.event": d.event_type,
        },
      },
      async (span) => {
        const r = await send();
        if (r.status !== undefined) span?.setAttribute("http.response.status_code", r.status);
        if (!r.ok) {
          span?.setAttribute(
            "error.type",
            r.blocked ? "blocked" : r.status ? String(r.status) : "connection",
          );
          span?.setStatus({ code: SpanStatusCode.ERROR, message: r.error ?? "failed" });
        }
        return r;
      },
    );
  }

  private async target(d: Delivery): Promise<{ url: string; secrets: string[] } | { skip: string }> {
    if (d.endpoint_id) {
      const ep = await this.store.endpoint(d.endpoint_id, d.tenantId);
      if (!ep) return { skip: "the endpoint was deleted" };
      if (ep.status === "disabled") return { skip: `the endpoint is disabled: ${ep.disabled_reason ?? ""}` };
      return { url: ep.url, secrets: ep.secrets };
    }
    const secrets = await this.store.tenantSecrets(d.tenantId);
    if (!d.url) return { skip: "the delivery has no URL" };
    if (secrets.length === 0) return { skip: "the tenant has no signing secret (POST /v1/webhook-secret)" };
    return { url: d.url, secrets };
  }

  private count(d: Delivery, outcome: DeliveryOutcome): void {
    this.metrics.attempts.inc({ event: d.event_type, outcome });
  }

  private done(d: Delivery, outcome: DeliveryOutcome, durationMs: number): string {
    this.count(d, outcome);
    this.metrics.duration.observe({ outcome }, durationMs / 1000);
    return outcome;
  }
}
