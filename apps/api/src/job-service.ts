import { createHash } from "node:crypto";
import { z } from "zod";
import {
  ApiError,
  badRequest,
  canonicalJson,
  conflict,
  createJobRequestSchema,
  estimateSpend,
  type Degraded,
  type PriceBook,
  isTerminal,
  newJobId,
  notFound,
  ownEntry,
  retentionMs,
  startWithinMs,
  type CreateJobRequest,
  type JobPayload,
  type JobView,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import {
  dayPeriod,
  fairEntryOf,
  monthPeriod,
  PRIORITY_RANK,
  type AdmissionBound,
  type AdmissionCheck,
  type CreateOutcome,
  type QuotaName,
  queueNameFor,
  type FairQueue,
  type IdempotencyClaim,
  type JobEvents,
  type JobProducer,
  type JobRecord,
  type JobStore,
  type Keys,
  type Redis,
} from "@switchyard/queue";
import { activeTraceparent, trace, type Logger } from "@switchyard/observability";
import { redisUnavailable } from "./errors";
import { parseBody } from "./validate";

/** What a request says about the answer cache (Cache-Control: no-cache, no-store). */
export interface CacheDirectives {
  read: boolean;
  write: boolean;
}

/** Cache-Control as a client sends it: no-store neither reads nor writes, no-cache does not read. */
export function cacheDirectives(header: string | undefined): CacheDirectives | undefined {
  if (!header) return undefined;
  const parts = new Set(
    header
      .toLowerCase()
      .split(",")
      .map((s) => s.trim()),
  );
  if (parts.has("no-store")) return { read: false, write: false };
  if (parts.has("no-cache")) return { read: false, write: true };
  return undefined;
}

export interface SubmitOptions {
  idempotencyKey?: string | undefined;
  cache?: CacheDirectives | undefined;
  /** A stale Idempotency-Key claim was just released: take the key over (once). */
  takeOver?: boolean;
  /** A drop-in endpoint waits for the job: no webhook to the tenant's endpoints. */
  sync?: boolean;
  /** The worker relays the answer piece by piece through the job's stream. */
  stream?: boolean;
  /** A line of this batch (its hash key). */
  batchKey?: string;
}

/** Submission, lookup, long-poll and cancel: the API's job logic, free of HTTP details. */
export interface SubmitOutcome {
  job: JobView;
  /** True when an Idempotency-Key matched an earlier submission. */
  replayed: boolean;
}

const idempotencyRecordSchema = z.object({ fp: z.string(), job_id: z.string() });
type IdempotencyRecord = z.infer<typeof idempotencyRecordSchema>;

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export function parseCreateJob(body: unknown, config: SwitchyardConfig): CreateJobRequest {
  const req = parseBody(createJobRequestSchema, body);
  if (!ownEntry(config.models, req.model)) {
    const known = Object.keys(config.models).sort();
    const list = known.slice(0, 20).join(", ") + (known.length > 20 ? ", ..." : "");
    throw badRequest(`unknown model '${req.model}'; configured models: ${list}`, [
      { path: "model", message: "unknown model or route" },
    ]);
  }
  return req;
}

/** The request as admission degrades it: the cheaper route, max_tokens capped. */
function degradedRequest<R extends { model: string; max_tokens?: number | undefined }>(
  req: R,
  to: { model: string; max_tokens_cap?: number | undefined },
): R {
  const cap = to.max_tokens_cap;
  const max = cap === undefined ? req.max_tokens : Math.min(req.max_tokens ?? cap, cap);
  return { ...req, model: to.model, ...(max !== undefined ? { max_tokens: max } : {}) };
}

const BOUND_TEXT: Record<AdmissionBound, string> = {
  tier_max_waiting: "its tier has as many jobs waiting as admission allows (admission.<tier>.max_waiting)",
  tier_max_wait_seconds:
    "its estimated wait is longer than its tier allows (admission.<tier>.max_wait_seconds)",
  tenant_max_waiting: "the tenant has as many jobs waiting as it may (admission.max_waiting of the tenant)",
  tenant_max_wait_seconds:
    "its estimated wait is longer than the tenant allows (admission.max_wait_seconds of the tenant)",
};

/** 503 at an admission bound: which one, and when to come back. */
function overloaded(
  tenant: TenantConfig,
  r: { bound: AdmissionBound; retryAfterMs: number; estimatedWaitMs: number | null },
): ApiError {
  const retry = Math.max(1, Math.ceil(r.retryAfterMs / 1000));
  const wait =
    r.estimatedWaitMs === null ? "" : ` (estimated wait ${Math.round(r.estimatedWaitMs / 1000)} s)`;
  return new ApiError(
    503,
    "overloaded",
    `the ${tenant.tier} tier is over an admission bound: ${BOUND_TEXT[r.bound]}${wait}; nothing was queued, retry after ${retry} s`,
    [{ path: `admission.${r.bound}`, message: "bound reached" }],
    { "retry-after": String(retry) },
  );
}

/** 429 over a quota, with Retry-After until its UTC day or month resets. */
function quotaExceeded(quota: QuotaName, now: number): ApiError {
  const d = new Date(now);
  const reset =
    quota === "usd_per_month"
      ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
      : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
  const retry = Math.max(1, Math.ceil((reset - now) / 1000));
  return new ApiError(
    429,
    "quota_exceeded",
    `the tenant's ${quota} quota is used up until ${new Date(reset).toISOString()}; GET /v1/usage shows the usage`,
    [{ path: `quota.${quota}`, message: "quota reached" }],
    { "retry-after": String(retry) },
  );
}

export class JobService {
  constructor(
    private readonly config: SwitchyardConfig,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly store: JobStore,
    private readonly producer: JobProducer,
    private readonly events: JobEvents,
    private readonly log: Logger,
    private readonly fair: FairQueue,
    private readonly prices: PriceBook,
  ) {}

  private get retentionMs(): number {
    return retentionMs(this.config);
  }

  async submit(
    tenant: TenantConfig,
    req: CreateJobRequest,
    traceId: string,
    opts: SubmitOptions = {},
  ): Promise<SubmitOutcome> {
    const { idempotencyKey, takeOver = false } = opts;
    const jobId = newJobId();
    let claim: IdempotencyClaim | undefined;
    let fp = "";
    if (idempotencyKey !== undefined) {
      if (!IDEMPOTENCY_KEY.test(idempotencyKey)) {
        throw badRequest("Idempotency-Key must be 1-255 printable ASCII characters", [
          { path: "header.idempotency-key", message: "invalid" },
        ]);
      }
      // The body's fingerprint matters only to tell a retry from a different request under one key.
      fp = createHash("sha256").update(canonicalJson(req)).digest("hex");
      const record: IdempotencyRecord = { fp, job_id: jobId };
      claim = {
        key: this.keys.idempotency(tenant.id, createHash("sha256").update(idempotencyKey).digest("hex")),
        value: JSON.stringify(record),
        ttlMs: Math.round(this.config.queue.idempotency_ttl_hours * 3_600_000),
      };
    }

    const now = Date.now();
    const startWithin = startWithinMs(this.config, req.ttl_seconds);
    const queue = queueNameFor(tenant);
    const admission = this.admission(tenant, req, now);
    const deadline = now + startWithin;
    const payload = (degraded?: Degraded): JobPayload => ({
      ...this.payload(jobId, tenant, req, deadline, traceId, opts.cache, degraded),
      ...(opts.stream ? { stream: true as const } : {}),
    });
    // One round trip: one script admits the submission, writes its record, claims its
    // Idempotency-Key, parks its BullMQ job (until its start deadline) and lists it in the fair
    // queue, all or nothing. With BullMQ's telemetry on, BullMQ parks the job itself first (its
    // add opens the producer span and carries its context): a crash between the two leaves a
    // parked job without a record or a listing, which BullMQ releases at its start deadline and
    // the worker drops.
    const parked = payload();
    const park = this.producer.parkable(this.config, parked, now);
    if (!park) {
      try {
        await this.producer.enqueue(this.config, queue, parked, now);
      } catch (err) {
        this.log.error({ err: { message: (err as Error).message }, jobId }, "enqueue failed");
        throw redisUnavailable();
      }
    }
    const unpark = () =>
      park
        ? Promise.resolve()
        : this.producer
            .removeIfIdle(queue, jobId)
            .catch((err: Error) =>
              this.log.warn({ err: { message: err.message }, jobId }, "could not remove a parked job"),
            );
    const entry = fairEntryOf(this.config, parked, queue, tenant.weight);
    let created: CreateOutcome;
    try {
      // The record and the key's claim are one atomic step: a crash cannot leave a claimed key
      // without a record.
      created = await this.store.create(
        {
          id: jobId,
          tenantId: tenant.id,
          queue,
          model: req.model,
          priority: req.priority,
          createdAt: now,
          traceId,
          traceparent: activeTraceparent(),
          ...(req.metadata ? { metadata: req.metadata } : {}),
          ...(req.webhook ? { webhookUrl: req.webhook.url } : {}),
          ...(opts.sync ? { sync: true } : {}),
          ...(opts.stream ? { stream: true } : {}),
          ...(opts.batchKey ? { batchKey: opts.batchKey } : {}),
        },
        startWithin + this.retentionMs,
        claim,
        admission,
        undefined,
        {
          bullPrefix: this.config.queue.prefix,
          cost: entry.cost,
          tierWeight: entry.tierWeight,
          ...(park ? { park } : {}),
        },
      );
    } catch (err) {
      await unpark();
      throw err;
    }
    trace.getActiveSpan()?.setAttributes({ "switchyard.job.id": jobId, "switchyard.queue": queue });
    if (created.kind !== "created") await unpark();
    if (created.kind === "refused") throw overloaded(tenant, created);
    if (created.kind === "over_quota") throw quotaExceeded(created.quota, now);
    if (created.kind === "claimed") {
      const replayed = await this.replay(tenant, created.claimedBy, fp, req, traceId);
      if (replayed) return replayed;
      // The key's job record is gone: release the stale claim and take the key over, once.
      if (claim && !takeOver && (await this.store.releaseClaim(claim.key, created.claimedBy)))
        return this.submit(tenant, req, traceId, { ...opts, takeOver: true });
      throw conflict("a request with this Idempotency-Key is being processed right now; retry in a moment");
    }
    const degraded: Degraded | undefined =
      created.degraded && admission.degradeTo
        ? {
            from: req.model,
            to: admission.degradeTo.model,
            estimated_wait_seconds: (created.estimatedWaitMs ?? 0) / 1000,
            ...(admission.degradeTo.max_tokens_cap !== undefined
              ? { max_tokens_cap: admission.degradeTo.max_tokens_cap }
              : {}),
          }
        : undefined;
    if (!created.listed) {
      // Degraded: the script parked nothing, or BullMQ parked the job with the original route
      // (removed here). The job is parked with the degraded payload, then listed (the rare path:
      // only while admission degrades).
      try {
        if (!park) await this.producer.removeIfIdle(queue, jobId);
        await this.dispatch(tenant, queue, payload(degraded));
      } catch (err) {
        // Leave nothing half-written: no record without a queued job, no key pointing nowhere.
        this.log.error({ err: { message: (err as Error).message }, jobId }, "enqueue failed");
        await Promise.allSettled([
          this.store.remove(jobId),
          this.producer.removeIfIdle(queue, jobId),
          claim ? this.redis.del(claim.key) : Promise.resolve(),
        ]);
        throw redisUnavailable();
      }
    }
    // The answer is built from what was just written: no read-back round trip on the ingest path.
    const job: JobView = {
      id: jobId,
      object: "job",
      status: "queued",
      model: req.model,
      priority: req.priority,
      attempts: 0,
      created_at: now / 1000,
    };
    if (req.metadata) job.metadata = req.metadata;
    if (degraded) job.degraded = degraded;
    job.estimated_start_seconds = created.estimatedWaitMs === null ? null : created.estimatedWaitMs / 1000;
    return { job, replayed: false };
  }

  /** The bounds, quota and estimate a submission is admitted against (create-job.lua). */
  private admission(tenant: TenantConfig, req: CreateJobRequest, now: number): AdmissionCheck {
    const tierBounds = this.config.admission[tenant.tier];
    const own = tenant.admission;
    const quota = tenant.quota;
    const degrade = tierBounds?.degrade;
    const seconds = (s: number | undefined) => (s === undefined ? undefined : s * 1000);
    const nano = (usd: number | undefined) => (usd === undefined ? undefined : usd * 1e9);
    return {
      tier: tenant.tier,
      tenantId: tenant.id,
      priorityRank: PRIORITY_RANK[req.priority],
      tenantWeight: tenant.weight,
      tierMaxWaiting: tierBounds?.max_waiting,
      tierMaxWaitMs: seconds(tierBounds?.max_wait_seconds),
      tenantMaxWaiting: own?.max_waiting,
      tenantMaxWaitMs: seconds(own?.max_wait_seconds),
      degradeOverMs: seconds(degrade?.when_wait_over_seconds),
      quota: {
        requestsPerDay: quota?.requests_per_day,
        tokensPerDay: quota?.tokens_per_day,
        nanoUsdPerDay: nano(quota?.usd_per_day),
        nanoUsdPerMonth: nano(quota?.usd_per_month),
      },
      estimate: estimateSpend(this.config, this.prices, { ...req, task: req.task }),
      ...(degrade
        ? {
            degradedEstimate: estimateSpend(this.config, this.prices, degradedRequest(req, degrade)),
            degradeTo: { model: degrade.model, max_tokens_cap: degrade.max_tokens_cap },
          }
        : {}),
      day: dayPeriod(now),
      month: monthPeriod(now),
    };
  }

  /** Parks the BullMQ job, then lists it in the fair queue (whose pick needs it parked). */
  private async dispatch(tenant: TenantConfig, queue: string, payload: JobPayload) {
    await this.producer.enqueue(this.config, queue, payload);
    await this.fair.enqueue(fairEntryOf(this.config, payload, queue, tenant.weight));
  }

  private payload(
    jobId: string,
    tenant: TenantConfig,
    req: CreateJobRequest,
    deadline: number,
    traceId: string,
    cache?: CacheDirectives,
    degraded?: Degraded,
  ): JobPayload {
    const routed = degraded
      ? degradedRequest(req, { model: degraded.to, max_tokens_cap: degraded.max_tokens_cap })
      : req;
    const { messages, max_tokens, temperature, top_p, stop, user } = routed;
    // "cache": false in the body turns the cache off for the job, whatever the headers say.
    const directives = req.cache === false ? { read: false, write: false } : cache;
    return {
      v: 1,
      job_id: jobId,
      tenant_id: tenant.id,
      tier: tenant.tier,
      model: routed.model,
      request: { messages, max_tokens, temperature, top_p, stop, user },
      ...(degraded ? { degraded } : {}),
      ...(req.task !== undefined ? { task: req.task } : {}),
      priority: req.priority,
      start_deadline: deadline,
      trace_id: traceId,
      ...(directives && (!directives.read || !directives.write) ? { cache: directives } : {}),
    };
  }

  private async replay(
    tenant: TenantConfig,
    claimedBy: string,
    fp: string,
    req: CreateJobRequest,
    traceId: string,
  ): Promise<SubmitOutcome | undefined> {
    let prior: IdempotencyRecord;
    try {
      prior = idempotencyRecordSchema.parse(JSON.parse(claimedBy));
    } catch {
      throw new ApiError(500, "internal_error", "the stored Idempotency-Key record is unreadable");
    }
    const rec = await this.store.get(prior.job_id);
    // The claim and the record are written together, so a claim without a record is stale: its
    // job outlived its retention, or an older version crashed between the two. The caller takes
    // the key over, whatever body the stale claim was for.
    if (!rec || rec.tenantId !== tenant.id) return undefined;
    if (prior.fp !== fp) {
      throw new ApiError(
        409,
        "idempotency_error",
        "this Idempotency-Key was already used with a different request body; use a new key for a new request",
      );
    }
    if (rec.view.status === "queued" && !rec.cancelRequested) {
      // Covers a crash between writing the record and queueing: BullMQ ignores a second add of the same id.
      const deadline = rec.view.created_at * 1000 + startWithinMs(this.config, req.ttl_seconds);
      await this.dispatch(tenant, rec.queue, {
        ...this.payload(
          prior.job_id,
          tenant,
          req,
          Math.round(deadline),
          traceId,
          undefined,
          rec.view.degraded,
        ),
        // A streamed job stays streamed when a retry of its submission queues it again.
        ...(rec.streamed ? { stream: true as const } : {}),
      });
    }
    return { job: rec.view, replayed: true };
  }

  /** The tenant's job, or 404 (also for another tenant's job: ids must not leak). */
  async get(tenant: TenantConfig, jobId: string): Promise<JobView> {
    const rec = await this.store.get(jobId);
    if (!rec || rec.tenantId !== tenant.id) throw notFound(`no job ${jobId}`);
    return rec.view;
  }

  /** The tenant's job record (404 as for get): for what the view does not say. */
  async record(tenant: TenantConfig, jobId: string): Promise<JobRecord> {
    const rec = await this.store.get(jobId);
    if (!rec || rec.tenantId !== tenant.id) throw notFound(`no job ${jobId}`);
    return rec;
  }

  /** Waits up to `waitMs` for a final status, woken by pub/sub, never by polling. */
  async waitForTerminal(
    tenant: TenantConfig,
    jobId: string,
    waitMs: number,
    aborted: AbortSignal,
  ): Promise<JobView> {
    const first = await this.get(tenant, jobId);
    if (isTerminal(first.status) || waitMs <= 0) return first;
    await new Promise<void>((resolve) => {
      let stop = () => {};
      const timer = setTimeout(() => done(), waitMs);
      const done = () => {
        clearTimeout(timer);
        stop();
        aborted.removeEventListener("abort", done);
        resolve();
      };
      const sub = this.events.listen(jobId, (_id, status) => {
        if (isTerminal(status)) done();
      });
      stop = sub.stop;
      aborted.addEventListener("abort", done);
      // The job may have finished between the first read and the subscription: look once more
      // when Redis has confirmed it (the timer bounds the wait if that takes long).
      const look = () => this.store.get(jobId).then((r) => r && isTerminal(r.view.status) && done(), done);
      sub.ready.then(look, look);
    });
    return this.get(tenant, jobId);
  }

  /**
   * Calls `onView` with the job now and after every status change, until a final status, the
   * record's end, or `aborted`. Changes are heard over pub/sub; views go out in order, and a
   * repeated status (a message that raced the first read) is not sent twice.
   */
  async watch(
    tenant: TenantConfig,
    jobId: string,
    aborted: AbortSignal,
    onView: (job: JobView) => void,
  ): Promise<void> {
    await this.get(tenant, jobId);
    await new Promise<void>((resolve) => {
      let last = "";
      let chain: Promise<void> = Promise.resolve();
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        stop();
        aborted.removeEventListener("abort", done);
        resolve();
      };
      const refresh = () => {
        chain = chain.then(async () => {
          if (finished) return;
          const rec = await this.store.get(jobId).catch(() => undefined);
          if (!rec || rec.tenantId !== tenant.id) return done();
          if (rec.view.status !== last) {
            last = rec.view.status;
            onView(rec.view);
          }
          if (isTerminal(rec.view.status)) done();
        });
      };
      const sub = this.events.listen(jobId, () => refresh());
      const stop = sub.stop;
      aborted.addEventListener("abort", done);
      if (aborted.aborted) done();
      refresh();
      // Once subscribed, once more: a change between the first read and the subscription.
      sub.ready.then(refresh, refresh);
    });
  }

  /**
   * Cancels without waiting for the end: a queued job ends cancelled at once, a running one is
   * asked to stop (its worker ends it). For batches, whose lines are many.
   */
  async cancelSoon(jobId: string): Promise<void> {
    const rec = await this.store.get(jobId);
    if (!rec || isTerminal(rec.view.status)) return;
    await this.store.requestCancel(jobId);
    const removed = await this.producer.removeIfIdle(rec.queue, jobId);
    if (removed) {
      await this.fair.forget(jobId);
      await this.store.transition(
        jobId,
        "cancelled",
        { finished_at: Date.now(), error: { type: "cancelled", message: "cancelled with its batch" } },
        this.retentionMs,
      );
    } else {
      await this.redis.publish(this.keys.cancelChannel, jobId);
    }
  }

  /** Cancels a queued job at once; asks the worker holding a running job to abort it. */
  async cancel(
    tenant: TenantConfig,
    jobId: string,
    aborted: AbortSignal,
  ): Promise<{ job: JobView; final: boolean }> {
    const rec = await this.store.get(jobId);
    if (!rec || rec.tenantId !== tenant.id) throw notFound(`no job ${jobId}`);
    if (isTerminal(rec.view.status)) {
      throw new ApiError(409, "conflict_error", `job ${jobId} already ended as ${rec.view.status}`);
    }
    await this.store.requestCancel(jobId);
    const removed = await this.producer.removeIfIdle(rec.queue, jobId);
    if (removed) await this.fair.forget(jobId);
    const state = removed ? "removed" : await this.producer.queues.get(rec.queue)?.getJobState(jobId);
    if (removed || state === "unknown" || state === "completed" || state === "failed") {
      await this.store.transition(
        jobId,
        "cancelled",
        { finished_at: Date.now(), error: { type: "cancelled", message: "cancelled by the client" } },
        this.retentionMs,
      );
    } else {
      await this.redis.publish(this.keys.cancelChannel, jobId);
    }
    const view = await this.waitForTerminal(tenant, jobId, 10_000, aborted);
    return { job: view, final: isTerminal(view.status) };
  }
}
