import type { IncomingHttpHeaders } from "node:http";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Tracing,
} from "@switchyard/observability";
import {
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_URL_PATH,
} from "@opentelemetry/semantic-conventions";

/**
 * A SERVER span per HTTP request, continuing an incoming W3C traceparent: everything the request
 * does (the job's record, its enqueue, the wait for it) is in it, and the job carries its context
 * on to the worker. The path is recorded without its query (Gemini's SDKs may put the key there);
 * the route pattern names the span once it is known. With tracing off this is a pass-through.
 */
export function traceRequests(tracing: Tracing): RequestHandler {
  if (!tracing.enabled) return (_req, _res, next) => next();
  return (req: Request, res: Response, next: NextFunction): void => {
    const span = startServerSpan(tracing, req.method, req.path, req.headers);
    const end = () =>
      span.end(
        (req.route as { path?: string } | undefined)?.path,
        res.statusCode,
        (res.locals.tenant as { id?: unknown } | undefined)?.id,
      );
    res.on("finish", end);
    res.on("close", end);
    context.with(span.context, next);
  };
}

export interface ServerSpan {
  /** The request's context, with the span in it: run its work in it. */
  context: Context;
  /** Ends the span once (later calls do nothing) with the route pattern, status and tenant. */
  end(route: string | undefined, status: number, tenant: unknown): void;
}

/** A SERVER span continuing the request's traceparent (tracing must be on). */
export function startServerSpan(
  tracing: Tracing,
  method: string,
  path: string,
  headers: IncomingHttpHeaders,
): ServerSpan {
  const parent = propagation.extract(ROOT_CONTEXT, headers);
  const span = tracing.tracer.startSpan(
    method,
    { kind: SpanKind.SERVER, attributes: { [ATTR_HTTP_REQUEST_METHOD]: method, [ATTR_URL_PATH]: path } },
    parent,
  );
  let ended = false;
  return {
    context: trace.setSpan(parent, span),
    end(route, status, tenant) {
      if (ended) return;
      ended = true;
      if (route) {
        span.updateName(`${method} ${route}`);
        span.setAttribute(ATTR_HTTP_ROUTE, route);
      }
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, status);
      if (typeof tenant === "string") span.setAttribute("switchyard.tenant", tenant);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    },
  };
}
