import { DelayedError, UnrecoverableError, type Job } from "bullmq";
import {
  jobPayloadSchema,
  resolveRoute,
  type SecretRedactor,
  type Attempt,
  type JobError,
  type JobPayload,
  type JobResult,
  type PriceBook,
  type Usage,
} from "@switchyard/core";
import { lazyChild, trace, type Logger } from "@switchyard/observability";
import {
  fairEntryOf,
  type FairQueue,
  type FinishFold,
  type FoldedStep,
  type JobStore,
  type JobStreams,
  type Spent,
  type StreamEnd,
  type StreamFailure,
  type TransitionFields,
  type TransitionOutcome,
} from "@switchyard/queue";
import type { RouteOutcome } from "./route-executor";
import type { Runtimes, WorkerRuntime } from "./runtime";
import type { StreamRelay } from "./keyed-call";
import type { WorkerMetrics } from "./metrics";
import { RecentIds } from "./recent-ids";
import { RetryLater } from "./retry";

/**
 * How long past its appointment a job in a waiting room stays parked in BullMQ: should its
 * ticket be lost, BullMQ releases it then and it simply asks the key pool again.
 */
const ROOM_PARK_MS = 10 * 60_000;

/** A job found stalled more often than this is failed when it next runs (BullMQ's maxStalledCount was 2). */
export const MAX_STALLS = 2;
/** How long a cancel heard for a job not running here is kept for its run (JobRunner.cancelHeard). */
const HEARD_CANCEL_MS = 10_000;
const HEARD_CANCELS_MAX = 10_000;

/** Abort reasons the runner tells apart: a client's cancel ends the job, a shutdown requeues it. */
export const CANCEL_REASON = "cancelled";
export const SHUTDOWN_REASON = "shutdown";

/** What BullMQ keeps as the job's return value (Bull Board shows it); the result lives in the record. */
export interface RunSummary {
  status: "succeeded" | "cancelled" | "expired" | "skipped" | "handed_back";
  provider?: string;
  model?: string;
  usage?: Usage;
}

/** A key's settlement the run still owes (see runOn): whoever makes or hands it on takes it. */
interface Owed {
  step: FoldedStep | undefined;
}

/** Upstream attempts in the history: skipped links are not attempts. */
const attemptCount = (log: Attempt[]): number => log.filter((a) => a.outcome !== "skipped").length;

/**
 * The per-job lifecycle: validate the payload, honour cancel and start deadline, mark running,
 * resolve the route, let the RouteExecutor try its links, and store what came of it: a result,
 * a retry later (BullMQ's delayed set, no slot held), a hand-back, or a final failure.
 */
export class JobRunner {
  /** Relays of the streamed jobs running in this process. */
  private readonly relays = new Map<string, StreamRelay>();
  /** Jobs whose record the fair queue's pick marked running, with what the mark answered. */
  private readonly marked = new WeakMap<Job<JobPayload>, TransitionOutcome>();
  /** Cancels heard for jobs that were not running here (see cancelHeard). */
  private readonly heardCancels = new RecentIds(HEARD_CANCEL_MS, HEARD_CANCELS_MAX);

  constructor(
    private readonly runtimes: Runtimes,
    private readonly store: JobStore,
    private readonly metrics: WorkerMetrics,
    private readonly log: Logger,
    private readonly fair: FairQueue,
    private readonly streams: JobStreams,
    /** With it, a succeeded job's final write goes with BullMQ's completion, in one call. */
    private readonly fold?: FinishFold,
  ) {}

  /**
   * A job's processing (the run and BullMQ's completion or failure) has ended: a final write
   * still waiting for a completion that never came runs now (FinishFold.runPending).
   */
  async afterProcessing(bullJobId: string | undefined): Promise<void> {
    if (bullJobId !== undefined) await this.fold?.runPending(bullJobId);
  }

