import { DelayedError, UnrecoverableError, type Job } from "bullmq";
import {
  jobPayloadSchema,
  retentionMs,
  type JobError,
  type JobPayload,
  type SwitchyardConfig,
  type Usage,
} from "@switchyard/core";
import type { Logger } from "@switchyard/observability";
import { ProviderError, type ChatProvider } from "@switchyard/providers";
import type { JobStore } from "@switchyard/queue";
import type { CapacityReserver } from "./capacity";
import type { WorkerMetrics } from "./metrics";

/** Abort reasons the runner tells apart: a client's cancel ends the job, a shutdown requeues it. */
export const CANCEL_REASON = "cancelled";
export const SHUTDOWN_REASON = "shutdown";

/** What BullMQ keeps as the job's return value (Bull Board shows it); the result lives in the record. */
export interface RunSummary {
  status: "succeeded" | "cancelled" | "expired" | "skipped";
  provider?: string;
  model?: string;
  usage?: Usage;
}

/** Upstream attempts started so far, this one included (stall recoveries and hand-backs count). */
const attemptsOf = (job: Job<JobPayload>): number => Math.max(job.attemptsStarted ?? 0, job.attemptsMade + 1);

/**
 * The per-job path: validate the payload, honour cancel and start deadline, mark running,
 * reserve capacity, call the provider, store the result; on failure classify and let BullMQ
 * retry with backoff, or fail for good.
 */
export class JobRunner {
  private readonly retentionMs: number;
  /** A running record must outlive every attempt and backoff; the final transition shortens it. */
  private readonly runningTtlMs: number;

  constructor(
    private readonly config: SwitchyardConfig,
    private readonly store: JobStore,
    private readonly providers: Map<string, ChatProvider>,
    private readonly capacity: CapacityReserver,
    private readonly metrics: WorkerMetrics,
    private readonly log: Logger,
  ) {
    this.retentionMs = retentionMs(config);
    const maxTimeout = Math.max(...config.providers.map((p) => p.timeout_ms));
    this.runningTtlMs = this.retentionMs + config.queue.attempts * (maxTimeout + config.queue.backoff_max_ms);
  }

