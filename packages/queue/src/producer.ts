import { Queue, type Telemetry } from "bullmq";
import { queueAttemptCap, type JobPayload, type SwitchyardConfig } from "@switchyard/core";
import type { Redis } from "ioredis";
import type { ParkedJob } from "./job-store";
import { allJobQueues, type QueueSpec } from "./queues";

/** BullMQ job name for chat jobs; the only kind this version has. */
export const CHAT_JOB = "chat";
/** Name of the backoff strategy the worker registers (Retry-After aware, jittered). */
export const BACKOFF_TYPE = "switchyard";

/**
 * Builds one BullMQ Queue per job queue in the config and adds validated payloads to them. A
 * new job is parked in its queue's delayed set until its start deadline and listed in the fair
 * queue, whose picks move it into the wait list in the fleet-wide fair order. Should a listing
 * ever be lost, BullMQ itself releases the job at its deadline and the worker expires it: every
 * accepted job still ends.
 */
export class JobProducer {
  readonly queues = new Map<string, Queue>();
  readonly specs: QueueSpec[] = [];

  constructor(
    private readonly connection: Redis,
    config: SwitchyardConfig,
    /** BullMQ's OpenTelemetry integration (bullmq-otel) when tracing is on. */
    private readonly telemetry?: Telemetry,
  ) {
    this.addQueues(config);
  }

  /**
   * Adds the queues a (reloaded) config names that are not there yet (a new dedicated queue). A
   * queue the config no longer names stays until the process restarts (jobs may still be in it).
   */
  addQueues(config: Pick<SwitchyardConfig, "tenants" | "queue">): void {
    for (const spec of allJobQueues(config)) {
      if (this.queues.has(spec.name)) continue;
      this.specs.push(spec);
      this.queues.set(
        spec.name,
        new Queue(spec.name, {
          connection: this.connection,
          prefix: config.queue.prefix,
          ...(this.telemetry ? { telemetry: this.telemetry } : {}),
        }),
      );
    }
  }

  private queue(name: string): Queue {
    const q = this.queues.get(name);
    if (!q) throw new Error(`no queue named ${name}`);
    return q;
  }

  /** BullMQ's options for a parked job (until its start deadline; the fair queue releases it earlier). */
  private static parkOptions(config: SwitchyardConfig, payload: JobPayload, now: number) {
    const retentionSec = Math.round(config.queue.retention_hours * 3600);
    const keep = config.queue.keep_finished_jobs;
    return {
      jobId: payload.job_id,
      delay: Math.max(1, payload.start_deadline - now),
      attempts: queueAttemptCap(config),
      backoff: { type: BACKOFF_TYPE },
      removeOnComplete: { age: retentionSec, count: keep },
      removeOnFail: { age: retentionSec, count: keep },
    };
  }

  /**
   * Parks the job until its start deadline (the fair queue releases it earlier); BullMQ treats a
   * second add with the same jobId as a no-op. Order comes from the fair queue, not from BullMQ
   * priorities.
   */
  async enqueue(
    config: SwitchyardConfig,
    queueName: string,
    payload: JobPayload,
    now = Date.now(),
  ): Promise<void> {
    // Built by our own typed code from a validated request: parsed where it comes back out of
    // Redis (the worker), not again here (a second full zod pass on every submission).
    await this.queue(queueName).add(CHAT_JOB, payload, JobProducer.parkOptions(config, payload, now));
  }

  /**
   * The job as BullMQ's add would store it, for the submission's own script to park
   * (create-job.lua), or undefined when BullMQ must add it itself: with telemetry on, BullMQ's
   * add opens the producer span and carries its context in the job's options.
   */
  parkable(config: SwitchyardConfig, payload: JobPayload, now = Date.now()): ParkedJob | undefined {
    if (this.telemetry) return undefined;
    const opts = JobProducer.parkOptions(config, payload, now);
    const { age, count } = opts.removeOnComplete;
    // JSON.stringify(opts), written out: the same text at a fraction of the cost (park.int.test.ts
    // compares what it stores with what BullMQ's add stores).
    const keep = `{"age":${age},"count":${count}}`;
    return {
      name: CHAT_JOB,
      data: JSON.stringify(payload),
      opts: `{"jobId":${JSON.stringify(opts.jobId)},"delay":${opts.delay},"attempts":${opts.attempts},"backoff":{"type":"${BACKOFF_TYPE}"},"removeOnComplete":${keep},"removeOnFail":${keep}}`,
      timestamp: now,
      delay: opts.delay,
    };
  }

  /** Removes a job that no worker holds. False when it is locked by a worker or gone. */
  async removeIfIdle(queueName: string, jobId: string): Promise<boolean> {
    const removed = await this.queue(queueName).remove(jobId);
    return removed === 1;
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
  }
}
