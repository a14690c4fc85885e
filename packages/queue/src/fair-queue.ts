import type { Redis } from "ioredis";
import { z } from "zod";
import { jobCost, type JobPayload, type Priority, type SwitchyardConfig } from "@switchyard/core";
import type { Keys } from "./keys";
import { transitionOutcome, type TransitionOutcome } from "./job-store";
import { LuaLibrary, type LuaMode } from "./lua-library";
import fairLibLua from "./lua/fair-lib.lua";
import fairQueueLibLua from "./lua/fair-queue-lib.lua";
import fairQueueLua from "./lua/fair-queue.lua";

/**
 * fair-queue.lua's ops, with the functions it shares with create-job.lua (fair-lib.lua) and its
 * own helpers (fair-queue-lib.lua) before them: a function library (lua-library.ts), so those
 * are made once, not at every pick.
 */
const FAIR_QUEUE_PROGRAM = {
  family: "sy_fair_queue",
  shared: `${fairLibLua}\n${fairQueueLibLua}`,
  bodies: [fairQueueLua],
};

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

/**
 * A job a pick started: moved into its BullMQ queue's wait list, or, when the pick was asked to
 * start jobs directly, moved to active and locked for the picker (`job` holds it).
 */
export interface FairStart {
  queue: string;
  jobId: string;
  tenantId: string;
  tier: string;
  cost: number;
  /** When the job was listed (Redis time, ms). */
  listedAt: number;
  /**
   * Started directly: BullMQ's job hash (HGETALL's field, value list) and its lock token; and,
   * when the pick marked the job's record running (its first start, within its start deadline:
   * `DirectStart.runningTtlMs`), what that transition answered.
   */
  job?: { hash: string[]; token: string; running?: TransitionOutcome };
}

/** Asks a pick to start jobs directly (fair-queue.lua, "Direct starts") for the picking process. */
export interface DirectStart {
  /** The BullMQ queues the process consumes: a job of another queue goes to its wait list. */
  queues: string;
  /** BullMQ's lock duration (the workers' lockDuration). */
  lockMs: number;
  /** Lock tokens are this, ":", and the job's position among the starts (from 1). */
  token: string;
  /**
   * Also mark a job's record running, with this TTL (ms), on its first start (fair-queue.lua,
   * "Running mark"): the runner then skips its own transition to running.
   */
  runningTtlMs?: number;
}

/** The queues argument of a direct start: "|a|b|". */
export const directQueues = (names: Iterable<string>): string => `|${[...names].join("|")}|`;

export type FairPick =
  | (FairStart & {
      picked: true;
      now: number;
      /** Other jobs were listed and due when this one was picked. */
      more: boolean;
    })
  /** Nothing to start now; nextAt is when a listed job becomes due (0: none). */
  | { picked: false; nextAt: number; now: number };

/**
 * What one pick of several started, in the fair order. With no more listed now (none started,
 * or `more` false), `nextAt` says when a listed job is next due (0: none).
 */
export interface FairPicks {
  starts: FairStart[];
  /** Other jobs were listed and due after these were picked. */
  more: boolean;
  nextAt: number;
  now: number;
}

export interface FairTenantView {
  tenant: string;
  tier: string;
  /** Jobs listed and due (not counting retries and hand-backs BullMQ holds). */
  listed: number;
  backlogged: boolean;
  /** The tenant's virtual time (cost / weight served so far, from when it last came back). */
  pass: number;
  /** How far its pass is ahead of its tier's virtual time: larger means further back in line. */
  lag: number;
  oldest_listed_seconds: number | null;
  starts_last_minute: number;
  share_last_minute: number | null;
}

/**
 * A job's listing, from its queue payload: the API lists new jobs with it, the worker lists jobs
 * going back to wait (for capacity, or for an identical running job) with it.
 */
export function fairEntryOf(
  config: SwitchyardConfig,
  p: JobPayload,
  queue: string,
  tenantWeight: number | undefined,
): FairEntry {
  return {
    jobId: p.job_id,
    tier: p.tier,
    tenantId: p.tenant_id,
    queue,
    cost: jobCost(config, { model: p.model, ...p.request, task: p.task }),
    priority: p.priority,
    tierWeight: config.worker.tier_weights[p.tier],
    tenantWeight: tenantWeight ?? 1,
  };
}

