import express, { type Express } from "express";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import {
  notFound,
  priceBookFor,
  retentionMs,
  type LiveConfig,
  type SwitchyardConfig,
  type TenantConfig,
} from "@switchyard/core";
import { Counter, type Logger, type Registry, type Tracing } from "@switchyard/observability";
import { traceRequests } from "./http-trace";
import type { KeyPool } from "@switchyard/limiter";
import {
  AnswerCache,
  JobStreams,
  type FairQueue,
  type JobEvents,
  type JobProducer,
  type JobStore,
  type Keys,
  type Redis,
} from "@switchyard/queue";
import { accessLog } from "./access-log";
import { adminAuth, tenantAuth } from "./auth";
import { createFastPath, type FastPath } from "./fast-path";
import { errorHandler, REDIS_RETRY_AFTER_SECONDS } from "./errors";
import { httpMetrics, type HttpMetrics } from "./http-metrics";
import { JobService } from "./job-service";
import { UsageService } from "./usage-service";
import { BatchService } from "./batch-service";
import type { FollowDeps } from "./stream-follow";
import { WebhookService } from "./webhook-service";
import { WebhookStore, type AddressPolicy, type DeliveryQueue } from "@switchyard/webhooks";
import { webhooksRouter } from "./routes/webhooks";
import { adminRouter } from "./routes/admin";
import { jobsRouter } from "./routes/jobs";
import { compatRouter, providerKeyOf } from "./routes/compat";
import { TenantDirectory } from "./tenants";
import { signatureCheck } from "./signing";
import { ingressFor, ingressLimit } from "./ingress-limit";

/** What every version of the app shares: connections, queues, metrics; built once per process. */
export interface ApiInfra {
  live: LiveConfig;
  redis: Redis;
  /** Every other Redis client a request may need (the queues'): ready only when all answer. */
  otherRedis?: Redis[];
  keys: Keys;
  store: JobStore;
  producer: JobProducer;
  events: JobEvents;
  /** Streamed jobs' pub/sub wake-ups, for the drop-in endpoints and GET /v1/jobs/:id/stream. */
  streamEvents: JobEvents;
  deliveryQueue: DeliveryQueue;
  webhookPolicy: AddressPolicy;
  pool: KeyPool;
  fair: FairQueue;
  registry: Registry;
  metrics: ApiMetrics;
  tracing: Tracing;
  log: Logger;
  adminToken?: string;
}

/** Metrics every version of the app counts into (registered once). */
export interface ApiMetrics {
  enqueued: Counter<"tier">;
  http: HttpMetrics;
}

export function createApiMetrics(registry: Registry): ApiMetrics {
  return {
    enqueued: new Counter({
      name: "switchyard_jobs_enqueued_total",
      help: "Jobs accepted and queued, by tier",
      labelNames: ["tier"] as const,
      registers: [registry],
    }),
    http: httpMetrics(registry),
  };
}

const READY_TIMEOUT_MS = 800;

async function pingWithin(redis: Redis, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      redis.ping().then(
        () => true,
        () => false,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The app for one config version. A reload builds a new one and the server switches to it at
 * once; a request keeps the version it started on.
 */
export interface ApiApp {
  /** POST /v1/jobs and GET /v1/jobs/:id without Express (see fast-path.ts). */
  fast: FastPath;
  /** Everything else. */
  express: Express;
}

export function createApp(deps: ApiInfra, config: SwitchyardConfig): ApiApp {
  const { registry, log, redis, keys, store } = deps;
  const prices = priceBookFor(config, (msg, fields) => log.warn(fields, msg));
  const service = new JobService(
    config,
    redis,
    keys,
    store,
    deps.producer,
    deps.events,
    log,
    deps.fair,
    prices,
  );
  const webhooks = new WebhookService(
    config,
    new WebhookStore(redis, keys, config.webhooks),
    deps.deliveryQueue,
    deps.webhookPolicy,
  );
  const follow: FollowDeps = {
    streams: new JobStreams(redis, keys, retentionMs(config)),
    streamEvents: deps.streamEvents,
    statusEvents: deps.events,
    store,
  };
  const app = express();
  app.disable("x-powered-by");
  app.use(traceRequests(deps.tracing));
  // X-Forwarded-For is believed only from server.trusted_proxies (req.ip is the client then).
  app.set("trust proxy", config.server.trusted_proxies.length > 0 ? config.server.trusted_proxies : false);

  app.use(accessLog(log));
  app.use(deps.metrics.http.middleware);

  app.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  app.get("/readyz", async (_req, res) => {
    // A probe must get its answer well within a second: no waiting on a reconnecting client.
    const clients = [deps.redis, ...(deps.otherRedis ?? [])];
    const ready =
      clients.every((c) => c.status === "ready") &&
      (await Promise.all(clients.map((c) => pingWithin(c, READY_TIMEOUT_MS)))).every(Boolean);
    if (ready) res.json({ status: "ready" });
    else
      res
        .status(503)
        .set("retry-after", String(REDIS_RETRY_AFTER_SECONDS))
        .json({ status: "unavailable", reason: "Redis is not reachable" });
  });
  app.get("/metrics", async (_req, res) => {
    res.set("content-type", registry.contentType).send(await registry.metrics());
  });

  const enqueued = deps.metrics.enqueued;
  const directory = new TenantDirectory(config.tenants);
  // Health, readiness and metrics above answer before any ingress limit.
  const ingress = { ip: ingressFor(config, redis, "ip"), tenant: ingressFor(config, redis, "tenant") };
  app.use(ingressLimit(ingress.ip, "ip"));
  const tenantGate = [tenantAuth(directory), ingressLimit(ingress.tenant, "tenant")];
  const signatures = signatureCheck(redis, keys);
  app.use(jobsRouter(service, config, tenantGate, webhooks, signatures, follow));
  app.use(
    compatRouter({
      service,
      batches: new BatchService(config, redis, keys, service, store),
      follow,
      config,
      tenantGate: [tenantAuth(directory, providerKeyOf), ingressLimit(ingress.tenant, "tenant")],
      signatures,
      enqueued,
      maxBodyBytes: config.server.max_body_bytes,
    }),
  );
  app.use(webhooksRouter(webhooks, config, tenantGate, signatures));
  const usage = new UsageService(redis, keys);
  app.get("/v1/usage", ...tenantGate, signatures, async (req, res) => {
    res.json(await usage.report(res.locals.tenant as TenantConfig, req.query));
  });

  app.use(
    adminRouter(
      config,
      deps.live,
      deps.pool,
      deps.fair,
      deps.producer,
      new AnswerCache(redis, keys, config.cache),
      deps.adminToken,
    ),
  );

  const board = new ExpressAdapter();
  board.setBasePath("/admin/queues");
  createBullBoard({
    queues: [...deps.producer.queues.values(), deps.deliveryQueue.queue].map((q) => new BullMQAdapter(q)),
    serverAdapter: board,
  });
  app.use("/admin/queues", adminAuth(deps.adminToken), board.getRouter());

  app.use((req, _res, next) => next(notFound(`no route ${req.method} ${req.path}`)));
  app.use(errorHandler(log, config.server.max_body_bytes));
  const fast = createFastPath({
    config,
    log,
    directory,
    ingress,
    redis,
    keys,
    service,
    webhooks,
    enqueued,
    http: deps.metrics.http,
    tracing: deps.tracing,
  });
  return { fast, express: app };
}
