import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { UnrecoverableError, type Job, type Telemetry } from "bullmq";
import { backoffDelay, retentionMs, type JobPayload, type SwitchyardConfig } from "@switchyard/core";
import type { Logger } from "@switchyard/observability";
import {
  allJobQueues,
  BACKOFF_TYPE,
  directQueues,
  LISTED_MARKER,
  type FairQueue,
  type JobStore,
  type QueueSpec,
  type Redis,
} from "@switchyard/queue";
import { SlotGate } from "./slot-gate";
import { runningTtlMs } from "./runtime";
import { CANCEL_REASON, SHUTDOWN_REASON, type JobRunner } from "./job-runner";
import { ManagedWorker } from "./managed-worker";
import { RetryLater } from "./retry";

/** Pickers per process: each starts jobs one pick after another (a pick, then its fetches). */
const PICKERS = 16;
/** Jobs one pick starts at most (one per free slot): one script call for several starts at high rates. */
const PICK_BATCH = 8;

/**
 * Loops waiting for work; each wake-up lets one of them go (a picker that finds work wakes the
 * next). A wake-up that finds none asleep (every picker busy fetching or waiting for a slot) is
 * kept, up to `cap`, for the next one that would sleep: a picker sleeps once a pick leaves
 * nothing listed, and a listing made while it fetched must still get a pick.
 */
export class Sleepers {
  private readonly waiting: (() => void)[] = [];
  private kept = 0;
  private closed = false;

  constructor(private readonly cap: number) {}

  wait(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.kept > 0) {
      this.kept--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  wakeOne(): void {
    const next = this.waiting.shift();
    if (next) next();
    else if (this.kept < this.cap) this.kept++;
  }

  wakeAll(): void {
    this.kept = 0;
    for (const w of this.waiting.splice(0)) w();
  }

  /**
   * Wakes every sleeper, and every later wait returns at once: a loop that was between a check
   * of its stop flag and its sleep when the process began to stop (a slow pick) does not sleep.
   */
  close(): void {
    this.closed = true;
    this.wakeAll();
  }
}

/**
 * Consumes every job queue in one process. A slot is taken before a job is fetched, so no job
 * sits locked in this process waiting for a slot (another worker could run it). Which job takes
 * the slot is decided fleet-wide by the fair queue: its pick moves the next job in the fair order
 * into that job's BullMQ wait list, and this process fetches it from there.
 *
 * PICKERS loops pick and fetch, each with a slot, as long as the fair queue has jobs; with none
 * listed they sleep in this process. Each queue also has one blocker loop that waits in Redis on
 * the queue's marker (BZPOPMIN, no polling): a listing's wake-up (LISTED_MARKER) wakes a picker,
 * and what BullMQ itself makes ready (retries whose backoff ended, jobs handed back, a job
 * released at its start deadline) the blocker fetches.
 */
export class Dispatcher {
  private readonly workers = new Map<string, ManagedWorker>();
  /** The queues this process consumes, as a direct start names them (set when one starts). */
  private serves = directQueues([]);
  /** A running record's TTL on the current config, for the running marks of direct starts. */
  private runningTtlMs: number;
  private readonly gate: SlotGate;
  private readonly loops: Promise<void>[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  /** Pickers asleep until something may be listed. */
  private readonly idle = new Sleepers(PICKERS);
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
    this.runningTtlMs = runningTtlMs(config);
  }

