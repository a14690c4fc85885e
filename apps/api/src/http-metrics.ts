import type { NextFunction, Request, Response } from "express";
import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchyard/observability";

/** HTTP request count and latency by route pattern (never the raw path: ids would explode it). */
export function httpMetrics(registry: Registry) {
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
  return (req: Request, res: Response, next: NextFunction): void => {
    const start = process.hrtime.bigint();
    res.on("finish", () => {
      const routePath = (req.route as { path?: string } | undefined)?.path;
      const route = routePath ?? (req.originalUrl.startsWith("/admin/") ? "/admin/queues/*" : "unmatched");
      const labels = { method: req.method, route, status: String(res.statusCode) };
      requests.inc(labels);
      latency.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
    });
    next();
  };
}