  /**
   * The pick that started `job` marked its record running already (its first start, within its
   * start deadline: fair-queue.lua, "Running mark"): its run uses that answer instead of marking
   * the record itself.
   */
  markedRunning(job: Job<JobPayload>, outcome: TransitionOutcome): void {
    this.marked.set(job, outcome);
  }

  /**
   * A cancel was asked for a job that is not running in this process. A job marked running by
   * its pick is between the pick and its run for a moment: its mark read the cancel flag before
   * the request, and BullMQ had no run to abort when the message came. Its run looks here. Kept
   * HEARD_CANCEL_MS, at most HEARD_CANCELS_MAX (cancels are heard by every worker process).
   */
  cancelHeard(jobId: string): void {
    this.heardCancels.add(jobId);
  }

  /** Runs a job on the config version current when it starts, to its end. */
  async run(
    job: Job<JobPayload>,
    token: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<RunSummary> {
    const rt = this.runtimes.acquire();
    try {
      return await this.runOn(rt, job, token, signal);
    } finally {
      this.runtimes.release(rt);
    }
  }

  private async runOn(
    rt: WorkerRuntime,
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
        await this.store.transition(
          id,
          "failed",
          {
            finished_at: Date.now(),
            error: { type: "invalid_payload", message: "the queued job is malformed" },
          },
          rt.retentionMs,
        );
      throw new UnrecoverableError("payload does not match the queue contract");
    }
    const p = parsed.data;
    // BullMQ's span of this run (tracing on): which job, whose, which try.
    trace.getActiveSpan()?.setAttributes({
      "switchyard.job.id": p.job_id,
      "switchyard.tenant": p.tenant_id,
      "switchyard.tier": p.tier,
      "switchyard.model": p.model,
      "switchyard.attempt": job.attemptsMade + 1,
    });
    const log = lazyChild(this.log, {
      jobId: p.job_id,
      tenant: p.tenant_id,
      traceId: p.trace_id,
      attempt: job.attemptsMade + 1,
    });
    const now = Date.now();
    const marked = this.marked.get(job);
    this.marked.delete(job);

    if (job.stalledCounter > MAX_STALLS) {
      // Its worker died (or stopped answering) that often while running it: the job itself is
      // what kills workers. BullMQ was told never to fail it for stalling; it ends here, once.
      const message = `the job stalled ${job.stalledCounter} times (its worker died or hung while running it)`;
      await this.finish(rt, p, "failed", { error: { type: "worker_failure", message } });
      this.metrics.jobs.inc({ queue: job.queueName, outcome: "failed" });
      log.warn({ stalls: job.stalledCounter }, "job failed: it stalled too often");
      throw new UnrecoverableError(message);
    }

    // A job the pick marked running was within its deadline on Redis's clock when it started.
    if (!marked && job.attemptsMade === 0 && now > p.start_deadline) {
      await this.finish(rt, p, "expired", {
        error: { type: "expired", message: "the job was not started before its deadline" },
      });
      this.metrics.jobs.inc({ queue: job.queueName, outcome: "expired" });
      return { status: "expired" };
    }

    const started =
      marked ?? (await this.store.transition(p.job_id, "running", { started_at: now }, rt.runningTtlMs));
    if (!started.exists) {
      log.warn("job record is gone (retention expired); dropping the job");
      return { status: "skipped" };
    }
    if (!started.applied) return { status: "skipped" }; // already final: a crash after the final write
    if (started.cancelRequested || (marked && this.heardCancels.take(p.job_id)))
      return this.cancelled(rt, p, job);
    const waited = Math.max(0, now - job.timestamp) / 1000;
    this.metrics.queueWait.observe({ queue: job.queueName }, waited);
    if (job.attemptsStarted <= 1) {
      const who = { tenant: p.tenant_id, tier: p.tier };
      this.metrics.tenantStarts.inc(who);
      this.metrics.tenantWait.observe(who, waited);
    }

    const route = resolveRoute(rt.config, p.model, { messages: p.request.messages, task: p.task });
    if (!route) {
      await this.finish(rt, p, "failed", {
        error: { type: "invalid_model", message: `model '${p.model}' is no longer configured` },
      });
      throw new UnrecoverableError(`model ${p.model} is not configured`);
    }
    const history = started.attemptLog;
    const plan = rt.cacheStep.plan(p, route);
    let lead = false;
    let vector: Float32Array | undefined;
    if (plan) {
      const d = await rt.cacheStep.before(p, plan, route, job.queueName, job.timestamp, log);
      switch (d.kind) {
        case "hit":
          await this.finish(
            rt,
            p,
            "succeeded",
            {
              attempts: attemptCount(history),
              attempt_log: history,
              result: d.result,
              usage: { input_tokens: 0, output_tokens: 0 },
              error: null,
            },
            undefined,
            job.id,
          );
          this.metrics.jobs.inc({ queue: job.queueName, outcome: "succeeded" });
          if (d.saved?.cost_usd) this.metrics.cacheCostSaved.inc({ route: d.route }, d.saved.cost_usd);
          return { status: "succeeded", provider: d.result.provider, model: d.result.model };
        case "negative":
          return this.fail(rt, p, job, d.error, history, log);
        case "follow":
          if (!token) throw new RetryLater("waiting for an identical job", d.waitMs);
          return this.handBack(rt, p, job, token, history, d.waitMs, undefined, d.register);
        case "proceed":
          lead = d.lead;
          vector = d.vector;
      }
    }
    // Started more often than charged: it was handed back before (e.g. to wait for a key).
    const returning = job.attemptsStarted > job.attemptsMade + 1;
    // A stream has entries only once a piece went out: an earlier run of this job (on a worker
    // that died mid-stream) already sent part of the answer, and a new call cannot continue it.
    if (p.stream && (await this.streams.exists(p.job_id)))
      return this.fail(
        rt,
        p,
        job,
        {
          type: "stream_interrupted",
          message: "the worker streaming this job stopped after the answer had begun",
        },
        history,
        log,
      );
    const relay = this.relayFor(p, log);
    const routed = await rt.executor.execute(p, route, history, signal, log, returning, relay);
    // The key's settlement of a call that answered is owed until the final write takes it (or,
    // should anything before that throw, made on its own below).
    const owed: Owed = { step: routed.kind === "succeeded" ? routed.settle : undefined };
    try {
      const outcome = priced(routed, rt.prices);
      if (plan) await rt.cacheStep.after(p, plan, route, lead, outcome, log, vector);
      return await this.conclude(rt, p, job, token, signal, route.name, outcome, history, log, owed);
    } finally {
      if (owed.step) void owed.step.run();
    }
  }

