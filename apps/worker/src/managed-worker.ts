import { Worker, type GetNextJobOptions, type Job, type Processor, type WorkerOptions } from "bullmq";
import type { JobPayload } from "@switchyard/core";

/** BullMQ's fetch without its span (Worker._getNextJob, an internal: see the contract test). */
interface UntracedFetch {
  _getNextJob(token: string, opts?: GetNextJobOptions): Promise<Job<JobPayload>>;
}

/**
 * A BullMQ Worker whose fetching is done by our Dispatcher (getNextJob + processJob) instead
 * of BullMQ's own main loop, so that one process-wide gate decides which queue gets the next
 * free slot. Everything else stays BullMQ's: lock renewal, stalled-job recovery, completion,
 * failure with backoff, events.
 */
export class ManagedWorker extends Worker<JobPayload> {
  constructor(name: string, processor: Processor<JobPayload>, opts: WorkerOptions) {
    super(name, processor, { ...opts, autorun: false });
  }

  /**
   * A fetch without BullMQ's fetch span: with telemetry on, BullMQ opens a root span for every
   * fetch, an empty one included (thousands of one-span traces from idle loops). A job's trace
   * has its add and its processing; the fetch between them says nothing more.
   */
  override getNextJob(token: string, opts?: GetNextJobOptions): Promise<Job<JobPayload>> {
    return (this as unknown as UntracedFetch)._getNextJob(token, opts);
  }

  /** Starts what run() would start, minus the main loop. */
  async startManaged(): Promise<void> {
    await this.waitUntilReady();
    await this.startStalledCheckTimer();
    this.lockManager.start();
  }
}
