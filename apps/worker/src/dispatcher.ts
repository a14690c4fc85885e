import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { QueueEvents, type Job, type Telemetry } from "bullmq";
import { backoffDelay, retentionMs, type JobPayload, type SwitchyardConfig } from "@switchyard/core";
import type { Logger } from "@switchyard/observability";
import {
  allJobQueues,
  BACKOFF_TYPE,
  type FairQueue,
  type JobStore,
  type QueueSpec,
  type Redis,
} from "@switchyard/queue";
import { SlotGate } from "./slot-gate";
import { CANCEL_REASON, SHUTDOWN_REASON, type JobRunner } from "./job-runner";
import { ManagedWorker } from "./managed-worker";
import { RetryLater } from "./retry";

/**
 * Consumes every job queue in one process. A slot is taken before a job is fetched, so no job
 * sits locked in this process waiting for a slot (another worker could run it). Which job takes
 * the slot is decided fleet-wide by the fair queue: its pick moves the next job in the fair order
 * into that job's BullMQ wait list, and this process fetches it from there.
 *
 * Each queue has one fetch loop. With a slot: pick, then fetch from the picked job's queue. When
 * nothing listed is due, it takes what BullMQ itself made ready in its own queue (a retry whose
 * backoff ended, a job handed back, one released at its start deadline); when there is nothing
 * either, the slot goes back and the loop blocks in Redis on the queue's marker (BZPOPMIN, no
 * polling; a listing wakes it) and runs what it gets even if that briefly exceeds the slot count
 * by one per queue.
 */
