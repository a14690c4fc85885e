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
