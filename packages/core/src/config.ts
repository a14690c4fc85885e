import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

/** Switchyard's one config file: tenants, providers, model routes, queue and worker tuning. */

const tenantSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, "lowercase letters, digits and '-', at most 63"),
    tier: z.enum(["paid", "free"]),
    api_keys: z.array(z.string().min(8, "an API key needs at least 8 characters")).min(1),
    /** Large tenants get their own BullMQ queue so their backlog never sits in the tier queue. */
    dedicated_queue: z.boolean().default(false),
  })
  .strict();

const providerKeySchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
    secret: z.string().min(1),
  })
  .strict();

const providerSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    type: z.enum(["openai", "openai-compatible"]),
    base_url: z.url(),
    keys: z.array(providerKeySchema).min(1),
    /** Total time allowed for one upstream call, connect included. */
    timeout_ms: z.number().int().min(100).max(600_000).default(60_000),
    connect_timeout_ms: z.number().int().min(50).max(60_000).default(5_000),
    /** Upstream answers larger than this are treated as malformed. */
    max_response_bytes: z
      .number()
      .int()
      .min(1024)
      .default(8 * 1024 * 1024),
  })
  .strict();

const modelSchema = z
  .object({
    provider: z.string(),
    /** The model name sent upstream; defaults to the alias itself. */
    model: z.string().optional(),
  })
  .strict();

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
    /** Parallel fetch loops per queue; more helps throughput when Redis round trips dominate. */
    fetchers_per_queue: z.number().int().min(1).max(16).default(2),
    lock_duration_ms: z.number().int().min(1_000).max(600_000).default(30_000),
    stalled_interval_ms: z.number().int().min(1_000).max(600_000).default(30_000),
    shutdown_grace_ms: z.number().int().min(0).max(600_000).default(30_000),
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
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    queue: queueSchema.default(queueSchema.parse({})),
    worker: workerSchema.default(workerSchema.parse({})),
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
    });
    for (const [alias, m] of Object.entries(cfg.models)) {
      if (!providerIds.has(m.provider)) {
        ctx.addIssue({
          code: "custom",
          path: ["models", alias, "provider"],
          message: `unknown provider '${m.provider}'`,
        });
      }
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

export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): SwitchyardConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; set SWITCHYARD_CONFIG to a readable file`,
    );
  }
  return parseConfig(text, env, path);
}

/** How long finished job records are kept, in ms. */
export const retentionMs = (cfg: Pick<SwitchyardConfig, "queue">): number =>
  Math.round(cfg.queue.retention_hours * 3_600_000);

/** How long a job may wait before it must have started (ttl_seconds can only shorten it), in ms. */
export const startWithinMs = (cfg: Pick<SwitchyardConfig, "queue">, ttlSeconds?: number): number =>
  Math.min(Math.round(cfg.queue.max_queue_age_hours * 3_600_000), (ttlSeconds ?? Infinity) * 1000);

/** SWITCHYARD_CONFIG, or the demo config of the repository an app's dist/ folder sits in. */
export const configPathFor = (explicit: string | undefined, appDistDir: string): string =>
  explicit ?? `${appDistDir}/../../../config/demo.yaml`;
