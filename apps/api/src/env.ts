import { logLevelSchema, parseEnv, portSchema, redisUrlSchema } from "@switchyard/core";
import { z } from "zod";

/** The API's whole environment, parsed once at start-up. */
export const apiEnvSchema = z.object({
  PORT: portSchema(8080),
  HOST: z.string().default("0.0.0.0"),
  REDIS_URL: redisUrlSchema,
  SWITCHYARD_CONFIG: z.string().min(1).optional(),
  SWITCHYARD_ADMIN_TOKEN: z.string().min(8, "use at least 8 characters").optional(),
  LOG_LEVEL: logLevelSchema,
  /** Hosts or CIDRs, comma-separated, that webhooks may reach although they are internal. */
  SWITCHYARD_WEBHOOK_ALLOWLIST: z.string().optional(),
});
export type ApiEnv = z.infer<typeof apiEnvSchema>;

export const loadApiEnv = (env: NodeJS.ProcessEnv = process.env): ApiEnv => parseEnv(apiEnvSchema, env);
