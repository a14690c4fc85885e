import { createServer } from "node:http";
import { resolve } from "node:path";
import { configPathFor, LiveConfig, RELOAD_RESULTS } from "@switchyard/core";
import { KeyPool } from "@switchyard/limiter";
import { configMetrics, createLogger, createRegistry, startTracing } from "@switchyard/observability";
import {
  checkEvictionPolicy,
  createRedis,
  FairQueue,
  JobEvents,
  JobProducer,
  JobStore,
  Keys,
  streamEvents,
  waitForRedis,
} from "@switchyard/queue";
import { AddressPolicy, DeliveryQueue } from "@switchyard/webhooks";
import { createApiMetrics, createApp, type ApiApp, type ApiInfra } from "./app";
import { loadApiEnv } from "./env";
import { fleetMetrics } from "./fleet-metrics";

async function main(): Promise<void> {
  const env = loadApiEnv();
  const log = createLogger("api", env.LOG_LEVEL);
  const tracing = await startTracing("api");
  if (tracing.enabled) log.info("tracing on: spans go to OTEL_EXPORTER_OTLP_ENDPOINT over OTLP/HTTP");
  const path = resolve(configPathFor(env.SWITCHYARD_CONFIG, __dirname));
  const live = LiveConfig.open(path);
  const config = live.config;
  log.info(
    {
      path,
      hash: live.current.hash,
      tenants: config.tenants.length,
      models: Object.keys(config.models).length,
    },
    "config loaded",
  );

  // Both request-path clients fail fast (a Redis outage is a quick 503); BullMQ's Queue makes
  // no blocking calls, so it can share that behaviour. Only the subscriber waits outages out.
  const redis = createRedis(env.REDIS_URL, "command");
  const bullConnection = createRedis(env.REDIS_URL, "command", { connectionName: "switchyard-queue" });
  const subscriber = createRedis(env.REDIS_URL, "subscriber");
  // The subscriber too: a SUBSCRIBE sent before its ready check has run makes ioredis refuse
  // that check (the connection is in subscriber mode) and the subscription fails.
  await Promise.all([
    waitForRedis(redis, log),
    waitForRedis(bullConnection, log),
    waitForRedis(subscriber, log, "Redis (subscriber)"),
  ]);
  await checkEvictionPolicy(redis, log);

  // The key prefix never changes while the process runs (a reload keeps it: restart_required).
  const keys = new Keys(config.queue.prefix);
  const events = new JobEvents(subscriber, (jobId) => keys.jobEvents(jobId));
  const streamed = streamEvents(subscriber, keys);
  const registry = createRegistry("api");
  const producer = new JobProducer(bullConnection, config, tracing.bullmq);
  const deliveryQueue = new DeliveryQueue(bullConnection, config, tracing.bullmq);
  const infra: ApiInfra = {
    live,
    redis,
    otherRedis: [bullConnection],
    keys,
    store: new JobStore(redis, keys),
    producer,
    events,
    streamEvents: streamed,
    deliveryQueue,
    webhookPolicy: AddressPolicy.fromEnv(env.SWITCHYARD_WEBHOOK_ALLOWLIST),
    pool: new KeyPool(redis, keys),
    fair: new FairQueue(redis, keys),
    registry,
    metrics: createApiMetrics(registry),
    tracing,
    log,
    ...(env.SWITCHYARD_ADMIN_TOKEN ? { adminToken: env.SWITCHYARD_ADMIN_TOKEN } : {}),
  };
  fleetMetrics(
    {
      config: () => live.config,
      redis,
      keys,
      pool: infra.pool,
      fair: infra.fair,
      queues: () => [...producer.queues.values(), deliveryQueue.queue],
    },
    registry,
  );
  configMetrics(registry, live, RELOAD_RESULTS);

  // Hot reload: a new config builds a whole new app (auth, routes, limits, admission, quotas);
  // only when that worked does the server switch to it. A request keeps the app it started on.
  let app: ApiApp = createApp(infra, config);
  live.prepare((next) => {
    producer.addQueues(next); // the new app's Bull Board shows a new dedicated queue too
    const nextApp = createApp(infra, next);
    return () => {
      deliveryQueue.configure(next);
      app = nextApp;
    };
  });
  live.watch(log);

  const server = createServer((req, res) => {
    const current = app;
    if (!current.fast(req, res)) current.express(req, res);
  });
  server.listen(env.PORT, env.HOST, () => {
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : env.PORT;
    log.info(
      {
        port,
        adminUi: env.SWITCHYARD_ADMIN_TOKEN ? "/admin/queues" : "disabled (set SWITCHYARD_ADMIN_TOKEN)",
      },
      "api listening",
    );
  });
  server.on("error", (err) => {
    log.fatal({ err }, `cannot listen on ${env.HOST}:${env.PORT}; set PORT to a free port`);
    process.exit(1);
  });
  // Long-polls hold connections for up to max_wait_seconds; keep idle sockets a bit longer.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down: no new requests, finishing open ones");
    live.close();
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    await producer.close();
    await deliveryQueue.close();
    await Promise.allSettled([redis.quit(), bullConnection.quit(), subscriber.quit(), tracing.shutdown()]);
    log.info("stopped");
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((err: Error) => {
  createLogger("api").fatal({ err: { message: err.message } }, "start-up failed");
  process.exit(1);
});
