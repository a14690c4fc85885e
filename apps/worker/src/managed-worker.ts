import { setTimeout as sleep } from "node:timers/promises";
import {
  raw2NextJobData,
  Worker,
  type GetNextJobOptions,
  type Job,
  type JobJson,
  type Processor,
  type WorkerOptions,
} from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";
import type { JobPayload } from "@switchyard/core";

/** hasWork's three replies: the wait list's length, the prioritized set's, the first delayed job. */
const workCheckSchema = z.tuple([z.number(), z.number(), z.array(z.string())]);

/** BullMQ's fetch without its span (Worker._getNextJob, an internal: see the contract test). */
interface UntracedFetch {
  _getNextJob(token: string, opts?: GetNextJobOptions): Promise<Job<JobPayload>>;
}

/**
 * The blocking half of BullMQ's fetch (internals of Worker, see the contract test): the wait on
 * the queue's marker and the due time of the next delayed job it keeps between waits.
 */
interface BlockingWait {
  waitForJob(blockUntil: number): Promise<number>;
  blockUntil: number;
  waiting: Promise<number> | null;
  closing: Promise<void> | undefined;
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

  /**
   * A job the fair queue's pick moved to active and locked for this process (fair-queue.lua,
   * "Direct starts"), from its job hash, as BullMQ's fetch makes one from what its moveToActive
   * answers (raw2NextJobData, then nextJobFromJobData: an internal, see the contract test).
   * Undefined when the hash is empty (the job's hash was gone: BullMQ's stalled-job check takes
   * the entry out of the active list).
   */
  adopt(hash: string[], jobId: string, token: string): Promise<Job<JobPayload> | undefined> {
    if (hash.length === 0) return Promise.resolve(undefined);
    const [data] = raw2NextJobData([hash, jobId, 0, 0]) as [JobJson | undefined];
    return this.nextJobFromJobData(data, jobId, token);
  }

  /**
   * Waits on the queue's marker as BullMQ's blocking fetch does (BZPOPMIN with BullMQ's own
   * timeouts, delayed-job due times and reconnection), without moving a job to active: the
   * caller takes a slot first and then fetches. Says what it found:
   * - "listed": the fair queue listed a job (LISTED_MARKER, score -1): a picker picks; there is
   *   nothing to fetch (the due time of BullMQ's next delayed job is kept for the next wait);
   * - "ready": BullMQ made a job ready (its "look now" marker, or a delayed job's time came): fetch;
   * - "none": nothing yet (a later due time, closing, or BullMQ could not wait).
   */
  async waitForMarker(): Promise<"listed" | "ready" | "none"> {
    const self = this as unknown as BlockingWait;
    if (self.closing || self.waiting) {
      // Closing, or another wait under way: nothing to wait for here (and no busy loop).
      await sleep(200);
      return "none";
    }
    self.waiting = self.waitForJob(self.blockUntil);
    let blockUntil: number;
    try {
      blockUntil = await self.waiting;
    } finally {
      self.waiting = null;
    }
    // BullMQ answers the popped marker's score: only a listing's is below 0.
    if (blockUntil < 0) return "listed";
    self.blockUntil = blockUntil;
    // Infinity: BullMQ could not wait (paused, rate limited, an error it already reported).
    if (!Number.isFinite(blockUntil)) {
      await sleep(200);
      return "none";
    }
    return blockUntil <= 0 || blockUntil - Date.now() < 1 ? "ready" : "none";
  }

  /**
   * Whether a fetch now would find a job: one in the wait list or the prioritized set, or a
   * delayed job whose time has come (BullMQ's fetch promotes it). BullMQ marks "look now" after
   * every fetch of its own (a blocker's), so a blocker woken by that mark would mostly run a
   * fetch script to find nothing; these three reads in one round trip cost a
   * fraction of one. (BullMQ's key layout, as the park contract test pins it; a delayed job's
   * score is its due time in ms times 4096 plus a counter.)
   */
  async hasWork(redis: Redis, now = Date.now()): Promise<boolean> {
    const { wait: waitKey, prioritized: prioritizedKey, delayed: delayedKey } = this.keys;
    // A BullMQ without these keys: fetch, as without the check (the contract test fails first).
    if (!waitKey || !prioritizedKey || !delayedKey) return true;
    const replies = await redis
      .pipeline()
      .llen(waitKey)
      .zcard(prioritizedKey)
      .zrange(delayedKey, 0, 0, "WITHSCORES")
      .exec();
    const parsed = workCheckSchema.safeParse(replies?.map(([err, v]) => (err ? null : v)));
    // Unreadable (a command failed): fetch, as without the check.
    if (!parsed.success) return true;
    const [wait, prioritized, first] = parsed.data;
    if (wait > 0 || prioritized > 0) return true;
    const score = Number(first[1]);
    return Number.isFinite(score) && Math.floor(score / 4096) <= now;
  }

  /** Starts what run() would start, minus the main loop. */
  async startManaged(): Promise<void> {
    await this.waitUntilReady();
    await this.startStalledCheckTimer();
    this.lockManager.start();
  }
}
