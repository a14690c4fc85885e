import type { NextFunction, Request, Response } from "express";
import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchyard/observability";

/** HTTP request count and latency by route pattern (never the raw path: ids would explode it). */
export interface HttpMetrics {
  record(method: string, route: string, status: number, seconds: number): void;
  /** The same, as Express middleware (the route pattern known once the request is done). */
  middleware: (req: Request, res: Response, next: NextFunction) => void;
}

export function httpMetrics(registry: Registry): HttpMetrics {
  const requests = new Counter({
    name: "switchyard_http_requests_total",
    help: "HTTP requests answered, by method, route pattern and status",
    labelNames: ["method", "route", "status"],
    registers: [registry],
  });
  const latency = new Histogram({
    name: "switchyard_http_request_duration_seconds",
    help: "Time to answer HTTP requests, by method, route pattern and status",
    labelNames: ["method", "route", "status"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const record = (method: string, route: string, status: number, seconds: number) => {
    const labels = { method, route, status: String(status) };
    requests.inc(labels);
    latency.observe(labels, seconds);
  };
  return {
    record,
    middleware: (req, res, next) => {
      const start = process.hrtime.bigint();
      res.on("finish", () => {
        const routePath = (req.route as { path?: string } | undefined)?.path;
        const route = routePath ?? (req.originalUrl.startsWith("/admin/") ? "/admin/queues/*" : "unmatched");
        record(req.method, route, res.statusCode, Number(process.hrtime.bigint() - start) / 1e9);
      });
      next();
    },
  };
}
