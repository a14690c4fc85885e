import { Worker, type Processor, type WorkerOptions } from "bullmq";
import type { JobPayload } from "@switchyard/core";

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

  /** Starts what run() would start, minus the main loop. */
  async startManaged(): Promise<void> {
    await this.waitUntilReady();
    await this.startStalledCheckTimer();
    this.lockManager.start();
  }
}
