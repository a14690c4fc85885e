import type { Socket } from "node:net";
import { Redis, type RedisOptions } from "ioredis";
import type { Logger } from "@switchyard/observability";

export type { Redis } from "ioredis";

/**
 * command:    request paths (the API, admin reads). Fails fast: no offline queue, no retries of a
 *             command whose connection dropped, and a command timeout, so a Redis outage is a
 *             quick 503 instead of a request hanging on reconnect loops.
 * worker:     BullMQ workers and queues in the worker; waits out an outage (BullMQ requires
 *             maxRetriesPerRequest: null for its blocking calls).
 * subscriber: pub/sub; waits out an outage and resubscribes.
 */
export type RedisRole = "command" | "worker" | "subscriber";

/** A command on a fail-fast client that has no answer after this long is given up. */
export const COMMAND_TIMEOUT_MS = 1_000;

export function createRedis(url: string, role: RedisRole, extra: RedisOptions = {}): Redis {
  const failFast: RedisOptions =
    role === "command"
      ? { maxRetriesPerRequest: 0, enableOfflineQueue: false, commandTimeout: COMMAND_TIMEOUT_MS }
      : { maxRetriesPerRequest: null };
  const redis = new Redis(url, {
    lazyConnect: false,
    enableReadyCheck: true,
    connectionName: `switchyard-${role}`,
    connectTimeout: 5_000,
    // Reconnect quickly at first, then every second at most: an outage ends as soon as Redis is back.
    retryStrategy: (times) => Math.min(times * 100, 1_000),
    ...failFast,
    ...extra,
  });
  redis.on("connect", () => coalesceWrites(redis));
  return redis;
}

/**
 * Coalesces the commands written to Redis during one turn of the event loop into one write: the
 * connection's socket is corked at the first write and uncorked once the turn's I/O callbacks
 * have run (setImmediate). With hundreds of requests and jobs in flight, each making a few
 * commands, this turns one syscall per command into one per loop turn, for this process and for
 * Redis (which then reads them in one go); a command waits at most for the callbacks already due.
 */
function coalesceWrites(redis: Redis): void {
  const stream = (redis as unknown as { stream?: Socket }).stream;
  if (!stream || CORKED.has(stream)) return;
  CORKED.add(stream);
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  let corked = false;
  const uncork = () => {
    corked = false;
    stream.uncork();
  };
  stream.write = ((...args: unknown[]) => {
    if (!corked) {
      corked = true;
      stream.cork();
      setImmediate(uncork);
    }
    return write(...args);
  }) as Socket["write"];
}
const CORKED = new WeakSet<Socket>();

/** Resolves once the client is connected; logs what to do while it is not. */
export async function waitForRedis(redis: Redis, log: Logger, what = "Redis"): Promise<void> {
  if (redis.status === "ready") return;
  const warn = setInterval(
    () =>
      log.warn(
        `waiting for ${what} (${redis.options.host}:${redis.options.port}); is redis-server running? check REDIS_URL`,
      ),
    5_000,
  );
  try {
    await new Promise<void>((resolve) => redis.once("ready", () => resolve()));
  } finally {
    clearInterval(warn);
  }
}

const UNAVAILABLE_MESSAGES = [
  "Stream isn't writeable",
  "Connection is closed",
  "Command timed out",
  "Reached the max retries per request limit",
  "None of startup nodes is available",
  "Failed to refresh slots cache",
  "Connection in subscriber mode",
];
const UNAVAILABLE_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTCONN",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);
/** Redis replies that mean "not now" rather than "you asked wrongly". */
const UNAVAILABLE_REPLIES = /^(LOADING|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|BUSY|OOM)\b/;

/**
 * True when an error means Redis could not be reached or could not serve right now (down,
 * reconnecting, timed out, loading, out of memory): the caller should answer 503 and retry later.
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) return true;
  if (err.name === "MaxRetriesPerRequestError" || err.name === "ClusterAllFailedError") return true;
  if (UNAVAILABLE_MESSAGES.some((m) => err.message.includes(m))) return true;
  if (err.name === "ReplyError" && UNAVAILABLE_REPLIES.test(err.message)) return true;
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err && isRedisUnavailable(cause);
}

/**
 * BullMQ and our records must never be evicted: a lost key is a lost job. Managed Redis may
 * forbid CONFIG, in which case we can only say we could not check.
 */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const reply: unknown = await redis.config("GET", "maxmemory-policy");
    const policy = Array.isArray(reply) ? reply[1] : undefined;
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
