import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ownEntry } from "./own";
import { cacheSchema, modelCacheSchema, tenantCacheSchema } from "./config-cache";
import { keyLimitsSchema, providerSchema } from "./config-providers";
import { admissionSchema, quotaSchema, tenantAdmissionSchema } from "./config-protection";

/** Switchyard's one config file: tenants, providers, model routes, queue and worker tuning. */

const tenantSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lowercase letters, digits and '-', at most 63"),
    tier: z.enum(["paid", "free"]),
    api_keys: z.array(z.string().min(8, "an API key needs at least 8 characters")).min(1),
    /** Large tenants get their own BullMQ queue (shown apart in Bull Board); same fair order. */
    dedicated_queue: z.boolean().default(false),
    /** The tenant's share of its tier against the tier's other tenants while all have work waiting. */
    weight: z.number().gt(0).max(1000).default(1),
    cache: tenantCacheSchema.optional(),
    /** Admission bounds of the tenant's own, on top of its tier's (admission.<tier>). */
    admission: tenantAdmissionSchema.optional(),
    /** The tenant's budget: requests, tokens and USD per UTC day, USD per UTC month. */
    quota: quotaSchema.optional(),
    /**
     * Signed requests: with required, every request of the tenant must carry a valid
     * switchyard-signature; otherwise a signature that is sent must be valid. Several secrets
     * (written as ${ENV_VAR}) allow rotation.
     */
    signing: z
      .object({
        required: z.boolean().default(true),
        secrets: z.array(z.string().min(16, "a signing secret needs at least 16 characters")).min(1).max(8),
      })
      .strict()
      .optional(),
  })
  .strict();

