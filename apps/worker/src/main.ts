import { createServer } from "node:http";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { configPathFor, LiveConfig, RELOAD_RESULTS, retentionMs } from "@switchyard/core";
import { configMetrics, createLogger, createRegistry, startTracing } from "@switchyard/observability";
import { CircuitBreakers, estimatePromptTokens, KeyPool, POOL_PROGRAM } from "@switchyard/limiter";
import {
  AnswerCache,
  checkEvictionPolicy,
  createRedis,
  FairQueue,
  FinishFold,
  JobStore,
  JobStreams,
  Keys,
  waitForRedis,
  useBullmqFunctions,
} from "@switchyard/queue";
import { Bulkheads } from "./bulkhead";
import { Dispatcher } from "./dispatcher";
import { loadWorkerEnv } from "./env";
import { JobRunner } from "./job-runner";
import { KeyProber } from "./key-prober";
import { KeyedCaller } from "./keyed-call";
import { WorkerMetrics } from "./metrics";
import { breakerSettings, Runtimes } from "./runtime";
import { followNewLimits } from "./limits-change";
import { AddressPolicy, DeliveryQueue, guardedAgent, WebhookStore } from "@switchyard/webhooks";
import { DeliveryWorker } from "./webhooks/delivery-worker";
import { WebhookMetrics } from "./webhooks/metrics";
import { OutboxFanout } from "./webhooks/outbox-fanout";
import { WebhookSender } from "./webhooks/sender";