  async run(
    job: Job<JobPayload>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<RunSummary> {
    const parsed = jobPayloadSchema.safeParse(job.data);
    if (!parsed.success) {
      this.log.error(
        { bullJobId: job.id, issues: parsed.error.issues.slice(0, 5) },
        "job payload does not match the queue contract",
      );
      const id = typeof job.data?.job_id === "string" ? job.data.job_id : undefined;
      if (id)
        await this.finish(id, "failed", {
          error: { type: "invalid_payload", message: "the queued job is malformed" },
        });
      throw new UnrecoverableError("payload does not match the queue contract");
    }
    const p = parsed.data;
    const log = this.log.child({
      jobId: p.job_id,
      tenant: p.tenant_id,
      traceId: p.trace_id,
      attempt: job.attemptsMade + 1,
    });
    const now = Date.now();

    if (job.attemptsMade === 0 && now > p.start_deadline) {
      await this.finish(p.job_id, "expired", {
        error: { type: "expired", message: "the job was not started before its deadline" },
      });
      this.metrics.jobs.inc({ queue: job.queueName, outcome: "expired" });
      return { status: "expired" };
    }

    const started = await this.store.transition(
      p.job_id,
      "running",
      { started_at: now, attempts: attemptsOf(job) },
      this.runningTtlMs,
    );
    if (!started.exists) {
      log.warn("job record is gone (retention expired); dropping the job");
      return { status: "skipped" };
    }
    if (!started.applied) return { status: "skipped" }; // already final: a crash after the final write
    if (started.cancelRequested) return this.cancelled(p, job);
    this.metrics.queueWait.observe({ queue: job.queueName }, Math.max(0, now - job.timestamp) / 1000);

    const route = this.config.models[p.model];
    const providerCfg = route && this.config.providers.find((x) => x.id === route.provider);
    const provider = providerCfg && this.providers.get(providerCfg.id);
    if (!route || !providerCfg || !provider) {
      await this.finish(p.job_id, "failed", {
        attempts: attemptsOf(job),
        error: { type: "invalid_model", message: `model '${p.model}' is no longer configured` },
      });
      throw new UnrecoverableError(`model ${p.model} is not configured`);
    }
    const upstreamModel = route.model ?? p.model;
    const reservation = await this.capacity.reserve({ provider: providerCfg, model: upstreamModel, job: p });
    const callStart = process.hrtime.bigint();
    this.metrics.inFlight.inc();
    try {
      const result = await provider.chat(
        { ...p.request, model: upstreamModel },
        { apiKey: reservation.apiKey, signal: signal ?? new AbortController().signal },
      );
      await reservation.settle(result.usage);
      this.metrics.observeCall(provider.id, "ok", callStart, result.usage);
      const { usage, ...view } = result;
      await this.finish(p.job_id, "succeeded", {
        attempts: attemptsOf(job),
        result: view,
        usage,
        error: null,
      });
      this.metrics.jobs.inc({ queue: job.queueName, outcome: "succeeded" });
      log.debug({ provider: provider.id, keyId: reservation.keyId }, "job succeeded");
      return { status: "succeeded", provider: view.provider, model: view.model, usage };
    } catch (err) {
      await reservation.settle(undefined);
      const pe =
        err instanceof ProviderError
          ? err
          : new ProviderError("server", (err as Error).message ?? String(err), provider.id);
      this.metrics.observeCall(provider.id, pe.kind, callStart);
      if (signal?.aborted) return this.aborted(p, job, token, signal.reason);
      return this.failedAttempt(p, job, pe, log);
    } finally {
      this.metrics.inFlight.dec();
    }
  }

  private async failedAttempt(
    p: JobPayload,
    job: Job<JobPayload>,
    err: ProviderError,
    log: Logger,
  ): Promise<never> {
    const attempts = attemptsOf(job);
    const error: JobError = {
      type: err.kind,
      message: err.message,
      provider: err.provider,
      ...(err.status ? { status: err.status } : {}),
    };
    // Only attempts BullMQ charged count toward the limit (a shutdown hand-back is not charged).
    const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    if (!err.retryable || last) {
      await this.finish(p.job_id, "failed", { attempts, error });
      this.metrics.jobs.inc({ queue: job.queueName, outcome: "failed" });
      log.info({ kind: err.kind, status: err.status, attempts }, "job failed");
      throw err.retryable ? err : new UnrecoverableError(err.message);
    }
    await this.store.transition(p.job_id, "queued", { attempts, error }, this.runningTtlMs);
    this.metrics.jobs.inc({ queue: job.queueName, outcome: "retried" });
    log.info(
      { kind: err.kind, status: err.status, retryAfterMs: err.retryAfterMs },
      "attempt failed; retrying with backoff",
    );
    throw err; // BullMQ applies the "switchyard" backoff, which honours err.retryAfterMs
  }

  private async aborted(
    p: JobPayload,
    job: Job<JobPayload>,
    token: string | undefined,
    reason: unknown,
  ): Promise<RunSummary> {
    if (reason === SHUTDOWN_REASON && token) {
      // Not the client's doing: give the job back untouched (no attempt spent) for another worker.
      await this.store.transition(p.job_id, "queued", {}, this.runningTtlMs);
      await job.moveToDelayed(Date.now(), token);
      throw new DelayedError("worker shutting down; job returned to the queue");
    }
    return this.cancelled(p, job);
  }

  private async cancelled(p: JobPayload, job: Job<JobPayload>): Promise<RunSummary> {
    await this.finish(p.job_id, "cancelled", {
      error: { type: "cancelled", message: "cancelled by the client" },
    });
    this.metrics.jobs.inc({ queue: job.queueName, outcome: "cancelled" });
    return { status: "cancelled" };
  }

  private finish(
    jobId: string,
    status: "succeeded" | "failed" | "cancelled" | "expired",
    fields: Parameters<JobStore["transition"]>[2],
  ) {
    return this.store.transition(jobId, status, { finished_at: Date.now(), ...fields }, this.retentionMs);
  }
}
