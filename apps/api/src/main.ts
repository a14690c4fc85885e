import { resolve } from "node:path";
import { configPathFor, loadConfig, priceBookFor, retentionMs } from "@switchyard/core";
import { KeyPool } from "@switchyard/limiter";
import { createLogger, createRegistry } from "@switchyard/observability";
import {
  checkEvictionPolicy,
  AnswerCache,
  createRedis,
  FairQueue,
  JobEvents,
  JobProducer,
  JobStore,
  JobStreams,
  Keys,
  streamEvents,
  waitForRedis,
} from "@switchyard/queue";
import { createApp } from "./app";
import { loadApiEnv } from "./env";
import { JobService } from "./job-service";
import { UsageService } from "./usage-service";
import { BatchService } from "./batch-service";
import { AddressPolicy, DeliveryQueue, WebhookStore } from "@switchyard/webhooks";
import { WebhookService } from "./webhook-service";

async function main(): Promise<void> {
  const env = loadApiEnv();
  const log = createLogger("api", env.LOG_LEVEL);
  const path = resolve(configPathFor(env.SWITCHYARD_CONFIG, __dirname));
  const config = loadConfig(path);
  log.info(
    { path, tenants: config.tenants.length, models: Object.keys(config.models).length },
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

  const keys = new Keys(config.queue.prefix);
  const store = new JobStore(redis, keys);
  const producer = new JobProducer(bullConnection, config);
  const events = new JobEvents(subscriber, keys.jobEventsChannel);
  await events.whenReady();
  const streamed = streamEvents(subscriber, keys);
  await streamed.whenReady();
  const registry = createRegistry("api");
  const fair = new FairQueue(redis, keys);
  const prices = priceBookFor(config, (msg, fields) => log.warn(fields, msg));
  const service = new JobService(config, redis, keys, store, producer, events, log, fair, prices);
  const deliveryQueue = new DeliveryQueue(bullConnection, config);
  const webhooks = new WebhookService(
    config,
    new WebhookStore(redis, keys, config.webhooks),
    deliveryQueue,
    AddressPolicy.fromEnv(env.SWITCHYARD_WEBHOOK_ALLOWLIST),
  );
  const app = createApp({
    config,
    redis,
    otherRedis: [bullConnection],
    producer,
    service,
    usage: new UsageService(redis, keys),
    batches: new BatchService(config, redis, keys, service, store),
    follow: {
      streams: new JobStreams(redis, keys, retentionMs(config)),
      streamEvents: streamed,
      statusEvents: events,
      store,
    },
    webhooks,
    deliveryQueue,
    pool: new KeyPool(redis, keys),
    fair,
    cache: new AnswerCache(redis, keys, config.cache),
    registry,
    log,
    adminToken: env.SWITCHYARD_ADMIN_TOKEN,
  });

  const server = app.listen(env.PORT, env.HOST, () => {
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
    const force = setTimeout(() => process.exit(1), 15_000);
    force.unref();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
    await producer.close();
    await deliveryQueue.close();
    await Promise.allSettled([redis.quit(), bullConnection.quit(), subscriber.quit()]);
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
