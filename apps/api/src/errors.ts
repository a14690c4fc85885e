import type { NextFunction, Request, Response } from "express";
import { ApiError } from "@switchyard/core";
import type { Logger } from "@switchyard/observability";

interface BodyParserError {
  type?: string;
  status?: number;
  expose?: boolean;
}

/**
 * Maps errors to answers. Client mistakes get 4xx with a message that says what to fix;
 * anything unexpected is logged with the request id and answered with a generic 500.
 */
export function errorHandler(log: Logger, maxBodyBytes: number) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const e = toApiError(err, maxBodyBytes);
    if (e.status >= 500) {
      (req.log ?? log).error({ err }, "request failed");
    }
    if (res.headersSent) return;
    if (e.headers) res.set(e.headers);
    res.status(e.status).json(e.toBody());
  };
}

function toApiError(err: unknown, maxBodyBytes: number): ApiError {
  if (err instanceof ApiError) return err;
  const bp = err as BodyParserError;
  switch (bp?.type) {
    case "entity.too.large":
      return new ApiError(413, "request_too_large", `request body is larger than ${maxBodyBytes} bytes`);
    case "entity.parse.failed":
      return new ApiError(400, "invalid_request_error", "request body is not valid JSON");
    case "encoding.unsupported":
    case "charset.unsupported":
      return new ApiError(415, "invalid_request_error", "send the body as UTF-8 JSON");
    case "request.aborted":
      return new ApiError(400, "invalid_request_error", "request body was not received completely");
  }
  if (bp && bp.expose && typeof bp.status === "number" && bp.status >= 400 && bp.status < 500) {
    return new ApiError(bp.status, "invalid_request_error", (err as Error).message);
  }
  return new ApiError(
    500,
    "internal_error",
    "internal error; the request id in the x-request-id header helps us find it",
  );
}