  async start(): Promise<void> {
    for (const spec of allJobQueues(this.config)) await this.startQueue(spec);
    for (let i = 0; i < PICKERS; i++) this.loops.push(this.pickLoop());
    await this.subscriber.subscribe(this.cancelChannel);
    this.subscriber.on("message", (channel: string, jobId: string) => {
      if (channel !== this.cancelChannel) return;
      let running = false;
      for (const worker of this.workers.values())
        if (worker.cancelJob(jobId, CANCEL_REASON)) {
          running = true;
          this.log.info({ jobId }, "cancelling running job");
        }
      // A job a pick of this process just started and marked running may not have reached its
      // runner yet: the runner looks for the cancel when it does.
      if (!running) this.runner.cancelHeard(jobId);
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
    this.runningTtlMs = runningTtlMs(config);
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
      // BullMQ never fails a stalled job itself (it would do so in a script whose "failed" event
      // only a QueueEvents reader of every event sees): the runner fails a job that stalled more
      // than MAX_STALLS times when it next runs (job-runner.ts).
      maxStalledCount: 1_000_000,
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
    this.serves = directQueues(this.workers.keys());
    this.specs.push(spec);
    this.watchFailures(worker);
    this.loops.push(this.blockLoop(spec));
  }

  /**
   * A job that failed in BullMQ without the runner writing its end (an exception out of the runner,
   * e.g. Redis gone mid-run, with no retry left) still gets a final record. BullMQ says so on the
   * worker that ran it: no stream of every queue event has to be read for it.
   */
  private watchFailures(worker: ManagedWorker): void {
    worker.on("failed", (job, err) => {
      if (!job) return;
      const final = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (!final) return;
      const jobId = job.id ?? "";
      this.store
        .transition(
          jobId,
          "failed",
          { finished_at: Date.now(), error: { type: "worker_failure", message: err.message } },
          retentionMs(this.config),
        )
        .catch((e: Error) => this.log.error({ err: e, jobId }, "could not mark failed job"));
    });
  }

  /**
   * A picker: takes a slot (and up to PICK_BATCH - 1 more that are free), asks the fair queue for
   * the fleet's next jobs, as many as it holds slots, which the pick moves to active and locks for
   * this process (fair-queue.lua, "Direct starts"; a job the pick put in a wait list instead, as
   * a paused queue's, is fetched from there). When the pick leaves nothing listed it sleeps until
   * something may be (a blocker saw a listing, an alarm rang at the next due time), without a
   * further pick that would find nothing. A pick that found jobs while others were listed wakes
   * another sleeping picker first, so a burst of listings gets as many pickers as it needs at once
   * (and a lone listing wakes one picker, not two).
   */
  private async pickLoop(): Promise<void> {
    while (!this.stopping) {
      if (!(await this.gate.acquire())) break;
      let slots = 1 + this.gate.tryAcquire(PICK_BATCH - 1);
      try {
        const token = this.token();
        const pick = await this.fair.pickMany(slots, undefined, {
          queues: this.serves,
          lockMs: this.config.worker.lock_duration_ms,
          token,
          runningTtlMs: this.runningTtlMs,
        });
        // Slots the pick found no job for go back at once.
        for (; slots > pick.starts.length; slots--) this.gate.release();
        if (pick.starts.length === 0) {
          this.wakeAt(pick.nextAt, pick.now);
          await this.idle.wait();
          continue;
        }
        // More listed: another picker goes too (a burst gets as many as it needs).
        if (pick.more) this.idle.wakeOne();
        const fetches = await Promise.allSettled(
          pick.starts.map(async (s) => {
            const worker = this.workers.get(s.queue);
            // Started directly (moved to active and locked for this process), else fetched.
            const job = s.job
              ? await worker?.adopt(s.job.hash, s.jobId, s.job.token)
              : await worker?.getNextJob(this.token(), { block: false });
            // Its record was marked running by the pick: the runner does not mark it again.
            if (job && s.job?.running) this.runner.markedRunning(job, s.job.running);
            return worker && job ? { worker, job } : undefined;
          }),
        );
        let failure: unknown;
        for (const f of fetches) {
          slots--;
          if (f.status === "fulfilled" && f.value) this.track(f.value.worker, f.value.job);
          else {
            // Another process may have fetched it first: the slot goes back, and picks go on.
            this.gate.release();
            if (f.status === "rejected") failure = f.reason;
          }
        }
        if (failure !== undefined) throw failure;
        if (!pick.more) {
          this.wakeAt(pick.nextAt, pick.now);
          await this.idle.wait();
        }
      } catch (err) {
        for (; slots > 0; slots--) this.gate.release();
        if (this.stopping) break;
        this.log.error({ err }, "picking a job failed; retrying in 1 s");
        await sleep(1_000);
      }
    }
  }

  /**
   * A queue's blocker: waits in Redis on the queue's marker (BZPOPMIN, no polling). A listing's
   * wake-up (LISTED_MARKER) wakes a sleeping picker and nothing else. What BullMQ itself made
   * ready there (a retry whose backoff ended, a job handed back, one released at its start
   * deadline; BullMQ also marks "look now" after every fetch of its own) the blocker fetches,
   * once a cheap check says a fetch would find a job, taking a slot like any picker, and fetches
   * again while it finds jobs, as BullMQ's own loop does. The slot
   * is taken before the fetch, never after it: a blocker that took a job a picker had just moved
   * to the wait list holds the slot that picker then gives back, so a process never runs more
   * than `worker.concurrency` jobs.
   */
  private async blockLoop(spec: QueueSpec): Promise<void> {
    const own = this.workers.get(spec.name);
    if (!own) return;
    let ready = false;
    while (!this.stopping) {
      let slot = false;
      try {
        if (!ready) {
          const seen = await own.waitForMarker();
          if (seen === "listed") this.idle.wakeOne();
          if (seen !== "ready") continue;
          // Often BullMQ's "look now" after a fetch of its own: a fetch only if it would find a job.
          if (!(await own.hasWork(this.connection))) continue;
          ready = true;
        }
        if (!(await this.gate.acquire())) break;
        slot = true;
        const job = await own.getNextJob(this.token(), { block: false });
        if (!job) {
          this.gate.release();
          ready = false;
          continue;
        }
        slot = false;
        if (this.stopping) {
          // Fetched as shutdown began: hand it back for another worker.
          this.gate.release();
          await job.moveToWait(job.token);
          break;
        }
        this.track(own, job);
      } catch (err) {
        if (slot) this.gate.release();
        ready = false;
        if (this.stopping) break;
        this.log.error({ err, queue: spec.name }, "fetching a job failed; retrying in 1 s");
        await sleep(1_000);
      }
    }
  }

  /**
   * The fair queue's due times (a ticket, a job listed for later) are known to no blocked fetch:
   * at the earliest one this process has seen, its sleeping pickers wake and pick. `nextAt` and
   * `now` are on Redis's clock; only their difference is used here.
   */
  private wakeAt(nextAt: number, now: number): void {
    if (nextAt <= 0 || this.stopping) return;
    const delay = Math.max(0, nextAt - now);
    const at = Date.now() + delay;
    if (this.alarm && this.alarm.at <= at) return;
    if (this.alarm) clearTimeout(this.alarm.timer);
    const timer = setTimeout(() => {
      this.alarm = undefined;
      this.idle.wakeOne();
    }, delay + 2);
    timer.unref();
    this.alarm = { at, timer };
  }

  /** Pokes every queue's marker as a listing does: blocked loops (fleet-wide) have a picker pick. */
  wakeQueues(): void {
    const prefix = this.config.queue.prefix;
    for (const spec of this.specs)
      this.connection
        .zadd(`${prefix}:${spec.name}:marker`, LISTED_MARKER.score, LISTED_MARKER.member)
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
      .then(() => this.runner.afterProcessing(job.id))
      .catch((err: Error) => this.log.error({ err, jobId: job.id }, "a job's final write failed"))
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
    this.idle.close();
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
  }
}
