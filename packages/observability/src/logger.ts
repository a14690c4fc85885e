import pino, { type Logger, type LoggerOptions } from "pino";

export type { Logger } from "pino";

/**
 * Paths pino blanks out wherever they appear in a log line. Secrets also never get logged on
 * purpose; this is the second line of defence for a stray object (a request, a config part).
 */
export const REDACT_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  "req.headers['x-api-key']",
  "req.headers['idempotency-key']",
  "headers.authorization",
  "authorization",
  "apiKey",
  "api_key",
  "api_keys",
  "secret",
  "*.apiKey",
  "*.api_key",
  "*.api_keys",
  "*.secret",
  "*.authorization",
  "config.tenants",
  "config.providers",
];

/**
 * How logs reach their file descriptor. Asynchronously: with pino's default synchronous writes, a
 * reader slower than the API (a pipe, a log shipper) made every request line spin in a busy wait
 * until the pipe drained (17% of the API's CPU in the ingest benchmark). And in chunks: each write
 * is a system call and a trip through libuv's thread pool, which cost ~8 µs of CPU per line when
 * lines went out one by one (an access line per request at a few thousand requests a second: ~10%
 * of the API's CPU in the e2e benchmark's profile). Lines wait until 4 KiB have gathered or 100 ms
 * have passed, whichever comes first; pino flushes what is left when the process exits (exit,
 * uncaught exception, a signal handler that exits). Only a SIGKILL can lose the last 100 ms.
 */
export const LOG_DESTINATION = { sync: false, minLength: 4096, periodicFlush: 100 } as const;

export function logDestination(dest: number | string = 1): ReturnType<typeof pino.destination> {
  return pino.destination({ dest, ...LOG_DESTINATION });
}

export function createLogger(
  name: string,
  level: string = process.env.LOG_LEVEL ?? "info",
  options: LoggerOptions = {},
): Logger {
  return pino(
    {
      name,
      level,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      base: { service: name, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      ...options,
    },
    logDestination(1),
  );
}

const LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace"]);
const noop = () => {};

/**
 * A child logger made only when something is logged at an enabled level: a job's logger is passed
 * everywhere but most jobs log nothing, and making a pino child serialises its bindings (a cost
 * per job that showed in the worker's profile).
 */
export function lazyChild(parent: Logger, bindings: Record<string, unknown>): Logger {
  let child: Logger | undefined;
  const real = (): Logger => (child ??= parent.child(bindings));
  return new Proxy(parent, {
    get(target, prop) {
      if (child === undefined && typeof prop === "string" && LEVELS.has(prop) && !target.isLevelEnabled(prop))
        return noop;
      const obj = real();
      const value: unknown = Reflect.get(obj, prop);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(obj) : value;
    },
  });
}
