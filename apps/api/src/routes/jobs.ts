import { Router, type Request, type RequestHandler, type Response } from "express";
import {
  badRequest,
  JOB_ID_PATTERN,
  notFound,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import type { Counter } from "@switchyard/observability";
import { cacheDirectives, parseCreateJob, type JobService } from "../job-service";
import type { WebhookService } from "../webhook-service";
import { jsonBody } from "../signing";
import { abortSignalOf, startSse } from "../sse";
import { followStream, type FollowDeps } from "../stream-follow";

/** An SSE comment keeps proxies from closing a quiet stream. */
const SSE_HEARTBEAT_MS = 15_000;

/**
 * /v1/jobs: submit, read (with ?wait= long-poll), cancel. Routes carry their full paths so
 * metrics see the pattern. Auth runs before the body is parsed: strangers cannot make us
 * read a megabyte.
 */
export function jobsRouter(
  service: JobService,
  config: SwitchyardConfig,
  tenantGate: RequestHandler[],
  enqueued: Counter<"tier">,
  webhooks: WebhookService,
  signatures: RequestHandler,
  follow: FollowDeps,
): Router {
  const router = Router();
  router.use("/v1/jobs", ...tenantGate, jsonBody(config), signatures);

  const tenantOf = (res: Response): TenantConfig => res.locals.tenant as TenantConfig;
  const jobIdOf = (req: Request): string => {
    const id = String(req.params.id);
    if (!JOB_ID_PATTERN.test(id)) throw notFound(`no job ${id.slice(0, 64)}`);
    return id;
  };

  router.post("/v1/jobs", async (req, res) => {
    const tenant = tenantOf(res);
    const body = parseCreateJob(req.body, config);
    if (body.webhook) await webhooks.checkJobWebhook(tenant, body.webhook.url);
    const key = req.get("idempotency-key");
    const { job, replayed } = await service.submit(tenant, body, String(req.id), {
      idempotencyKey: key,
      cache: cacheDirectives(req.get("cache-control")),
    });
    if (!replayed) enqueued.inc({ tier: tenant.tier });
    res.set("location", `/v1/jobs/${job.id}`);
    if (replayed) res.set("idempotent-replayed", "true");
    res.status(replayed ? 200 : 202).json(job);
  });

  router.get("/v1/jobs/:id", async (req, res) => {
    const tenant = tenantOf(res);
    const id = jobIdOf(req);
    let waitMs = 0;
    if (req.query.wait !== undefined) {
      const raw = String(req.query.wait);
      const n = Number(raw);
      if (!/^\d+(\.\d+)?$/.test(raw) || n > config.server.max_wait_seconds) {
        throw badRequest(`wait must be a number of seconds from 0 to ${config.server.max_wait_seconds}`, [
          { path: "query.wait", message: "invalid" },
        ]);
      }
      waitMs = Math.round(n * 1000);
    }
    const job = await service.waitForTerminal(tenant, id, waitMs, abortSignalOf(req, res));
    res.json(job);
  });

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