export const PRIORITY_RANK: Record<Priority, number> = { high: 0, normal: 1, low: 2 };
/** How many stale entries (jobs cancelled or expired meanwhile) one pick may skip. */
const MAX_SKIPS = 20;

const pickedHeadSchema = z.tuple([
  z.literal(1),
  z.number(),
  z.union([z.literal(0), z.literal(1)]),
  z.number(),
]);
const startSchema = z.tuple([
  z.string(),
  z.string(),
  z.string(),
  z.string(),
  z.coerce.number(),
  z.coerce.number(),
  z.union([z.literal(0), z.array(z.string())]),
  z.unknown(),
]);
/** Fields per started job in a pick's reply. */
const START_FIELDS = 8;
const waitReplySchema = z.tuple([z.literal(1), z.number()]);
const idleSchema = z.tuple([z.literal(0), z.number(), z.number()]);

export class FairQueue {
  private readonly lua: LuaLibrary;

  /** luaMode "script": the fair queue runs as an EVAL script even where Redis has functions (tests). */
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    luaMode?: LuaMode,
  ) {
    this.lua = new LuaLibrary(redis, FAIR_QUEUE_PROGRAM, keys.luaLibraries(), luaMode);
  }

  /** How Redis runs the fair queue (see LuaLibrary). */
  get luaMode(): LuaMode {
    return this.lua.mode;
  }

  private call(op: string, now: number | undefined, ...args: (string | number)[]): Promise<unknown> {
    const k = this.keys.fairQueue;
    return this.lua.call(
      [k.state, k.tiers, k.meta, k.later, k.express],
      [op, now ?? "", k.prefix, this.keys.prefix, ...args],
    );
  }

  private entryArgs(e: FairEntry, delayMs: number): (string | number)[] {
    return [
      e.jobId,
      e.tier,
      e.tenantId,
      e.queue,
      Math.max(e.cost, 1e-6),
      PRIORITY_RANK[e.priority],
      Math.max(0, Math.round(delayMs)),
      e.tierWeight,
      e.tenantWeight,
    ];
  }

  /** Lists a job whose BullMQ job waits parked in its queue's delayed set. */
  async enqueue(e: FairEntry, now?: number): Promise<void> {
    await this.call("enqueue", now, ...this.entryArgs(e, e.delayMs ?? 0));
  }

  /**
   * Puts a parked job that found no capacity on `resource` ("provider/model") in that resource's
   * waiting room, and turns the key pool's appointment (due in `ticketInMs`) into a ticket: when
   * it is due, the room's fairest job starts, whichever job the appointment was given to.
   * Returns when the ticket is due (Redis time, ms).
   */
  async wait(e: FairEntry, resource: string, ticketInMs: number, now?: number): Promise<number> {
    const reply = await this.call("wait", now, ...this.entryArgs(e, ticketInMs), resource);
    return waitReplySchema.parse(reply)[1];
  }

  /** Chooses the next job in the fair order and moves it into its BullMQ queue's wait list. */
  async pick(now?: number): Promise<FairPick> {
    const p = await this.pickMany(1, now);
    const s = p.starts[0];
    return s
      ? { picked: true, ...s, now: p.now, more: p.more }
      : { picked: false, nextAt: p.nextAt, now: p.now };
  }

  /**
   * Chooses up to `max` jobs, the next ones in the fair order (as `max` picks one after another
   * would), and moves each into its BullMQ queue's wait list, or with `direct` to active for the
   * caller: one script call for several starts when a process has several free slots.
   */
  async pickMany(max: number, now?: number, direct?: DirectStart): Promise<FairPicks> {
    const want = Math.max(1, Math.floor(max));
    const mark =
      direct?.runningTtlMs !== undefined
        ? [this.keys.job(""), Math.round(direct.runningTtlMs), this.keys.jobEventsPrefix]
        : [];
    const reply = await (direct
      ? this.call(
          "pick",
          now,
          MAX_SKIPS,
          want,
          Math.round(direct.lockMs),
          direct.token,
          direct.queues,
          ...mark,
        )
      : this.call("pick", now, MAX_SKIPS, want));
    // The tag first: a failed safeParse builds an error, which a busy queue would pay per pick.
    if (Array.isArray(reply) && reply[0] === 0) {
      const [, nextAt, at] = idleSchema.parse(reply);
      return { starts: [], more: false, nextAt, now: at };
    }
    if (!Array.isArray(reply) || reply.length < 4 + START_FIELDS || (reply.length - 4) % START_FIELDS !== 0)
      throw new Error("the fair queue's pick answered a reply of an unexpected shape");
    const [, at, more, nextAt] = pickedHeadSchema.parse(reply.slice(0, 4));
    const starts: FairStart[] = [];
    for (let i = 4; i < reply.length; i += START_FIELDS) {
      const [queue, jobId, tenantId, tier, cost, listedAt, hash, running] = startSchema.parse(
        reply.slice(i, i + START_FIELDS),
      );
      const start: FairStart = { queue, jobId, tenantId, tier, cost, listedAt };
      if (hash !== 0 && direct) {
        start.job = { hash, token: `${direct.token}:${starts.length + 1}` };
        if (running !== 0) start.job.running = transitionOutcome(running);
      }
      starts.push(start);
    }
    return { starts, more: more === 1, nextAt, now: at };
  }

  /**
   * The fair queue as operators see it, per tenant: jobs listed, pass and lag behind its tier's
   * virtual time (how far it is ahead of its share; 0 when it is the next to start), the oldest
   * listed job's age, and starts over the last minute. Read-only, one pipeline.
   */
  async inspect(tenants: { id: string; tier: string }[], clock?: number): Promise<FairTenantView[]> {
    const k = this.keys.fairQueue;
    // The listing times are Redis's: age them on the same clock.
    const [sec, micro] = await this.redis.time();
    const now = clock ?? Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
    const bucket = Math.floor(now / 10_000);
    const pipe = this.redis.pipeline();
    for (const t of tenants) {
      pipe.hmget(k.state, `p:${t.id}`, `V:${t.tier}`);
      pipe.zcard(this.keys.fairLane(t.id));
      pipe.zscore(this.keys.fairTier(t.tier), t.id);
      pipe.zrange(this.keys.fairLane(t.id), 0, 0);
    }
    for (let b = bucket - 5; b <= bucket; b++) pipe.hgetall(`${k.prefix}:starts:${b}`);
    const rows = (await pipe.exec()) ?? [];
    const at = (i: number): unknown => rows[i]?.[1];
    const starts = new Map<string, number>();
    for (let i = tenants.length * 4; i < rows.length; i++)
      for (const [tenant, n] of Object.entries(z.record(z.string(), z.coerce.number()).parse(at(i) ?? {})))
        starts.set(tenant, (starts.get(tenant) ?? 0) + n);
    const heads = tenants.map((_, i) => z.array(z.string()).parse(at(i * 4 + 3))[0]);
    const metas = heads.some((h) => h !== undefined)
      ? await this.redis.hmget(k.meta, ...heads.map((h) => h ?? ""))
      : [];
    const totalStarts = [...starts.values()].reduce((a, b) => a + b, 0);
    return tenants.map((t, i) => {
      const [pass, vtime] = z.array(z.string().nullable()).parse(at(i * 4));
      const listed = z.number().parse(at(i * 4 + 1));
      const backlogged = at(i * 4 + 2) !== null;
      const listedAt = Number(metas[i]?.split("|")[5] ?? NaN);
      const p = Number(pass ?? 0);
      const v = Number(vtime ?? 0);
      return {
        tenant: t.id,
        tier: t.tier,
        listed,
        backlogged,
        pass: p,
        lag: backlogged ? p - v : 0,
        oldest_listed_seconds: Number.isFinite(listedAt) ? Math.max(0, (now - listedAt) / 1000) : null,
        starts_last_minute: starts.get(t.id) ?? 0,
        share_last_minute: totalStarts > 0 ? (starts.get(t.id) ?? 0) / totalStarts : null,
      };
    });
  }

  /**
   * Frees every job waiting in `resource`'s room now (at most `max`): its limits changed, so the
   * appointments it was given no longer hold. Each freed job asks the key pool again and runs, or
   * waits anew at the new pace. Returns how many tickets were added; wake the workers after it.
   */
  async wake(resource: string, max = 10_000, now?: number): Promise<number> {
    const reply = await this.call("wake", now, resource, max);
    return z.tuple([z.number()]).parse(reply)[0];
  }

  /** Drops a job's listing (it was cancelled); an entry left behind is skipped at its turn anyway. */
  async forget(jobId: string): Promise<void> {
    await this.call("forget", undefined, jobId);
  }
}
