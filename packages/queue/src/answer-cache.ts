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

export type CacheLookup =
  | { kind: "hit"; entry: CacheEntry }
  | { kind: "negative"; storedAt: number; error: JobError }
  | { kind: "miss" };

interface CacheCommands {
  syCacheStore(
    e: string,
    idx: string,
    t: string,
    r: string,
    stats: string,
    ...args: (string | number)[]
  ): Promise<unknown>;
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
  "tokens_saved",
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
    if (!("syCacheStore" in redis)) {
      redis.defineCommand("syCacheStore", { numberOfKeys: 5, lua: cacheStoreLua });
      redis.defineCommand("syFlightRelease", { numberOfKeys: 2, lua: flightReleaseLua });
      redis.defineCommand("sySemanticStore", { numberOfKeys: 2, lua: semanticStoreLua });
    }
    this.redis = redis as Redis & CacheCommands;
  }

  /** The entry, a negative entry, or nothing; a damaged entry counts as nothing. */
  async lookup(key: string): Promise<CacheLookup> {
    const [entry, negative] = await this.redis.mget(this.keys.cacheEntry(key), this.keys.cacheNegative(key));
    const hit = parse(entry ?? null, entrySchema);
    if (hit) return { kind: "hit", entry: hit };
    const neg = parse(negative ?? null, negativeSchema);
    if (neg) return { kind: "negative", storedAt: neg.stored_at, error: neg.error };
    return { kind: "miss" };
  }

  /** Stores a complete answer; false when it is larger than max_entry_bytes. */
  async store(
    plan: CachePlan,
    tenant: string,
    result: JobResult,
    usage: Usage | undefined,
    now = Date.now(),
  ): Promise<boolean> {
    const { attempts: _a, cache: _c, ...plain } = result;
    const value = JSON.stringify({
      stored_at: now,
      route: plan.route,
      tenant,
      result: plain,
      ...(usage ? { usage } : {}),
    });
    if (Buffer.byteLength(value) > this.limits.max_entry_bytes) return false;
    await this.redis.syCacheStore(
      this.keys.cacheEntry(plan.key),
      this.keys.cacheIndex(),
      this.keys.cacheIndex({ tenant }),
      this.keys.cacheIndex({ route: plan.route }),
      this.keys.cacheStats,
      value,
      plan.ttlSeconds * 1000,
      plan.key,
      this.limits.max_entries,
      this.keys.cacheEntry(),
      now,
    );
    return true;
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

  /** Claims the single upstream call for a key; false when another job leads it. */
  async claim(key: string, jobId: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.keys.cacheFlight(key).leader, jobId, "PX", ttlMs, "NX")) === "OK";
  }

  /** The leader's remaining claim in ms (0 when nobody leads any more). */
  async leaderTtl(key: string): Promise<number> {
    return Math.max(0, await this.redis.pttl(this.keys.cacheFlight(key).leader));
  }

  /** Keeps a leader's claim while it waits for a retry or for capacity. */
  async extend(key: string, jobId: string, ttlMs: number): Promise<void> {
    const k = this.keys.cacheFlight(key).leader;
    if ((await this.redis.get(k)) === jobId) await this.redis.pexpire(k, ttlMs);
  }

  /** Registers a job that waits for the leader (`ref` is what the leader needs to wake it). */
  async follow(key: string, ref: string, ttlMs: number): Promise<void> {
    const k = this.keys.cacheFlight(key).followers;
    await this.redis.multi().rpush(k, ref).pexpire(k, ttlMs).exec();
  }

  /** Ends the leader's claim; returns the followers to wake. */
  async release(key: string, jobId: string): Promise<string[]> {
    const f = this.keys.cacheFlight(key);
    return z.array(z.string()).parse(await this.redis.syFlightRelease(f.leader, f.followers, jobId));
  }

  async count(stat: CacheStat, by = 1): Promise<void> {
    await this.redis.hincrby(this.keys.cacheStats, stat, by);
  }

  /** Fleet-wide counters and the number of entries. */
  async stats(): Promise<Record<CacheStat, number> & { entries: number }> {
    const [raw, entries] = await Promise.all([
      this.redis.hgetall(this.keys.cacheStats),
      this.redis.zcard(this.keys.cacheIndex()),
    ]);
    const out = Object.fromEntries(CACHE_STAT_FIELDS.map((f) => [f, Number(raw[f] ?? 0)])) as Record<
      CacheStat,
      number
    >;
    return { ...out, entries };
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
