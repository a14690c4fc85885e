import { logLevelSchema, parseEnv, redisUrlSchema } from "@switchyard/core";
import { z } from "zod";

/** The worker's whole environment, parsed once at start-up. */
export const workerEnvSchema = z.object({
  REDIS_URL: redisUrlSchema,
  SWITCHYARD_CONFIG: z.string().min(1).optional(),
  LOG_LEVEL: logLevelSchema,
  /** Hosts or CIDRs, comma-separated, that webhooks may reach although they are internal. */
  SWITCHYARD_WEBHOOK_ALLOWLIST: z.string().optional(),
  /** Serves /metrics and /healthz when set (0 picks a free port); unset, no HTTP listener. */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
});
export type WorkerEnv = z.infer<typeof workerEnvSchema>;
export const loadWorkerEnv = (env: NodeJS.ProcessEnv = process.env): WorkerEnv =>
  parseEnv(workerEnvSchema, env);