async function main(): Promise<void> {
  const env = loadWorkerEnv();
  const log = createLogger("worker", env.LOG_LEVEL);
  // Signals are heard from the start. Until the dispatcher starts, no job can be running: a signal
  // ends the process at once (it may be waiting for Redis). From then on (jobs may be running while
  // the rest starts) a signal waits for the start to finish and then shuts down gracefully.
  let consuming = false;
  let requested: string | undefined;
  let shutdown: ((signal: string) => Promise<void>) | undefined = undefined;
  const onSignal = (signal: string): void => {
    if (shutdown) {
      void shutdown(signal);
    } else if (!consuming) {
      log.info({ signal }, "stopped while starting, before taking any job");
      process.exit(0);
    } else {
      requested ??= signal;
    }
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
  const tracing = await startTracing("worker");
  if (tracing.enabled) log.info("tracing on: spans go to OTEL_EXPORTER_OTLP_ENDPOINT over OTLP/HTTP");
  const path = resolve(configPathFor(env.SWITCHYARD_CONFIG, __dirname));
  const live = LiveConfig.open(path);
  const config = live.config;
  log.info({ path, hash: live.current.hash }, "config loaded");

  const redis = createRedis(env.REDIS_URL, "worker");
  const bull = createRedis(env.REDIS_URL, "worker");
  const subscriber = createRedis(env.REDIS_URL, "subscriber");
  // A SUBSCRIBE sent before the subscriber's ready check has run makes ioredis refuse that check.
  await waitForRedis(subscriber, log, "Redis (subscriber)");
  await checkEvictionPolicy(redis, log);
  // The key prefix never changes while the process runs (a reload keeps it: restart_required).
  const keys = new Keys(config.queue.prefix);
  const store = new JobStore(redis, keys);
  // BullMQ's completion and fetch on the workers' connection run as function libraries, and a
  // succeeded job's final write goes with its completion, in one call, its key's settlement first.
  const fold = new FinishFold(store, {
    before: POOL_PROGRAM,
    onStepError: (bullJobId, message) =>
      log.error({ bullJobId, err: { message } }, "could not settle a key reservation"),
  });
  useBullmqFunctions(bull, keys.luaLibraries(), undefined, fold);
  const registry = createRegistry("worker");
  const metrics = new WorkerMetrics(registry);
  metrics.seed(config);
  configMetrics(registry, live, RELOAD_RESULTS);
  const breakers = new CircuitBreakers(redis, keys, breakerSettings(config), (provider, scope, state) =>
    metrics.setCircuit(provider, scope, state),
  );
  const bulkheads = new Bulkheads(config.providers);
  metrics.watchBulkheads(bulkheads);
  // Load OpenAI's token tables now (~200 ms of CPU), not in the middle of the first jobs.
  for (const model of ["gpt-4o", "gpt-4"])
    estimatePromptTokens([{ role: "user", content: "warm up" }], model, 4);
  const pool = new KeyPool(redis, keys);
  const fair = new FairQueue(redis, keys);
  const runtimes = new Runtimes(config, {
    keyed: new KeyedCaller(pool, metrics, tracing),
    breakers,
    bulkheads,
    metrics,
    cache: (c) => new AnswerCache(redis, keys, c.cache),
    fair,
    log,
    retired: (old, current) =>
      void followNewLimits(
        { pool, fair, log, wakeWorkers: () => dispatcher.wakeQueues() },
        old,
        current,
      ).catch((err: Error) => log.warn({ err }, "could not free the jobs waiting at the old limits")),
  });
  const streams = new JobStreams(redis, keys, retentionMs(config));
  const runner = new JobRunner(runtimes, store, metrics, log, fair, streams, fold);
  const dispatcher = new Dispatcher(
    config,
    bull,
    subscriber,
    keys.cancelChannel,
    store,
    runner,
    fair,
    log,
    tracing.bullmq,
  );
  consuming = true;
  await dispatcher.start();
  const prober = new KeyProber(
    pool,
    () => ({ configs: runtimes.current.config.providers, providers: runtimes.current.providers }),
    metrics,
    log,
  );
  prober.start();

  // Webhooks: fan-out of final job events, then signed deliveries on their own queue.
  const wh = config.webhooks;
  const policy = AddressPolicy.fromEnv(env.SWITCHYARD_WEBHOOK_ALLOWLIST);
  const agent = guardedAgent(policy, { connectTimeoutMs: wh.connect_timeout_ms });
  const whStore = new WebhookStore(redis, keys, wh);
  const whMetrics = new WebhookMetrics(registry);
  const deliveryQueue = new DeliveryQueue(bull, config, tracing.bullmq);
  const outboxReader = createRedis(env.REDIS_URL, "worker");
  const fanout = new OutboxFanout(
    outboxReader,
    keys,
    store,
    whStore,
    deliveryQueue,
    whMetrics,
    log,
    `${hostname()}-${process.pid}`,
  );
  const deliveries = new DeliveryWorker(
    config,
    bull,
    whStore,
    new WebhookSender(agent, wh.timeout_ms),
    whMetrics,
    log,
    tracing,
  );
  await deliveries.start();
  await fanout.start();

  // Hot reload: the new runtime (routes, providers, limits, tenants, cache, prices) is built
  // first; then every part switches at once. Jobs running keep the runtime they started with.
  live.prepare((next) => {
    const switchRuntime = runtimes.prepare(next);
    return () => {
      switchRuntime();
      metrics.seed(next);
      whStore.configure(next.webhooks);
      deliveryQueue.configure(next);
      deliveries.configure(next);
      dispatcher
        .configure(next)
        .catch((err: Error) => log.error({ err }, "could not start consuming a new queue"));
    };
  });
  live.watch(log);

  const metricsServer =
    env.METRICS_PORT === undefined
      ? undefined
      : createServer((req, res) => {
          if (req.url === "/metrics") {
            void registry
              .metrics()
              .then((text) => res.writeHead(200, { "content-type": registry.contentType }).end(text));
          } else if (req.url === "/healthz") {
            res
              .writeHead(200, { "content-type": "application/json" })
              .end(JSON.stringify({ status: "ok", active: dispatcher.activeJobs }));
          } else res.writeHead(404).end();
        }).listen(env.METRICS_PORT, () =>
          log.info({ address: metricsServer?.address() }, "worker metrics listening"),
        );

  let stopping = false;
  shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    prober.stop();
    live.close();
    await dispatcher.stop(live.config.worker.shutdown_grace_ms);
    await fanout.stop();
    await deliveries.stop();
    await deliveryQueue.close();
    await agent.close();
    metricsServer?.close();
    await runtimes.close();
    await Promise.allSettled([
      redis.quit(),
      bull.quit(),
      subscriber.quit(),
      outboxReader.quit(),
      tracing.shutdown(),
    ]);
    log.info("stopped");
    process.exit(0);
  };
  if (requested) void shutdown(requested);
}

main().catch((err: Error) => {
  createLogger("worker").fatal({ err: { message: err.message, stack: err.stack } }, "start-up failed");
  process.exit(1);
});
