import { Router, type Request, type RequestHandler, type Response } from "express";
import {
  badRequest,
  JOB_ID_PATTERN,
  notFound,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import type { JobService } from "../job-service";
import type { WebhookService } from "../webhook-service";
import { jsonBody } from "../signing";
import { abortSignalOf, startSse } from "../sse";
import { followStream, type FollowDeps } from "../stream-follow";

/** An SSE comment keeps proxies from closing a quiet stream. */
const SSE_HEARTBEAT_MS = 15_000;

/** A job id from a URL, or a 404 for one that cannot be a job's. */
export function checkJobId(id: string): string {
  if (!JOB_ID_PATTERN.test(id)) throw notFound(`no job ${id.slice(0, 64)}`);
  return id;
}

/**
 * /v1/jobs/:id's events, stream, deliveries and cancel (submit and read are the fast path's).
 * Routes carry their full paths so metrics see the pattern. Auth runs before the body is parsed:
 * strangers cannot make us read a megabyte.
 */
export function jobsRouter(
  service: JobService,
  config: SwitchyardConfig,
  tenantGate: RequestHandler[],
  webhooks: WebhookService,
  signatures: RequestHandler,
  follow: FollowDeps,
): Router {
  const router = Router();
  router.use("/v1/jobs", ...tenantGate, jsonBody(config), signatures);

  const tenantOf = (res: Response): TenantConfig => res.locals.tenant as TenantConfig;
  const jobIdOf = (req: Request): string => checkJobId(String(req.params.id));

  // POST /v1/jobs and GET /v1/jobs/:id are served by the fast path (fast-path.ts).

  /** Server-sent events: the job as GET shows it, now and at every status change, until it ends. */
  router.get("/v1/jobs/:id/events", async (req, res) => {
    const tenant = tenantOf(res);
    const id = jobIdOf(req);
    await service.get(tenant, id); // 404 as JSON, before the stream starts
    startSse(res);
    const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), SSE_HEARTBEAT_MS);
    let seq = 0;
    try {
      await service.watch(tenant, id, abortSignalOf(req, res), (job) => {
        seq += 1;
        res.write(`id: ${seq}\nevent: status\ndata: ${JSON.stringify(job)}\n\n`);
      });
    } finally {
      clearInterval(heartbeat);
      res.end();
    }
  });

  /**
   * A streamed job's answer as server-sent events, from the start or after Last-Event-ID:
   * `delta` ({text}) for each piece, then `end` ({finish_reason, provider, model, usage}) or
   * `error` ({status, type, message}). Each event's id is its place in the stream.
   */
  router.get("/v1/jobs/:id/stream", async (req, res) => {
    const tenant = tenantOf(res);
    const id = jobIdOf(req);
    const rec = await service.record(tenant, id);
    if (!rec.streamed)
      throw notFound(`job ${id} was not submitted with streaming; GET /v1/jobs/${id} has its answer`);
    const after = req.get("last-event-id") ?? "0";
    if (after !== "0" && !/^\d{1,20}-\d{1,20}$/.test(after))
      throw badRequest("Last-Event-ID must be an event id this stream sent", [
        { path: "header.last-event-id", message: "invalid" },
      ]);
    startSse(res);
    const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), SSE_HEARTBEAT_MS);
    try {
      await followStream(
        follow,
        id,
        after,
        abortSignalOf(req, res),
        Date.now() + config.server.sync_timeout_seconds * 1000,
        (e) => {
          const data = e.kind === "delta" ? { text: e.text } : e.data;
          res.write(`id: ${e.id}\nevent: ${e.kind}\ndata: ${JSON.stringify(data)}\n\n`);
        },
      );
    } finally {
      clearInterval(heartbeat);
      res.end();
    }
  });

  router.get("/v1/jobs/:id/deliveries", async (req, res) => {
    const tenant = tenantOf(res);
    const id = jobIdOf(req);
    await service.get(tenant, id);
    res.json({ object: "list", data: await webhooks.jobDeliveries(tenant, id) });
  });

  router.delete("/v1/jobs/:id", async (req, res) => {
    const tenant = tenantOf(res);
    const { job, final } = await service.cancel(tenant, jobIdOf(req), abortSignalOf(req, res));
    res.status(final ? 200 : 202).json(job);
  });

  return router;
}
