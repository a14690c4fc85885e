import type { Redis } from "ioredis";
import { z } from "zod";
import {
  jobErrorSchema,
  jobResultSchema,
  usageSchema,
  type CachePlan,
  type JobError,
  type JobResult,
  type Usage,
} from "@switchyard/core";
import type { Keys } from "./keys";
import cacheBeginLua from "./lua/cache-begin.lua";
import cacheFollowLua from "./lua/cache-follow.lua";
import cacheStoreLua from "./lua/cache-store.lua";
import flightReleaseLua from "./lua/flight-release.lua";
import semanticStoreLua from "./lua/semantic-store.lua";

/**
 * The answer cache in Redis, shared by the fleet: exact entries (bounded in size and count,
 * expiring), short negative entries for deterministic upstream 400s, and single-flight claims so
 * identical jobs running at once make one upstream call.
 */
const entrySchema = z.object({
  stored_at: z.number(),
  route: z.string(),
  tenant: z.string(),
  result: jobResultSchema,
  usage: usageSchema.optional(),
});
export type CacheEntry = z.infer<typeof entrySchema>;

const negativeSchema = z.object({ stored_at: z.number(), error: jobErrorSchema });

export type CacheBegin =
  | { kind: "hit"; entry: CacheEntry }
  | { kind: "negative"; storedAt: number; error: JobError }
  /** This job makes the upstream call for the key; identical jobs wait for it. */
  | { kind: "lead" }
  /** Another job makes it; its claim lasts leaderTtlMs more at most. */
  | { kind: "follow"; leaderTtlMs: number };

const followersSchema = z.array(z.string());
const storeReplySchema = z.tuple([z.array(z.string())], z.string());
const beginSchema = z.union([
  z.tuple([z.enum(["hit", "negative"]), z.string()]),
  z.tuple([z.literal("lead")]),
  z.tuple([z.literal("follow"), z.number()]),
]);

interface CacheCommands {
  syCacheBegin(
    e: string,
    neg: string,
    flight: string,
    stats: string,
    ...args: (string | number)[]
  ): Promise<unknown>;
  syCacheFollow(flight: string, followers: string, ref: string, ttlMs: number): Promise<unknown>;
  syCacheStore(...keysAndArgs: (string | number)[]): Promise<unknown>;
  syFlightRelease(leader: string, followers: string, jobId: string): Promise<unknown>;
  sySemanticStore(vectors: string, order: string, ...args: (string | number)[]): Promise<unknown>;
}

export const CACHE_STAT_FIELDS = [
  "hits",
  "misses",
  "coalesced",
  "stores",
  "evictions",
  "negative_hits",
  "negative_stores",
  "semantic_hits",
  "tokens_saved",
  "nano_usd_saved",
] as const;
export type CacheStat = (typeof CACHE_STAT_FIELDS)[number];

export class AnswerCache {
  private readonly redis: Redis & CacheCommands;

  constructor(
    redis: Redis,
    private readonly keys: Keys,
    private readonly limits: {
      max_entry_bytes: number;
      max_entries: number;
      negative_ttl_seconds: number;
      semantic_max_per_scope: number;
    },
  ) {
    if (!("syCacheBegin" in redis)) {
      redis.defineCommand("syCacheBegin", { numberOfKeys: 4, lua: cacheBeginLua });
      redis.defineCommand("syCacheFollow", { numberOfKeys: 2, lua: cacheFollowLua });
      redis.defineCommand("syCacheStore", { numberOfKeys: 7, lua: cacheStoreLua });
      redis.defineCommand("syFlightRelease", { numberOfKeys: 2, lua: flightReleaseLua });
      redis.defineCommand("sySemanticStore", { numberOfKeys: 2, lua: semanticStoreLua });
    }
    this.redis = redis as Redis & CacheCommands;
  }

