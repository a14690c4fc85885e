import type { Redis } from "ioredis";
import { z } from "zod";
import type { Priority } from "@switchyard/core";
import type { Keys } from "./keys";
import fairQueueLua from "./lua/fair-queue.lua";

/**
 * The fleet-wide fair order of job starts (fair-queue.lua): start-time fair queueing over
 * tier -> tenant -> the tenant's own jobs (priority, then age), charged by each job's cost. One
 * atomic script call per question, on Redis's clock, so any number of worker processes follow
 * one order.
 */
export interface FairEntry {
  jobId: string;
  tier: string;
  tenantId: string;
  /** The BullMQ queue the job is parked in (its tier's, or the tenant's dedicated one). */
  queue: string;
  /** What the job is charged: its estimated tokens, or 1 per job. */
  cost: number;
  priority: Priority;
  tierWeight: number;
  tenantWeight: number;
  /** Listed now (0) or only after this many ms (a job handed back to wait). */
  delayMs?: number;
}

export type Pick =
  | {
      picked: true;
      queue: string;
      jobId: string;
      tenantId: string;
      tier: string;
      cost: number;
      /** When the job was listed (Redis time, ms). */
      listedAt: number;
      now: number;
    }
  /** Nothing to start now; nextAt is when a listed job becomes due (0: none). */
  | { picked: false; nextAt: number; now: number };

const PRIORITY_RANK: Record<Priority, number> = { high: 0, normal: 1, low: 2 };
/** How many stale entries (jobs cancelled or expired meanwhile) one pick may skip. */
const MAX_SKIPS = 20;

const pickedSchema = z.tuple([
  z.literal(1),
  z.string(),
  z.string(),
  z.string(),
  z.string(),
  z.coerce.number(),
  z.coerce.number(),
  z.number(),
]);
const idleSchema = z.tuple([z.literal(0), z.number(), z.number()]);

interface FairCommands {
  syFairQueue(
    state: string,
    tiers: string,
    meta: string,
    later: string,
    ...args: (string | number)[]
  ): Promise<unknown>;
}

export class FairQueue {
  private readonly redis: Redis & FairCommands;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
  ) {
    if (!("syFairQueue" in redis)) redis.defineCommand("syFairQueue", { numberOfKeys: 4, lua: fairQueueLua });
    this.redis = redis as Redis & FairCommands;
  }

  private call(op: string, now: number | undefined, ...args: (string | number)[]): Promise<unknown> {
    const k = this.keys.fairQueue;
    return this.redis.syFairQueue(
      k.state,
      k.tiers,
      k.meta,
      k.later,
      op,
      now ?? "",
      k.prefix,
      this.keys.prefix,
      ...args,
    );
  }

  /** Lists a job whose BullMQ job waits parked in its queue's delayed set. */
  async enqueue(e: FairEntry, now?: number): Promise<void> {
    await this.call(
      "enqueue",
      now,
      e.jobId,
      e.tier,
      e.tenantId,
      e.queue,
      Math.max(e.cost, 1e-6),
      PRIORITY_RANK[e.priority],
      Math.max(0, Math.round(e.delayMs ?? 0)),
      e.tierWeight,
      e.tenantWeight,
    );
  }

  /** Chooses the next job in the fair order and moves it into its BullMQ queue's wait list. */
  async pick(now?: number): Promise<Pick> {
    const reply = await this.call("pick", now, MAX_SKIPS);
    const idle = idleSchema.safeParse(reply);
    if (idle.success) return { picked: false, nextAt: idle.data[1], now: idle.data[2] };
    const [, queue, jobId, tenantId, tier, cost, listedAt, at] = pickedSchema.parse(reply);
    return { picked: true, queue, jobId, tenantId, tier, cost, listedAt, now: at };
  }

  /** Drops a job's listing (it was cancelled); an entry left behind is skipped at its turn anyway. */
  async forget(jobId: string): Promise<void> {
    await this.call("forget", undefined, jobId);
  }
}
