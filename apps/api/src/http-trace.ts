import type { NextFunction, Request, RequestHandler, Response } from "express";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
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
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const span = tracing.tracer.startSpan(
      req.method,
      {
        kind: SpanKind.SERVER,
        attributes: { [ATTR_HTTP_REQUEST_METHOD]: req.method, [ATTR_URL_PATH]: req.path },
      },
      parent,
    );
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      const route = (req.route as { path?: string } | undefined)?.path;
      if (route) {
        span.updateName(`${req.method} ${route}`);
        span.setAttribute(ATTR_HTTP_ROUTE, route);
      }
      span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, res.statusCode);
      const tenant = (res.locals.tenant as { id?: unknown } | undefined)?.id;
      if (typeof tenant === "string") span.setAttribute("switchyard.tenant", tenant);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    };
    res.on("finish", end);
    res.on("close", end);
    context.with(trace.setSpan(parent, span), next);
  };
}