  /**
   * Before a job's upstream call, in one round trip: the stored answer, the stored 400, or the
   * single-flight claim (lead, or follow the job that leads). Counts hits and misses.
   */
  async begin(plan: CachePlan, jobId: string, submittedAt: number, flightMs: number): Promise<CacheBegin> {
    const f = this.keys.cacheFlight(plan.key);
    const reply = beginSchema.parse(
      await this.redis.syCacheBegin(
        this.keys.cacheEntry(plan.key),
        this.keys.cacheNegative(plan.key),
        f.leader,
        this.keys.cacheStats,
        jobId,
        flightMs,
        submittedAt,
      ),
    );
    if (reply[0] === "lead") return { kind: "lead" };
    if (reply[0] === "follow") return { kind: "follow", leaderTtlMs: Math.max(0, reply[1]) };
    if (reply[0] === "hit") {
      const entry = parse(reply[1], entrySchema);
      // A damaged entry is no answer: call upstream (without leading).
      return entry ? { kind: "hit", entry } : { kind: "lead" };
    }
    const neg = parse(reply[1], negativeSchema);
    return neg ? { kind: "negative", storedAt: neg.stored_at, error: neg.error } : { kind: "lead" };
  }

  /**
   * Stores a complete answer (unless larger than max_entry_bytes) and, when `leader` is the job
   * leading the key's flight, ends its claim in the same step. Returns whether it was stored and
   * the followers to wake.
   */
  async store(
    plan: CachePlan,
    tenant: string,
    result: JobResult,
    usage: Usage | undefined,
    leader: string | undefined,
    now = Date.now(),
  ): Promise<{ stored: boolean; followers: string[]; evictedRoutes: string[] }> {
    const { attempts: _a, cache: _c, ...plain } = result;
    const value = JSON.stringify({
      stored_at: now,
      route: plan.route,
      tenant,
      result: plain,
      ...(usage ? { usage } : {}),
    });
    if (Buffer.byteLength(value) > this.limits.max_entry_bytes)
      return {
        stored: false,
        followers: leader ? await this.release(plan.key, leader) : [],
        evictedRoutes: [],
      };
    const f = this.keys.cacheFlight(plan.key);
    const reply = storeReplySchema.parse(
      await this.redis.syCacheStore(
        this.keys.cacheEntry(plan.key),
        this.keys.cacheIndex(),
        this.keys.cacheIndex({ tenant }),
        this.keys.cacheIndex({ route: plan.route }),
        this.keys.cacheStats,
        f.leader,
        f.followers,
        value,
        plan.ttlSeconds * 1000,
        plan.key,
        this.limits.max_entries,
        this.keys.cacheEntry(),
        now,
        leader ?? "",
      ),
    );
    const [evictedRoutes, ...followers] = reply;
    return { stored: true, followers, evictedRoutes };
  }

  /** Keeps a stored answer's prompt embedding for semantic lookups in its scope. */
  async storeVector(plan: CachePlan, vector: Float32Array, now = Date.now()): Promise<void> {
    if (!plan.semantic) return;
    const k = this.keys.cacheSemantic(plan.semantic.scope);
    const b64 = Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString("base64");
    await this.redis.sySemanticStore(
      k.vectors,
      k.order,
      plan.key,
      `${plan.semantic.guard}\n${b64}`,
      plan.ttlSeconds * 1000,
      this.limits.semantic_max_per_scope,
      now,
    );
  }

  /**
   * The stored answer whose prompt is most similar to `vector` in the plan's scope, at or above
   * the threshold, among prompts with the same guard signature (numbers, negations, guard words).
   * A linear scan of the scope (at most semantic_max_per_scope prompts).
   */
  async nearest(
    plan: CachePlan,
    vector: Float32Array,
  ): Promise<{ entry: CacheEntry; similarity: number } | undefined> {
    if (!plan.semantic) return undefined;
    const k = this.keys.cacheSemantic(plan.semantic.scope);
    const all = await this.redis.hgetall(k.vectors);
    let best: { hash: string; similarity: number } | undefined;
    for (const [hash, value] of Object.entries(all)) {
      const nl = value.indexOf("\n");
      if (nl < 0 || value.slice(0, nl) !== plan.semantic.guard) continue;
      const buf = Buffer.from(value.slice(nl + 1), "base64");
      if (buf.byteLength !== vector.byteLength) continue;
      const other = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      const similarity = cosine(vector, other);
      if (similarity >= plan.semantic.threshold && (!best || similarity > best.similarity))
        best = { hash, similarity };
    }
    if (!best) return undefined;
    const entry = parse(await this.redis.get(this.keys.cacheEntry(best.hash)), entrySchema);
    return entry && { entry, similarity: best.similarity };
  }