export class Dispatcher {
  private readonly workers = new Map<string, ManagedWorker>();
  private readonly events: QueueEvents[] = [];
  private readonly gate: SlotGate;
  private readonly loops: Promise<void>[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private stopping = false;
  /** A timer that wakes this process's blocked loops when the next listed job or ticket is due. */
  private alarm: { at: number; timer: NodeJS.Timeout } | undefined;
  readonly specs: QueueSpec[] = [];

  constructor(
    private config: SwitchyardConfig,
    private readonly connection: Redis,
    private readonly subscriber: Redis,
    private readonly cancelChannel: string,
    private readonly store: JobStore,
    private readonly runner: JobRunner,
    private readonly fair: FairQueue,
    private readonly log: Logger,
    /** BullMQ's OpenTelemetry integration when tracing is on: each run is a span of the job's trace. */
    private readonly telemetry?: Telemetry,
  ) {
    this.gate = new SlotGate(config.worker.concurrency);
  }

  async start(): Promise<void> {
    for (const spec of allJobQueues(this.config)) await this.startQueue(spec);
    await this.subscriber.subscribe(this.cancelChannel);
    this.subscriber.on("message", (channel: string, jobId: string) => {
      if (channel !== this.cancelChannel) return;
      for (const worker of this.workers.values())
        if (worker.cancelJob(jobId, CANCEL_REASON)) this.log.info({ jobId }, "cancelling running job");
    });
    this.log.info(
      { queues: this.specs.map((s) => s.name), concurrency: this.config.worker.concurrency },
      "worker ready",
    );
  }

  /**
   * Takes a reloaded config: the slot count, backoff and retention settings apply at once, and a
   * new dedicated queue gets its consumer. A queue the config no longer names is still consumed
   * until the process restarts (jobs may be left in it).
   */
  async configure(config: SwitchyardConfig): Promise<void> {
    this.config = config;
    this.gate.resize(config.worker.concurrency);
    for (const spec of allJobQueues(config))
      if (!this.workers.has(spec.name) && !this.stopping) {
        await this.startQueue(spec);
        this.log.info({ queue: spec.name }, "consuming a new queue");
      }
  }

  private async startQueue(spec: QueueSpec): Promise<void> {
    const { queue: q, worker: w } = this.config;
    const worker = new ManagedWorker(spec.name, (job, token, signal) => this.runner.run(job, token, signal), {
      connection: this.connection,
      prefix: q.prefix,
      concurrency: w.concurrency,
      lockDuration: w.lock_duration_ms,
      stalledInterval: w.stalled_interval_ms,
      maxStalledCount: 2,
      drainDelay: 2,
      ...(this.telemetry ? { telemetry: this.telemetry } : {}),
      settings: {
        // The runner decides every retry's timing and says so in RetryLater.
        backoffStrategy: (attemptsMade: number, type?: string, err?: Error) => {
          if (type !== BACKOFF_TYPE) return 0;
          if (err instanceof RetryLater) return err.delayMs;
          const { backoff_base_ms: baseMs, backoff_max_ms: maxMs } = this.config.queue;
          return backoffDelay(attemptsMade, { baseMs, maxMs });
        },
      },
    });
    worker.on("error", (err) => this.log.error({ err, queue: spec.name }, "queue worker error"));
    worker.on("stalled", (jobId) =>
      this.log.warn({ jobId, queue: spec.name }, "job stalled (its worker died?); requeued"),
    );
    await worker.startManaged();
    this.workers.set(spec.name, worker);
    this.specs.push(spec);
    this.watchFailures(spec.name);
    this.loops.push(this.fetchLoop(spec));
  }

  /**
   * A job BullMQ fails on its own (stalled too often) never passes through our runner;
   * this makes sure its record still reaches a final status.
   */
  private watchFailures(queueName: string): void {
    const qe = new QueueEvents(queueName, {
      connection: this.connection.duplicate(),
      prefix: this.config.queue.prefix,
    });
    qe.on("failed", ({ jobId, failedReason }) => {
      this.store
        .transition(
          jobId,
          "failed",
          { finished_at: Date.now(), error: { type: "worker_failure", message: failedReason } },
          retentionMs(this.config),
        )
        .catch((err: Error) => this.log.error({ err, jobId }, "could not mark failed job"));
    });
    qe.on("error", (err) => this.log.error({ err, queue: queueName }, "queue events error"));
    this.events.push(qe);
  }

  private async fetchLoop(spec: QueueSpec): Promise<void> {
    const own = this.workers.get(spec.name);
    if (!own) return;
    while (!this.stopping) {
      if (!(await this.gate.acquire())) break;
      let fetched: { worker: ManagedWorker; job: Job<JobPayload> } | undefined;
      try {
        const pick = await this.fair.pick();
        if (pick.picked) {
          const worker = this.workers.get(pick.queue);
          const job = await worker?.getNextJob(this.token(), { block: false });
          // Another process may have fetched it first: pick again.
          if (!worker || !job) {
            this.gate.release();
            continue;
          }
          fetched = { worker, job };
        } else {
          this.wakeAt(pick.nextAt, pick.now);
          let job = await own.getNextJob(this.token(), { block: false });
          if (!job) {
            this.gate.release();
            if (this.stopping) break;
            job = await own.getNextJob(this.token(), { block: true });
            if (!job) continue;
            if (this.stopping) {
              // Woken by a job after shutdown began (possibly one we just handed back): return it.
              await job.moveToWait(job.token);
              break;
            }
            this.gate.force();
          }
          fetched = { worker: own, job };
        }
      } catch (err) {
        this.gate.release();
        if (this.stopping) break;
        this.log.error({ err, queue: spec.name }, "fetching a job failed; retrying in 1 s");
        await sleep(1_000);
        continue;
      }
      this.track(fetched.worker, fetched.job);
    }
  }

  /**
   * BullMQ's blocked fetch knows nothing of the fair queue's due times (a ticket, a job listed
   * for later): at the earliest one this process has seen, it pokes each queue's marker, as
   * BullMQ does when a job arrives, so a blocked loop wakes and picks. `nextAt` and `now` are on
   * Redis's clock; only their difference is used here.
   */
  private wakeAt(nextAt: number, now: number): void {
    if (nextAt <= 0 || this.stopping) return;
    const delay = Math.max(0, nextAt - now);
    const at = Date.now() + delay;
    if (this.alarm && this.alarm.at <= at) return;
    if (this.alarm) clearTimeout(this.alarm.timer);
    const timer = setTimeout(() => {
      this.alarm = undefined;
      this.wakeQueues();
    }, delay + 2);
    timer.unref();
    this.alarm = { at, timer };
  }

  /** Pokes every queue's marker, as BullMQ does when a job arrives: blocked loops (fleet-wide) pick. */
  wakeQueues(): void {
    const prefix = this.config.queue.prefix;
    for (const spec of this.specs)
      this.connection
        .zadd(`${prefix}:${spec.name}:marker`, 0, "0")
        .catch((err: Error) => this.log.warn({ err, queue: spec.name }, "could not wake the queue"));
  }

  private token(): string {
    return randomUUID();
  }

  private track(worker: ManagedWorker, job: Job<JobPayload>): void {
    const token = job.token ?? "";
    const p = worker
      .processJob(job, token, () => false)
      .then(() => undefined)
      .catch((err: Error) => this.log.error({ err, jobId: job.id }, "processing a job failed unexpectedly"))
      .finally(() => {
        this.gate.release();
        this.inFlight.delete(p);
      });
    this.inFlight.add(p);
  }

  get activeJobs(): number {
    return this.inFlight.size;
  }

  /**
   * Stops fetching, lets running jobs finish within the grace period, then hands the rest
   * back to the queue (no attempt spent) so another worker takes them over.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.gate.close();
    if (this.alarm) clearTimeout(this.alarm.timer);
    this.log.info(
      { inFlight: this.inFlight.size, graceMs },
      "stopping: no new jobs; waiting for running ones",
    );
    const timer = sleep(graceMs).then(() => "timeout" as const);
    const drained = Promise.all([...this.inFlight]).then(() => "drained" as const);
    if ((await Promise.race([drained, timer])) === "timeout") {
      this.log.warn(
        { inFlight: this.inFlight.size },
        "grace period over; returning running jobs to the queue",
      );
      for (const worker of this.workers.values()) worker.cancelAllJobs(SHUTDOWN_REASON);
      await Promise.race([Promise.all([...this.inFlight]), sleep(5_000)]);
    }
    await Promise.all([...this.workers.values()].map((w) => w.close()));
    await Promise.allSettled(this.loops);
    await Promise.all(this.events.map((e) => e.close()));
  }
}
