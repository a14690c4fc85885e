import { z } from "zod";

/** The public API's shapes (OpenAI chat format plus Switchyard's job fields). */

export const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled", "expired"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "succeeded",
  "failed",
  "cancelled",
  "expired",
]);
export const isTerminal = (s: string): boolean => TERMINAL_STATUSES.has(s as JobStatus);

export const PRIORITIES = ["high", "normal", "low"] as const;
export type Priority = (typeof PRIORITIES)[number];

const textPart = z.object({ type: z.literal("text"), text: z.string() }).strict();

export const chatMessageSchema = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant"]),
    content: z.union([z.string(), z.array(textPart).min(1)]),
    name: z.string().max(64).optional(),
  })
  .strict();
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** The text of a message, whether sent as a string or as text parts. */
export const messageText = (m: ChatMessage): string =>
  typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("");

/**
 * The first own "__proto__" key anywhere in a parsed JSON value, as a path. JSON.parse makes it an
 * ordinary own key, but schema parsers and object spreads drop it (or worse, treat it as the
 * prototype): such input is refused, never silently dropped. The path is built only for a key
 * found (on the way back): every submission's body is walked, and copying the path at every
 * level was ~2.5% of the API's allocations.
 */
export function findProtoKey(value: unknown, depth = 0): (string | number)[] | undefined {
  if (value === null || typeof value !== "object" || depth > 64) return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = findProtoKey(value[i], depth + 1);
      if (found) {
        found.unshift(i);
        return found;
      }
    }
    return undefined;
  }
  if (Object.hasOwn(value, "__proto__")) return ["__proto__"];
  for (const k in value) {
    if (!Object.hasOwn(value, k)) continue;
    const found = findProtoKey((value as Record<string, unknown>)[k], depth + 1);
    if (found) {
      found.unshift(k);
      return found;
    }
  }
  return undefined;
}

const noProtoKey = z.unknown().superRefine((v, ctx) => {
  const at = findProtoKey(v);
  if (at) ctx.addIssue({ code: "custom", path: at, message: "'__proto__' is not allowed as a key" });
});

const metadataSchema = noProtoKey
  .pipe(z.record(z.string().max(64), z.union([z.string().max(512), z.number(), z.boolean(), z.null()])))
  .refine((m) => Object.keys(m).length <= 16, "at most 16 metadata keys");

export const createJobRequestSchema = z
  .object({
    model: z.string().min(1).max(200),
    messages: z.array(chatMessageSchema).min(1).max(1000),
    max_tokens: z.number().int().min(1).max(1_000_000).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().min(0).max(1).optional(),
    stop: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(4)]).optional(),
    user: z.string().max(256).optional(),
    /** A hint for route rules (e.g. "classify", "summarize"); never sent upstream. */
    task: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "letters, digits and _ . : -, at most 64")
      .optional(),
    priority: z.enum(PRIORITIES).default("normal"),
    /** false: neither read nor write the answer cache for this job. */
    cache: z.boolean().optional(),
    webhook: z.object({ url: z.url() }).strict().optional(),
    metadata: metadataSchema.optional(),
    ttl_seconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 24 * 3600)
      .optional(),
  })
  .strict();
export type CreateJobRequest = z.infer<typeof createJobRequestSchema>;

/** What the upstream call needs: the request less Switchyard's own fields. */
export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  user?: string;
}

export interface Usage {
  /** Every input token, cached ones included. */
  input_tokens: number;
  output_tokens: number;
  /** Input tokens the provider served from its prompt cache (priced apart), where it says so. */
  cached_input_tokens?: number;
  /** What the job cost upstream, from the price table or the config's prices; absent: unknown price. */
  cost_usd?: number;
}

export const usageSchema = z.object({
  input_tokens: z.number().int().min(0),
  output_tokens: z.number().int().min(0),
  cached_input_tokens: z.number().int().min(0).optional(),
  cost_usd: z.number().min(0).optional(),
});

/**
 * One upstream attempt of a job, in order: which provider and model, how it ended, how long it
 * took. "skipped" means the link was passed over without a call (its circuit was open).
 */
export const attemptSchema = z.object({
  provider: z.string(),
  model: z.string(),
  outcome: z.enum(["succeeded", "failed", "skipped"]),
  /** The error kind (server, timeout, rate_limit, circuit_open, ...) when it did not succeed. */
  error_type: z.string().optional(),
  /** The upstream's HTTP status, when it answered. */
  status: z.number().int().optional(),
  duration_ms: z.number().int().min(0),
  /** Unix seconds with millisecond fractions. */
  started_at: z.number(),
});
export type Attempt = z.infer<typeof attemptSchema>;
/** A job keeps at most this many attempts in its history (the newest). */
export const MAX_ATTEMPT_HISTORY = 64;

/** A job admission sent to a cheaper route while its tier's estimated wait was too long. */
export const degradedSchema = z
  .object({
    /** The model the client asked for. */
    from: z.string(),
    /** The route it was sent to instead. */
    to: z.string(),
    /** The estimated wait (seconds) that triggered it. */
    estimated_wait_seconds: z.number().min(0),
    max_tokens_cap: z.number().int().optional(),
  })
  .strict();
export type Degraded = z.infer<typeof degradedSchema>;

export const jobResultSchema = z.object({
  output_text: z.string(),
  finish_reason: z.string(),
  provider: z.string(),
  model: z.string(),
  /** The route alias that served the job (differs from `model` when a rule picked it). */
  route: z.string().optional(),
  /** Served from the answer cache: how, and how old the entry was; coalesced when this job
   * waited for an identical one that was running. */
  cache: z
    .object({
      hit: z.literal(true),
      kind: z.enum(["exact", "semantic"]),
      key_age_seconds: z.number(),
      /** Semantic hits: the cosine similarity of the prompt to the cached one. */
      similarity: z.number().optional(),
      coalesced: z.boolean().optional(),
    })
    .optional(),
  attempts: z.array(attemptSchema).optional(),
  /** Admission sent the job to a cheaper route (admission.<tier>.degrade). */
  degraded: degradedSchema.optional(),
});
export type JobResult = z.infer<typeof jobResultSchema>;

export const jobErrorSchema = z.object({
  type: z.string(),
  message: z.string(),
  status: z.number().int().optional(),
  provider: z.string().optional(),
  model: z.string().optional(),
  attempts: z.array(attemptSchema).optional(),
  /** Answered from the negative cache (the same exact request got this 400 a moment ago). */
  cache: z
    .object({ hit: z.literal(true), kind: z.literal("negative"), key_age_seconds: z.number() })
    .optional(),
});
export type JobError = z.infer<typeof jobErrorSchema>;

/** GET /v1/jobs/:id. Times are Unix seconds with millisecond fractions. */
export interface JobView {
  id: string;
  object: "job";
  status: JobStatus;
  model: string;
  priority: Priority;
  attempts: number;
  created_at: number;
  started_at?: number;
  finished_at?: number;
  result?: JobResult;
  error?: JobError;
  usage?: Usage;
  metadata?: Record<string, string | number | boolean | null>;
  cancel_requested?: boolean;
  /** Admission sent the job to a cheaper route (admission.<tier>.degrade). */
  degraded?: Degraded;
  /** On the 202 only: the estimated wait before the job starts (null: not measured yet). */
  estimated_start_seconds?: number | null;
}