  /** Remembers an upstream 400 for this exact request, briefly (negative_ttl_seconds). */
  async storeNegative(plan: CachePlan, error: JobError, now = Date.now()): Promise<void> {
    if (this.limits.negative_ttl_seconds <= 0) return;
    const { attempts: _a, ...plain } = error;
    await this.redis
      .multi()
      .set(
        this.keys.cacheNegative(plan.key),
        JSON.stringify({ stored_at: now, error: plain }),
        "PX",
        this.limits.negative_ttl_seconds * 1000,
      )
      .hincrby(this.keys.cacheStats, "negative_stores", 1)
      .exec();
  }

  /** Keeps a leader's claim while it waits for a retry or for capacity. */
  async extend(key: string, jobId: string, ttlMs: number): Promise<void> {
    const k = this.keys.cacheFlight(key).leader;
    if ((await this.redis.get(k)) === jobId) await this.redis.pexpire(k, ttlMs);
  }

  /**
   * Registers a job that waits for the leader (`ref` is what the leader needs to wake it); false
   * when the leader is already gone, and the job must wake itself.
   */
  async follow(key: string, ref: string, ttlMs: number): Promise<boolean> {
    const f = this.keys.cacheFlight(key);
    return (await this.redis.syCacheFollow(f.leader, f.followers, ref, ttlMs)) === 1;
  }

  /** Ends the leader's claim; returns the followers to wake. */
  async release(key: string, jobId: string): Promise<string[]> {
    const f = this.keys.cacheFlight(key);
    return followersSchema.parse(await this.redis.syFlightRelease(f.leader, f.followers, jobId));
  }

  async count(stat: CacheStat, by = 1): Promise<void> {
    await this.redis.hincrby(this.keys.cacheStats, stat, by);
  }

  /** Fleet-wide counters and the number of entries. */
  async stats(): Promise<Record<CacheStat, number> & { entries: number; cost_saved_usd: number }> {
    const [raw, entries] = await Promise.all([
      this.redis.hgetall(this.keys.cacheStats),
      this.redis.zcard(this.keys.cacheIndex()),
    ]);
    const out = Object.fromEntries(CACHE_STAT_FIELDS.map((f) => [f, Number(raw[f] ?? 0)])) as Record<
      CacheStat,
      number
    >;
    return { ...out, entries, cost_saved_usd: out.nano_usd_saved / 1e9 };
  }

  /** Deletes every entry of a tenant, of a route, or (no filter) of the whole cache; returns how many. */
  async purge(by?: { tenant: string } | { route: string }): Promise<number> {
    const index = this.keys.cacheIndex(by);
    let purged = 0;
    for (;;) {
      const hashes = await this.redis.zrange(index, 0, 499);
      if (hashes.length === 0) break;
      const pipe = this.redis.pipeline();
      for (const h of hashes) pipe.del(this.keys.cacheEntry(h));
      pipe.zrem(index, ...hashes);
      if (by) pipe.zrem(this.keys.cacheIndex(), ...hashes);
      const res = (await pipe.exec()) ?? [];
      purged += res.slice(0, hashes.length).filter(([, n]) => n === 1).length;
    }
    return purged;
  }
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

function parse<T>(raw: string | null, schema: z.ZodType<T>): T | undefined {
  if (!raw) return undefined;
  try {
    const r = schema.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
