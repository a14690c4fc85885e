import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "@switchyard/observability";

export type { Redis } from "ioredis";

export type RedisRole = "command" | "worker" | "subscriber";

/**
 * The one Redis client factory. Workers and subscribers must wait out a Redis outage instead
 * of failing commands (BullMQ requires maxRetriesPerRequest: null for its blocking calls);
 * the API's command client fails fast so a request gets a clear 503, not a hang.
 */
export function createRedis(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    lazyConnect: false,
    enableReadyCheck: true,
    maxRetriesPerRequest: role === "command" ? 2 : null,
    connectionName: `switchyard-${role}`,
    retryStrategy: (times) => Math.min(times * 200, 5_000),
    ...extra,
  });
}

/**
 * BullMQ and our records must never be evicted: a lost key is a lost job. Managed Redis may
 * forbid CONFIG, in which case we can only say we could not check.
 */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const reply = (await redis.config("GET", "maxmemory-policy")) as string[];
    const policy = reply[1];
    if (policy !== "noeviction") {
      log.warn(
        { policy },
        "Redis maxmemory-policy is not 'noeviction': jobs can be lost under memory pressure; set maxmemory-policy noeviction",
      );
    }
  } catch {
    log.warn("could not read Redis maxmemory-policy (CONFIG disabled?); make sure it is 'noeviction'");
  }
}