  private async conclude(
    rt: WorkerRuntime,
    p: JobPayload,
    job: Job<JobPayload>,
    token: string | undefined,
    signal: AbortSignal | undefined,
    routeName: string,
    outcome: RouteOutcome,
    history: Attempt[],
    log: Logger,
    owed: Owed,
  ): Promise<RunSummary> {
    const attempts = attemptCount(history);
    switch (outcome.kind) {
      case "succeeded": {
        const { usage, rateLimit: _hint, ...view } = outcome.result;
        const result: JobResult = routeName === p.model ? view : { ...view, route: routeName };
        if (p.degraded) result.degraded = p.degraded;
        await this.finish(
          rt,
          p,
          "succeeded",
          { attempts, attempt_log: history, result, usage, error: null },
          { usage, label: `${view.provider}/${view.model}` },
          job.id,
          owed,
        );
        this.metrics.jobs.inc({ queue: job.queueName, outcome: "succeeded" });
        this.metrics.spent(p.tenant_id, view.provider, view.model, usage);
        log.debug({ provider: view.provider, attempts }, "job succeeded");
        return { status: "succeeded", provider: view.provider, model: view.model, usage };
      }
      case "aborted":
        if (signal?.reason === SHUTDOWN_REASON && token) return this.handBack(rt, p, job, token, history, 0);
        return this.cancelled(rt, p, job, history);
      case "busy":
        // The provider's bulkhead is full in this process, or no key has room: free the slot and
        // come back when the limiter says capacity will be there.
        this.metrics.jobs.inc({ queue: job.queueName, outcome: `waiting_${outcome.reason}` });
        if (token) return this.handBack(rt, p, job, token, history, outcome.retryInMs, outcome.resource);
        throw new RetryLater("bulkhead full", outcome.retryInMs);
      case "retry": {
        const error = errorOf(outcome.error, rt.redactor);
        // Only attempts BullMQ charged count toward its cap (a hand-back is not charged).
        if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1))
          return this.fail(rt, p, job, error, history, log);
        await this.store.transition(
          p.job_id,
          "queued",
          { attempts, error, attempt_log: history },
          rt.runningTtlMs,
        );
        this.metrics.jobs.inc({ queue: job.queueName, outcome: "retried" });
        log.info(
          { kind: error.type, status: error.status, provider: error.provider, delayMs: outcome.delayMs },
          "attempt failed; retrying later",
        );
        throw new RetryLater(error.message, outcome.delayMs);
      }
      case "failed":
        return this.fail(rt, p, job, errorOf(outcome.error, rt.redactor), history, log);
    }
  }

  private async fail(
    rt: WorkerRuntime,
    p: JobPayload,
    job: Job<JobPayload>,
    error: JobError,
    history: Attempt[],
    log: Logger,
  ): Promise<never> {
    const attempts = attemptCount(history);
    await this.finish(rt, p, "failed", { attempts, error, attempt_log: history });
    this.metrics.jobs.inc({ queue: job.queueName, outcome: "failed" });
    log.info({ kind: error.type, status: error.status, attempts }, "job failed");
    throw new UnrecoverableError(error.message);
  }

  /**
   * Gives the job back untouched (no attempt charged) for this or another worker to run later.
   * A job waiting for a resource's capacity waits in that resource's fair waiting room: it stays
   * parked in BullMQ (for at most ROOM_PARK_MS past its appointment, a safety net) and a ticket
   * at its appointment frees the room's fairest job.
   */
  private async handBack(
    rt: WorkerRuntime,
    p: JobPayload,
    job: Job<JobPayload>,
    token: string,
    history: Attempt[],
    delayMs: number,
    resource?: string,
    parked?: () => Promise<void>,
  ): Promise<never> {
    await this.store.transition(p.job_id, "queued", { attempt_log: history }, rt.runningTtlMs);
    if (!resource) {
      await job.moveToDelayed(Date.now() + delayMs, token);
      await parked?.();
      throw new DelayedError("job returned to the queue");
    }
    await job.moveToDelayed(Date.now() + delayMs + ROOM_PARK_MS, token);
    const entry = fairEntryOf(rt.config, p, job.queueName, rt.tenants.get(p.tenant_id)?.weight);
    await this.fair.wait(entry, resource, delayMs);
    throw new DelayedError("job waits for capacity");
  }

  private async cancelled(
    rt: WorkerRuntime,
    p: JobPayload,
    job: Job<JobPayload>,
    history?: Attempt[],
  ): Promise<RunSummary> {
    await this.finish(rt, p, "cancelled", {
      error: { type: "cancelled", message: "cancelled by the client" },
      ...(history ? { attempts: attemptCount(history), attempt_log: history } : {}),
    });
    this.metrics.jobs.inc({ queue: job.queueName, outcome: "cancelled" });
    return { status: "cancelled" };
  }

  /**
   * The final write; it settles the job's reserved usage with what it `spent` (nothing when
   * absent). A streamed job's stream gets its last entry first: the end (after the whole text
   * when nothing was relayed, as for a cache hit), or the error. With `deferFor` (a succeeded
   * job's BullMQ id) and a fold, the write waits for BullMQ's completion of that job and goes
   * in the same script call (FinishFold); afterProcessing runs it if BullMQ never comes. The
   * key's settlement `owed` goes first: in that call, or on its own right before the write.
   */
  private async finish(
    rt: WorkerRuntime,
    p: JobPayload,
    status: "succeeded" | "failed" | "cancelled" | "expired",
    fields: TransitionFields,
    spent?: Spent,
    deferFor?: string,
    owed?: Owed,
  ): Promise<void> {
    if (p.stream)
      await this.endStream(p, status, fields).catch((err: Error) =>
        this.log.warn({ jobId: p.job_id, err: { message: err.message } }, "ending a job's stream failed"),
      );
    const call = this.store.transitionCall(
      p.job_id,
      status,
      { finished_at: Date.now(), ...fields },
      rt.retentionMs,
      spent,
    );
    // Taken only now: should anything above throw, the run makes the settlement (runOn).
    const step = owed?.step;
    if (owed) owed.step = undefined;
    if (this.fold && deferFor !== undefined) this.fold.defer(deferFor, call, step);
    else {
      void step?.run(); // not awaited: sent first (the pool and the store share a connection)
      await this.store.runTransition(call.keys, call.args);
    }
  }

  private async endStream(
    p: JobPayload,
    status: "succeeded" | "failed" | "cancelled" | "expired",
    fields: TransitionFields,
  ): Promise<void> {
    const relayed = this.relays.get(p.job_id)?.committed() ?? false;
    this.relays.delete(p.job_id);
    const r = fields.result;
    if (status === "succeeded" && r) {
      if (!relayed && r.output_text) await this.streams.append(p.job_id, "delta", r.output_text);
      const end: StreamEnd = {
        finish_reason: r.finish_reason,
        provider: r.provider,
        model: r.model,
        usage: fields.usage ?? { input_tokens: 0, output_tokens: 0 },
      };
      await this.streams.append(p.job_id, "end", JSON.stringify(end));
      return;
    }
    const e = fields.error ?? { type: status, message: `the job ended ${status}` };
    const failure: StreamFailure = { status, type: e.type, message: e.message };
    await this.streams.append(p.job_id, "error", JSON.stringify(failure));
  }

  /** A streamed job's relay: pieces go to its Redis stream in order, as they come. */
  private relayFor(p: JobPayload, log: Logger): StreamRelay | undefined {
    if (!p.stream) return undefined;
    let sent = false;
    const relay: StreamRelay = {
      onDelta: (text) => {
        sent = true;
        this.streams
          .append(p.job_id, "delta", text)
          .catch((err: Error) =>
            log.warn({ err: { message: err.message } }, "relaying a piece of a stream failed"),
          );
      },
      committed: () => sent,
    };
    this.relays.set(p.job_id, relay);
    return relay;
  }
}

/** A succeeded outcome's usage with its cost (when the model's price is known). */
function priced(outcome: RouteOutcome, prices: PriceBook): RouteOutcome {
  if (outcome.kind !== "succeeded") return outcome;
  const { provider, model, usage } = outcome.result;
  const cost = prices.cost(provider, model, usage);
  return cost === undefined
    ? outcome
    : { ...outcome, result: { ...outcome.result, usage: { ...usage, cost_usd: cost } } };
}

function errorOf(
  e: {
    kind: string;
    message: string;
    provider: string;
    model: string;
    status?: number;
  },
  redactor: SecretRedactor,
): JobError {
  return {
    type: e.kind,
    // Stored, shown to the tenant and sent in webhooks: never a secret of ours.
    message: redactor.redact(e.message),
    provider: e.provider,
    model: e.model,
    ...(e.status !== undefined ? { status: e.status } : {}),
  };
}
