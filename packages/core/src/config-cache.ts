import { z } from "zod";

/** The answer cache's config: per model or route, per tenant, and its bounds. */

/**
 * Caching of answers on a model or route entry: exact (a hash of everything that changes the
 * output), semantic (exact first, then a close enough earlier prompt of the same scope, route and
 * parameters, by the cosine similarity of embeddings from `embedding`), or off. scope tenant (the
 * default) keeps each tenant's entries to itself; global shares them between tenants.
 */
export const modelCacheSchema = z
  .object({
    mode: z.enum(["exact", "semantic", "off"]).default("exact"),
    /** Semantic: the OpenAI-compatible provider (POST {base_url}/embeddings) and model. */
    embedding: z
      .object({ provider: z.string(), model: z.string().min(1) })
      .strict()
      .optional(),
    /** Semantic: the least cosine similarity that counts as the same question. */
    threshold: z.number().gt(0).max(1).default(0.95),
    ttl_seconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 86_400)
      .default(3_600),
    scope: z.enum(["tenant", "global"]).default("tenant"),
  })
  .strict();

/**
 * A tenant may turn caching off for its jobs, narrow semantic caching to exact, or narrow a
 * global cache to its own entries.
 */
export const tenantCacheSchema = z
  .object({
    mode: z.enum(["exact", "off"]).optional(),
    scope: z.literal("tenant").optional(),
  })
  .strict();

/** Pairs and words that flip a request's meaning (negations are guarded on their own). */
export const DEFAULT_GUARD_WORDS = [
  "enable",
  "disable",
  "enabled",
  "disabled",
  "on",
  "off",
  "increase",
  "decrease",
  "add",
  "remove",
  "allow",
  "deny",
  "before",
  "after",
  "above",
  "below",
  "more",
  "less",
  "max",
  "min",
  "maximum",
  "minimum",
  "true",
  "false",
  "yes",
  "start",
  "stop",
  "open",
  "close",
  "buy",
  "sell",
  "include",
  "exclude",
  "first",
  "last",
  "win",
  "lose",
  "accept",
  "reject",
  "encrypt",
  "decrypt",
];

/** Bounds of the answer cache, whatever the models' settings. */
export const cacheSchema = z
  .object({
    /** Answers larger than this are not stored. */
    max_entry_bytes: z
      .number()
      .int()
      .min(256)
      .max(16 * 1024 * 1024)
      .default(256 * 1024),
    /** Entries kept at most; the oldest go first. */
    max_entries: z.number().int().min(1).max(10_000_000).default(100_000),
    /** How long an upstream 400 for an exact request is answered from the cache. */
    negative_ttl_seconds: z.number().int().min(0).max(86_400).default(60),
    /** Semantic: prompts kept per scope (route, parameters and tenant); the oldest go first. */
    semantic_max_per_scope: z.number().int().min(1).max(100_000).default(1_000),
    /**
     * Semantic: words that change a prompt's meaning however similar the rest is. Two prompts
     * that differ in any of them (or in any number, or in a negation) never share an answer.
     */
    semantic_guard_words: z.array(z.string().min(1)).max(1_000).default(DEFAULT_GUARD_WORDS),
  })
  .strict();

export type ModelCacheConfig = z.infer<typeof modelCacheSchema>;
