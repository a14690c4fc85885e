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
 * Logs go to stdout asynchronously: with pino's default synchronous writes, a reader slower than
 * the API (a pipe, a log shipper) made every request line spin in a busy wait until the pipe
 * drained (17% of the API's CPU in the ingest benchmark). Pino flushes what is buffered when the
 * process exits.
 */
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
    pino.destination({ dest: 1, sync: false }),
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
