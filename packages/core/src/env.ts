import { z } from "zod";
import { formatIssues } from "./config";

/** Every app parses its environment once, at start-up, with one of these schemas. */
export const logLevelSchema = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");
export const redisUrlSchema = z
  .string()
  .regex(/^rediss?:\/\//, "must start with redis:// or rediss://")
  .default("redis://127.0.0.1:6379");
export const portSchema = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

export function parseEnv<T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv = process.env): z.infer<T> {
  const result = schema.safeParse(env);
  if (!result.success) throw new Error(`invalid environment: ${formatIssues(result.error)}`);
  return result.data;
}
