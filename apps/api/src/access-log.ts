import { randomUUID } from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import type { Logger } from "@switchyard/observability";

/**
 * Request ids and the access log, shared by the Express app and the fast path. One line per
 * request when it is done, from the process's logger: no child logger per request and no header
 * serialisation (both cost more than the request itself at ingest rates; headers that are never
 * logged cannot leak either).
 */
const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** Probes and scrapes would drown everything else. */
const QUIET = new Set(["/healthz", "/readyz", "/metrics"]);

/** The caller's x-request-id when it is a sane one, else a new one. */
export function requestId(incoming: string | string[] | undefined): string {
  return typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

export interface Completed {
  id: string;
  method: string;
  url: string;
  status: number;
  ms: number;
  tenant?: unknown;
}

/**
 * The access logger: the process's logger without its redaction paths. An access line holds only
 * what is built here (id, method, URL with any ?key= removed, status, time, tenant id), so the
 * redaction pass (more than half of a line's cost) has nothing to find in it.
 */
const accessLoggers = new WeakMap<Logger, Logger>();
function accessLogger(log: Logger): Logger {
  let a = accessLoggers.get(log);
  if (!a) {
    a = log.child({}, { redact: { paths: [] } });
    accessLoggers.set(log, a);
  }
  return a;
}

export function logRequest(log: Logger, r: Completed): void {
  if (QUIET.has(r.url) || !log.isLevelEnabled("info")) return;
  accessLogger(log).info(
    {
      // Gemini's SDKs may send the API key as ?key=: never into the log.
      req: { id: r.id, method: r.method, url: r.url.replace(/([?&]key=)[^&]*/gi, "$1[redacted]") },
      res: { statusCode: r.status },
      responseTime: Math.round(r.ms),
      ...(typeof r.tenant === "string" ? { tenant: r.tenant } : {}),
    },
    "request completed",
  );
}

/** The request's id (set by accessLog): it travels with the job as trace_id. */
export const requestIdOf = (res: Response): string => String(res.locals.requestId);

/** Express middleware: request id in and out, and the access line when the answer is done. */
export function accessLog(log: Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const start = performance.now();
    const id = requestId(req.headers["x-request-id"]);
    res.locals.requestId = id;
    res.setHeader("x-request-id", id);
    res.on("finish", () =>
      logRequest(log, {
        id,
        method: req.method,
        url: req.originalUrl,
        status: res.statusCode,
        ms: performance.now() - start,
        tenant: (res.locals.tenant as { id?: unknown } | undefined)?.id,
      }),
    );
    next();
  };
}