/** Per-link settings a route applies to the request before sending it upstream. */
const linkOptionsSchema = z
  .object({
    /** max_tokens when the request gives none. */
    max_tokens: z.number().int().min(1).max(1_000_000).optional(),
    /** An upper bound on the request's max_tokens (e.g. to keep free work cheap). */
    max_tokens_cap: z.number().int().min(1).max(1_000_000).optional(),
    /** Replaces the request's temperature. */
    temperature: z.number().min(0).max(2).optional(),
    /** Fields merged into the upstream body as they are (e.g. Ollama `options`). */
    extra_body: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

const linkSchema = z
  .object({
    provider: z.string(),
    /** The model name sent upstream; defaults to the alias itself. */
    model: z.string().min(1).optional(),
    options: linkOptionsSchema.optional(),
  })
  .strict();

const ruleSchema = z
  .object({
    /** Matches when the request's `task` hint is one of these. */
    task: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Matches when the estimated prompt is at most / at least this many tokens. */
    max_prompt_tokens: z.number().int().min(0).optional(),
    min_prompt_tokens: z.number().int().min(0).optional(),
    /** The route (an alias with a chain) to use when every condition of the rule matches. */
    use: z.string(),
  })
  .strict()
  .refine(
    (r) => r.task !== undefined || r.max_prompt_tokens !== undefined || r.min_prompt_tokens !== undefined,
    "a rule needs at least one condition: task, max_prompt_tokens or min_prompt_tokens",
  );

/**
 * A model alias is one of three forms:
 *   {provider, model?, options?}   one upstream (shorthand for a chain of one link)
 *   {chain: [link, ...]}           an ordered fallback chain
 *   {rules: [...], default}        picks another alias by task hint or estimated prompt size
 */
const modelSchema = z
  .object({
    cache: modelCacheSchema.optional(),
    provider: z.string().optional(),
    model: z.string().min(1).optional(),
    options: linkOptionsSchema.optional(),
    chain: z.array(linkSchema).min(1).max(8).optional(),
    rules: z.array(ruleSchema).min(1).max(32).optional(),
    default: z.string().optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    const forms = [m.provider !== undefined, m.chain !== undefined, m.rules !== undefined].filter(Boolean);
    if (forms.length !== 1)
      ctx.addIssue({ code: "custom", message: "give exactly one of: provider, chain, rules" });
    if (m.rules && m.default === undefined)
      ctx.addIssue({ code: "custom", path: ["default"], message: "a rules alias needs a default route" });
    if (!m.rules && m.default !== undefined)
      ctx.addIssue({ code: "custom", path: ["default"], message: "default is only for rules aliases" });
    if (m.chain && (m.model !== undefined || m.options !== undefined))
      ctx.addIssue({ code: "custom", message: "with a chain, model and options go on each link" });
  });

const queueSchema = z
  .object({
    /** Prefix of every Redis key Switchyard and BullMQ write. Braces make it a Cluster hash tag. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9:{}_-]{1,64}$/)
      .default("{sy}"),
    retention_hours: z
      .number()
      .positive()
      .max(24 * 30)
      .default(24),
    /** Jobs that have not started within this time expire (ttl_seconds can shorten it). */
    max_queue_age_hours: z
      .number()
      .positive()
      .max(24 * 30)
      .default(24),
    /** Attempts on each link of a route (first try included) before falling back to the next link. */
    attempts: z.number().int().min(1).max(20).default(4),
    backoff_base_ms: z.number().int().min(10).max(600_000).default(1_000),
    backoff_max_ms: z.number().int().min(10).max(3_600_000).default(60_000),
    idempotency_ttl_hours: z
      .number()
      .positive()
      .max(24 * 30)
      .default(24),
    /** Bull Board keeps at most this many finished jobs per queue (records live on separately). */
    keep_finished_jobs: z.number().int().min(0).max(1_000_000).default(5_000),
  })
  .strict();

export const DEFAULT_LOCK_DURATION_MS = 8_000;
export const DEFAULT_STALLED_INTERVAL_MS = 3_000;

/** The longest a SIGKILLed worker's job waits before another worker can take it. */
export const worstStallRecoveryMs = (w: { lock_duration_ms: number; stalled_interval_ms: number }): number =>
  w.lock_duration_ms + w.stalled_interval_ms;

const workerSchema = z
  .object({
    /** Jobs in flight per worker process; LLM calls are I/O bound, so hundreds is normal. */
    concurrency: z.number().int().min(1).max(10_000).default(256),
    /** Weighted round robin between tiers when both have work waiting. */
    tier_weights: z
      .object({
        paid: z.number().int().min(1).max(1000).default(4),
        free: z.number().int().min(1).max(1000).default(1),
      })
      .strict()
      .default({ paid: 4, free: 1 }),
    /**
     * A SIGKILLed worker's jobs run again within lock_duration_ms + stalled_interval_ms at worst
     * (the lock lapses, then the next stalled check finds it): 11 s by default. Shorter costs
     * more Redis calls (a lock renewal per process every lock_duration_ms / 2, a stalled check
     * per queue and process every stalled_interval_ms) and risks false stalls when an event
     * loop stalls for longer than half the lock.
     */
    lock_duration_ms: z.number().int().min(1_000).max(600_000).default(DEFAULT_LOCK_DURATION_MS),
    stalled_interval_ms: z.number().int().min(1_000).max(600_000).default(DEFAULT_STALLED_INTERVAL_MS),
    shutdown_grace_ms: z.number().int().min(0).max(600_000).default(30_000),
  })
  .strict();

/**
 * The fair scheduler: what a job costs its tenant's share. tokens: the job's estimated tokens
 * (prompt + max output), so heavy prompts take a share by their size; jobs: every job costs 1.
 */
const schedulerSchema = z
  .object({
    cost: z.enum(["tokens", "jobs"]).default("tokens"),
  })
  .strict();

const ingressLimitSchema = z
  .object({
    rps: z.number().gt(0).max(1_000_000),
    burst: z.number().int().min(1).max(10_000_000),
  })
  .strict();

const serverSchema = z
  .object({
    max_body_bytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    max_wait_seconds: z.number().int().min(1).max(300).default(60),
    /**
     * How long the drop-in endpoints (/v1/chat/completions, /v1/messages, Gemini's
     * generateContent) wait for their job; past it they answer 504 with the job's id.
     */
    sync_timeout_seconds: z.number().int().min(1).max(3_600).default(600),
    /**
     * Ingress limits shared by every API process through Redis: requests per second with a
     * burst, per client address and per tenant. Unset: no ingress limit.
     */
    rate_limit: z
      .object({ per_ip: ingressLimitSchema.optional(), per_tenant: ingressLimitSchema.optional() })
      .strict()
      .optional(),
    /**
     * Proxies whose X-Forwarded-For is believed (addresses or CIDRs, e.g. a load balancer's
     * subnet); from anyone else the connection's own address is the client's.
     */
    trusted_proxies: z.array(z.string().min(1)).max(64).default([]),
  })
  .strict();

/** Default retry schedule of a webhook delivery, in seconds after each failed attempt (~3 days). */
export const DEFAULT_WEBHOOK_SCHEDULE = [5, 300, 1_800, 7_200, 18_000, 36_000, 50_400, 72_000, 86_400];

/**
 * Result delivery by signed webhooks. Retry delays are seconds after each failed attempt
 * (fractions allowed, so tests can use short schedules); each gets +/- `jitter` of itself.
 */
const webhooksSchema = z
  .object({
    retry_schedule_seconds: z
      .array(
        z
          .number()
          .min(0.01)
          .max(7 * 86_400),
      )
      .max(30)
      .default(DEFAULT_WEBHOOK_SCHEDULE),
    jitter: z.number().min(0).max(0.5).default(0.2),
    /** Total time for one delivery attempt, connect included. */
    timeout_ms: z.number().int().min(100).max(120_000).default(15_000),
    connect_timeout_ms: z.number().int().min(50).max(60_000).default(5_000),
    /** Deliveries in flight per worker process (a slow receiver only ever holds one of these). */
    concurrency: z.number().int().min(1).max(10_000).default(50),
    /** An endpoint whose deliveries have failed without a success for this long is disabled. */
    disable_after_hours: z
      .number()
      .positive()
      .max(24 * 90)
      .default(120),
    /** How long the old secret stays valid after a rotation unless the request says otherwise. */
    secret_grace_hours: z
      .number()
      .min(0)
      .max(24 * 7)
      .default(24),
    max_endpoints_per_tenant: z.number().int().min(1).max(1_000).default(20),
    /** Delivery records (and their bodies, for replay) are kept this long after their last change. */
    delivery_retention_hours: z
      .number()
      .positive()
      .max(24 * 90)
      .default(168),
    /** Deliveries listed per endpoint (the newest are kept). */
    max_deliveries_per_endpoint: z.number().int().min(10).max(100_000).default(1_000),
  })
  .strict();

/** The OpenAI-compatible Batch API: files and batches, with OpenAI's limits by default. */
const batchSchema = z
  .object({
    /** Request lines per batch. */
    max_lines: z.number().int().min(1).max(1_000_000).default(50_000),
    /** Bytes per uploaded file (they are kept in Redis: size Redis's memory for it). */
    max_file_bytes: z
      .number()
      .int()
      .min(1024)
      .max(512 * 1024 * 1024)
      .default(200 * 1024 * 1024),
    /** Files a tenant may hold at once. */
    max_files_per_tenant: z.number().int().min(1).max(100_000).default(100),
    /** Files and batches are kept this long after their creation. */
    retention_hours: z
      .number()
      .positive()
      .max(24 * 90)
      .default(24 * 7),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    webhooks: webhooksSchema.default(webhooksSchema.parse({})),
    queue: queueSchema.default(queueSchema.parse({})),
    worker: workerSchema.default(workerSchema.parse({})),
    scheduler: schedulerSchema.default(schedulerSchema.parse({})),
    cache: cacheSchema.default(cacheSchema.parse({})),
    /** Per tier: bounds on waiting jobs and on the estimated wait (503 past them), and degrade. */
    admission: admissionSchema.default({}),
    batch: batchSchema.default(batchSchema.parse({})),
    providers: z.array(providerSchema).min(1),
    models: z.record(z.string().min(1), modelSchema),
    tenants: z.array(tenantSchema).min(1),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const providerIds = new Set<string>();
    cfg.providers.forEach((p, i) => {
      if (providerIds.has(p.id))
        ctx.addIssue({
          code: "custom",
          path: ["providers", i, "id"],
          message: `duplicate provider id '${p.id}'`,
        });
      providerIds.add(p.id);
      const keyIds = new Set<string>();
      p.keys.forEach((k, j) => {
        if (keyIds.has(k.id))
          ctx.addIssue({
            code: "custom",
            path: ["providers", i, "keys", j, "id"],
            message: `duplicate key id '${k.id}'`,
          });
        keyIds.add(k.id);
      });
      p.limiter.shares.forEach((sh, j) => {
        if (sh.tenant !== undefined && !cfg.tenants.some((t) => t.id === sh.tenant))
          ctx.addIssue({
            code: "custom",
            path: ["providers", i, "limiter", "shares", j, "tenant"],
            message: `unknown tenant '${sh.tenant}'`,
          });
      });
    });
    for (const [alias, m] of Object.entries(cfg.models)) {
      const unknownProvider = (provider: string, path: (string | number)[]) => {
        if (!providerIds.has(provider))
          ctx.addIssue({
            code: "custom",
            path: ["models", alias, ...path],
            message: `unknown provider '${provider}'`,
          });
      };
      if (m.provider !== undefined) unknownProvider(m.provider, ["provider"]);
      m.chain?.forEach((link, i) => unknownProvider(link.provider, ["chain", i, "provider"]));
      // Rules point at direct routes only, so resolution is one step and can never loop.
      const direct = (target: string, path: (string | number)[]) => {
        const t = ownEntry(cfg.models, target);
        if (!t)
          ctx.addIssue({
            code: "custom",
            path: ["models", alias, ...path],
            message: `unknown model '${target}'`,
          });
        else if (t.rules)
          ctx.addIssue({
            code: "custom",
            path: ["models", alias, ...path],
            message: `'${target}' has rules itself; point at a model with a provider or a chain`,
          });
      };
      m.rules?.forEach((r, i) => direct(r.use, ["rules", i, "use"]));
      if (m.cache?.mode === "semantic") {
        const emb = m.cache.embedding;
        const p = emb && cfg.providers.find((x) => x.id === emb.provider);
        if (!emb)
          ctx.addIssue({
            code: "custom",
            path: ["models", alias, "cache", "embedding"],
            message: "semantic caching needs an embedding: {provider, model}",
          });
        else if (!p || (p.type !== "openai" && p.type !== "openai-compatible"))
          ctx.addIssue({
            code: "custom",
            path: ["models", alias, "cache", "embedding", "provider"],
            message: `'${emb.provider}' is not an openai or openai-compatible provider (embeddings are read from its /embeddings)`,
          });
      }
      if (m.default !== undefined) direct(m.default, ["default"]);
    }
    for (const tier of ["paid", "free"] as const) {
      const target = cfg.admission[tier]?.degrade?.model;
      if (target !== undefined && !ownEntry(cfg.models, target))
        ctx.addIssue({
          code: "custom",
          path: ["admission", tier, "degrade", "model"],
          message: `unknown model '${target}'`,
        });
    }
    const tenantIds = new Set<string>();
    const keys = new Set<string>();
    cfg.tenants.forEach((t, i) => {
      if (tenantIds.has(t.id))
        ctx.addIssue({
          code: "custom",
          path: ["tenants", i, "id"],
          message: `duplicate tenant id '${t.id}'`,
        });
      tenantIds.add(t.id);
      t.api_keys.forEach((k, j) => {
        // Never echo the key itself: config errors end up in logs.
        if (keys.has(k))
          ctx.addIssue({
            code: "custom",
            path: ["tenants", i, "api_keys", j],
            message: "API key is used twice",
          });
        keys.add(k);
      });
    });
  });

export type SwitchyardConfig = z.infer<typeof configSchema>;
export type TenantConfig = SwitchyardConfig["tenants"][number];
export type ProviderConfig = SwitchyardConfig["providers"][number];
export type ModelConfig = SwitchyardConfig["models"][string];
export type LinkOptions = z.infer<typeof linkOptionsSchema>;
export type BreakerConfig = ProviderConfig["breaker"];
export type ProviderKeyConfig = ProviderConfig["keys"][number];
export type KeyLimits = z.infer<typeof keyLimitsSchema>;
export type LimiterConfig = ProviderConfig["limiter"];
export type WebhooksConfig = SwitchyardConfig["webhooks"];

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Replaces `${VAR}` and `${VAR:-default}` in every string of the parsed document. */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, path: string[] = []): unknown {
  if (typeof value === "string") {
    return value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_m, name: string, fallback?: string) => {
        const v = env[name];
        if (v !== undefined && v !== "") return v;
        if (fallback !== undefined) return fallback;
        throw new ConfigError(
          `config ${path.join(".") || "(root)"}: environment variable ${name} is not set`,
        );
      },
    );
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolateEnv(v, env, [...path, String(i)]));
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolateEnv(v, env, [...path, k])]),
    );
  }
  return value;
}

