import type { NextFunction, Request, Response } from "express";
import { ApiError } from "@switchyard/core";
import type { Logger } from "@switchyard/observability";
import { isRedisUnavailable } from "@switchyard/queue";

/** What body-parser, the router and other http-errors producers attach to their errors. */
interface HttpishError {
  type?: unknown;
  status?: unknown;
  statusCode?: unknown;
  expose?: unknown;
}

/** How long a client should wait before retrying when Redis is unreachable. */
export const REDIS_RETRY_AFTER_SECONDS = 2;

export const redisUnavailable = (): ApiError =>
  new ApiError(
    503,
    "service_unavailable",
    "the job store (Redis) is unreachable; nothing was changed, retry after the Retry-After delay",
    undefined,
    { "retry-after": String(REDIS_RETRY_AFTER_SECONDS) },
  );

/** The answers to a body or URL that cannot be read, shared by Express's path and the fast path. */
export const bodyErrors = {
  tooLarge: (max: number) =>
    new ApiError(413, "request_too_large", `request body is larger than ${max} bytes`),
  notJson: () => new ApiError(400, "invalid_request_error", "request body is not valid JSON"),
  notUtf8: () => new ApiError(415, "invalid_request_error", "send the body as UTF-8 JSON"),
  incomplete: () => new ApiError(400, "invalid_request_error", "request body was not received completely"),
  badPath: () => new ApiError(400, "invalid_request_error", "the URL path is not valid percent-encoding"),
};

/**
 * Logs what a failed request's answer calls for: an unexpected error (5xx but 503) in full, a 503
 * (Redis away) as one warning line; client errors are in the access line only.
 */
export function logFailure(log: Logger, err: unknown, e: ApiError, fields: Record<string, unknown>): void {
  if (e.status >= 500 && e.status !== 503) log.error({ err, ...fields }, "request failed");
  else if (e.status === 503)
    log.warn(
      { err: { message: (err as Error)?.message }, ...fields },
      "request refused: service unavailable",
    );
}

/**
 * Maps errors to answers. Client mistakes get 4xx with a message that says what to fix; Redis
 * being unreachable is a 503 with Retry-After; anything else unexpected is logged with the
 * request id and answered with a generic 500.
 */
export function errorHandler(log: Logger, maxBodyBytes: number) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const e = toApiError(err, maxBodyBytes);
    logFailure(log, err, e, {
      reqId: res.locals.requestId as unknown,
      ...(e.status >= 500 && e.status !== 503 ? { url: req.originalUrl.split("?", 1)[0] } : {}),
    });
    if (res.headersSent) {
      // A stream already started: all we can do is end it.
      res.end();
      return;
    }
    if (e.headers) res.set(e.headers);
    res.status(e.status).json(e.toBody());
  };
}

export function toApiError(err: unknown, maxBodyBytes: number): ApiError {
  if (err instanceof ApiError) return err;
  if (isRedisUnavailable(err)) return redisUnavailable();
  const h: HttpishError = err !== null && typeof err === "object" ? (err as HttpishError) : {};
  switch (h.type) {
    case "entity.too.large":
      return bodyErrors.tooLarge(maxBodyBytes);
    case "entity.parse.failed":
      return bodyErrors.notJson();
    case "encoding.unsupported":
    case "charset.unsupported":
      return bodyErrors.notUtf8();
    case "request.aborted":
      return bodyErrors.incomplete();
  }
  // The router's URIError (a malformed %-escape in the path) carries status 400 without `expose`:
  // every client error keeps its status; only exposed ones keep their message.
  const status = typeof h.status === "number" ? h.status : h.statusCode;
  if (typeof status === "number" && status >= 400 && status < 500) {
    if (err instanceof URIError) return bodyErrors.badPath();
    const message = h.expose === true && err instanceof Error ? err.message : "the request is not valid";
    return new ApiError(status, "invalid_request_error", message);
  }
  return new ApiError(
    500,
    "internal_error",
    "internal error; the request id in the x-request-id header helps us find it",
  );
}
