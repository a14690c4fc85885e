import { z } from "zod";
import { providerPricesSchema } from "./config-protection";

/** Providers in the config: their keys and limits, the limiter, breaker and bulkhead settings. */

const limit = z.number().int().min(1).max(1_000_000_000_000).optional();

/**
 * An upstream's limits on one API key, each optional (unset: not limited on that axis):
 * requests and tokens per rolling minute (tpm counts input + output; itpm/otpm count them
 * apart, as Anthropic does), requests per rolling day, and calls in flight at once.
 */
export const keyLimitsSchema = z
  .object({
    rpm: limit,
    tpm: limit,
    itpm: limit,
    otpm: limit,
    rpd: limit,
    max_concurrency: z.number().int().min(1).max(100_000).optional(),
  })
  .strict();

const providerKeySchema = keyLimitsSchema
  .extend({
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
    secret: z.string().min(1),
    /**
     * Limits that apply per model on this key (OpenAI and Gemini limit each model apart), on
     * top of the key-wide ones above. "*" applies to every model not listed by name.
     */
    models: z.record(z.string().min(1), keyLimitsSchema).optional(),
  })
  .strict();

/**
 * A share of a provider's key pool for one tier or tenant: work of that class may use at most
 * `fraction` of the pool's rpm / tpm / itpm / otpm (summed over the pool's keys for the model
 * called), so it can never crowd the rest out.
 */
const shareSchema = z
  .object({
    tier: z.enum(["paid", "free"]).optional(),
    tenant: z.string().optional(),
    fraction: z.number().gt(0).max(1),
  })
  .strict()
  .refine((s) => (s.tier === undefined) !== (s.tenant === undefined), "give exactly one of: tier, tenant");

/** How the fleet-wide limiter treats this provider's keys (the limits themselves are on each key). */
const limiterSchema = z
  .object({
    /** Prompt size estimate for models without a known tokenizer (OpenAI models use o200k/cl100k). */
    chars_per_token: z.number().min(0.5).max(20).default(4),
    /** Cooldown after a 429 that came without any retry hint. */
    cooldown_ms: z.number().int().min(10).max(3_600_000).default(2_000),
    /** How often a key taken out of the pool (401/403) is tried again. */
    probe_interval_ms: z.number().int().min(100).max(86_400_000).default(60_000),
    /** Extra time before a reservation leaves the rolling window (covers clock and network skew). */
    window_margin_ms: z.number().int().min(0).max(10_000).default(500),
    shares: z.array(shareSchema).max(64).default([]),
  })
  .strict();

export const PROVIDER_TYPES = ["openai", "openai-compatible", "anthropic", "gemini"] as const;
export type ProviderType = (typeof PROVIDER_TYPES)[number];

/** Where each provider lives unless base_url says otherwise (openai-compatible servers must say). */
export const DEFAULT_BASE_URLS: Record<Exclude<ProviderType, "openai-compatible">, string> = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com",
  gemini: "https://generativelanguage.googleapis.com",
};

/**
 * The circuit breaker shared by all workers through Redis: it opens when the share of failed
 * calls in the rolling window reaches failure_rate (once at least min_calls were made), stays
 * open for open_ms (doubling on each re-open up to max_open_ms), then lets half_open_probes
 * calls through; a successful probe closes it, a failed one opens it again.
 */
const breakerSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** One breaker per provider, or one per provider and model (a single overloaded model trips alone). */
    per_model: z.boolean().default(false),
    window_ms: z.number().int().min(1_000).max(3_600_000).default(30_000),
    min_calls: z.number().int().min(1).max(100_000).default(10),
    failure_rate: z.number().gt(0).max(1).default(0.5),
    open_ms: z.number().int().min(100).max(3_600_000).default(30_000),
    max_open_ms: z
      .number()
      .int()
      .min(100)
      .max(24 * 3_600_000)
      .default(300_000),
    half_open_probes: z.number().int().min(1).max(100).default(1),
  })
  .strict();

/**
 * The bulkhead: at most max_concurrent calls to this provider in flight in each worker process,
 * so a slow provider cannot take every slot; up to max_waiting more jobs wait in the process for
 * a turn, and jobs beyond that go back to the queue (no attempt spent) to free their slot.
 */
const bulkheadSchema = z
  .object({
    max_concurrent: z.number().int().min(1).max(100_000),
    max_waiting: z.number().int().min(0).max(100_000).default(0),
  })
  .strict();

export const providerSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    type: z.enum(PROVIDER_TYPES),
    /** Defaults per type (see DEFAULT_BASE_URLS); required for openai-compatible. */
    base_url: z.url().optional(),
    keys: z.array(providerKeySchema).min(1),
    /** Extra headers on every call (e.g. anthropic-beta, HTTP-Referer for OpenRouter). */
    headers: z.record(z.string().regex(/^[A-Za-z0-9-]{1,64}$/), z.string()).optional(),
    /** Anthropic's anthropic-version header. */
    anthropic_version: z.string().default("2023-06-01"),
    /** Gemini's API version path segment. */
    api_version: z
      .string()
      .regex(/^v[0-9a-z]+$/)
      .default("v1beta"),
    /** max_tokens sent when neither the request nor the route sets one (Anthropic requires it). */
    default_max_tokens: z.number().int().min(1).max(1_000_000).default(4096),
    /** Total time allowed for one upstream call, connect included. */
    timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
    connect_timeout_ms: z.number().int().min(50).max(60_000).default(5_000),
    /** Upstream answers larger than this are treated as malformed. */
    max_response_bytes: z
      .number()
      .int()
      .min(1024)
      .default(8 * 1024 * 1024),
    breaker: breakerSchema.default(breakerSchema.parse({})),
    bulkhead: bulkheadSchema.optional(),
    limiter: limiterSchema.default(limiterSchema.parse({})),
    /**
     * Prices of this provider's models in USD per million tokens, by upstream model name ("*":
     * every model), over the price table (@pydantic/genai-prices); self-hosted models: 0.
     */
    prices: providerPricesSchema.optional(),
  })
  .strict()
  .transform((p, ctx) => {
    if (p.base_url) return { ...p, base_url: p.base_url };
    if (p.type === "openai-compatible") {
      ctx.addIssue({
        code: "custom",
        path: ["base_url"],
        message: "openai-compatible providers need a base_url",
      });
      return z.NEVER;
    }
    return { ...p, base_url: DEFAULT_BASE_URLS[p.type] };
  });