export function formatIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`).join("; ");
}

export function parseConfig(
  text: string,
  env: NodeJS.ProcessEnv = process.env,
  source = "config",
): SwitchyardConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML: ${(err as Error).message}`);
  }
  const result = configSchema.safeParse(interpolateEnv(doc, env));
  if (!result.success) throw new ConfigError(`${source}: invalid config: ${formatIssues(result.error)}`);
  return result.data;
}

/** The file's text and the config it gives; an unreadable or invalid file is a ConfigError. */
export function readConfigFile(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): { text: string; config: SwitchyardConfig } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; set SWITCHYARD_CONFIG to a readable file`,
    );
  }
  return { text, config: parseConfig(text, env, path) };
}

export const loadConfig = (path: string, env: NodeJS.ProcessEnv = process.env): SwitchyardConfig =>
  readConfigFile(path, env).config;

/** How long finished job records are kept, in ms. */
export const retentionMs = (cfg: Pick<SwitchyardConfig, "queue">): number =>
  Math.round(cfg.queue.retention_hours * 3_600_000);

/** How long a job may wait before it must have started (ttl_seconds can only shorten it), in ms. */
export const startWithinMs = (cfg: Pick<SwitchyardConfig, "queue">, ttlSeconds?: number): number =>
  Math.min(Math.round(cfg.queue.max_queue_age_hours * 3_600_000), (ttlSeconds ?? Infinity) * 1000);

/** SWITCHYARD_CONFIG, or the demo config of the repository an app's dist/ folder sits in. */
export const configPathFor = (explicit: string | undefined, appDistDir: string): string =>
  explicit ?? `${appDistDir}/../../../config/demo.yaml`;

/**
 * The longest a tenant's job should wait to start, in seconds: the smallest admission bound on
 * its estimated wait (its own or its tier's), else the queue's max age (when it expires anyway).
 */
export function admissionWaitBoundSeconds(
  cfg: Pick<SwitchyardConfig, "admission" | "queue">,
  tenant: Pick<TenantConfig, "tier" | "admission">,
): number {
  const bounds = [
    tenant.admission?.max_wait_seconds,
    cfg.admission[tenant.tier]?.max_wait_seconds,
    cfg.queue.max_queue_age_hours * 3_600,
  ].filter((b): b is number => b !== undefined);
  return Math.min(...bounds);
}
