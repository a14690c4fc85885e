import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { createLogger, createRegistry } from "@switchyard/observability";
import { admitAlways, JobStore, Keys } from "@switchyard/queue";
import { deleteKeysUnder, eventually, minimalConfig, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { DeliveryQueue, WEBHOOK_QUEUE, WebhookStore, deliveryId } from "@switchyard/webhooks";
import { WebhookMetrics } from "./metrics";
import { OutboxFanout } from "./outbox-fanout";

/** The outbox written by transition.lua, read back into delivery records and queue jobs (real Redis). */
describe("OutboxFanout", () => {
  const prefix = uniquePrefix();
  const config = minimalConfig({ queue: { prefix } });
  const keys = new Keys(prefix);
  let redis: Redis;
  let reader: Redis;
  let fanout: OutboxFanout;
  let deliveries: DeliveryQueue;
  let queue: Queue;
  beforeAll(async () => {
    redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    reader = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    deliveries = new DeliveryQueue(redis, config);
    queue = new Queue(WEBHOOK_QUEUE, { connection: redis, prefix });
  });
  afterAll(async () => {
    await fanout?.stop();
    await deliveries.close();
    await queue.close();
    await Promise.all([redis.quit(), reader.quit()]);
  });

  it("turns final events into one delivery per target, acknowledges them, and forgets idle consumers", async () => {
    const jobs = new JobStore(redis, keys);
    const store = new WebhookStore(redis, keys, config.webhooks);
    const { endpoint } = await store.createEndpoint("t1", {
      url: "https://a.example/h",
      events: ["job.succeeded"],
    });
    const base = {
      tenantId: "t1",
      queue: "jobs-paid",
      model: "m",
      priority: "normal" as const,
      traceId: "x",
    };
    await jobs.create(
      { ...base, id: "job_a", createdAt: Date.now(), webhookUrl: "https://b.example/own" },
      60_000,
      undefined,
      admitAlways("t1"),
    );
    await jobs.create(
      { id: "job_b", ...base, tenantId: "t2", createdAt: Date.now() },
      60_000,
      undefined,
      admitAlways("t2"),
    );
    await jobs.transition("job_a", "succeeded", { finished_at: Date.now() }, 60_000);
    // Another tenant's job, without endpoints or its own URL: no outbox entry at all.
    await jobs.transition("job_b", "succeeded", { finished_at: Date.now() }, 60_000);
    expect(await redis.xlen(keys.webhookOutbox)).toBe(1);

    // A consumer a dead worker left behind, with nothing pending.
    await redis.xgroup("CREATE", keys.webhookOutbox, "fanout", "0", "MKSTREAM").catch(() => undefined);
    await redis.xgroup("CREATECONSUMER", keys.webhookOutbox, "fanout", "old-worker-1");

    fanout = new OutboxFanout(
      reader,
      keys,
      jobs,
      store,
      deliveries,
      new WebhookMetrics(createRegistry("test")),
      createLogger("test", "silent"),
      "me",
      0,
    );
    await fanout.start();
    const ids = [deliveryId("job_a", "succeeded", endpoint.id), deliveryId("job_a", "succeeded", "url")];
    await eventually(
      async () => Promise.all(ids.map((id) => store.delivery(id))),
      (ds) => ds.every((d) => d !== undefined),
      10_000,
      "delivery records",
    );
    const [toEndpoint, toUrl] = await Promise.all(ids.map((id) => store.delivery(id)));
    expect(toEndpoint).toMatchObject({
      endpoint_id: endpoint.id,
      status: "pending",
      event_type: "job.succeeded",
    });
    expect(toUrl).toMatchObject({ endpoint_id: null, url: "https://b.example/own" });
    expect((JSON.parse(toUrl?.body ?? "{}") as { data: { id: string } }).data.id).toBe("job_a");
    expect((await queue.getJobs(["waiting"])).map((j) => j.id).sort()).toEqual([...ids].sort());
    await eventually(
      () => redis.xlen(keys.webhookOutbox),
      (n) => n === 0,
      10_000,
      "outbox emptied",
    );
    const consumers = (await redis.xinfo("CONSUMERS", keys.webhookOutbox, "fanout")) as unknown[][];
    expect(consumers.map((c) => String(c[1]))).toEqual(["me"]);
  });

  it("fans out the entries of one read at once, not one after the other", async () => {
    const p2 = uniquePrefix();
    const cfg2 = minimalConfig({ queue: { prefix: p2 } });
    const keys2 = new Keys(p2);
    const ids = ["job_x", "job_y", "job_z"];
    // Once gated, every record read waits until all three are being read (or 5 s, should they
    // never be): one entry after the other, the first read would wait alone.
    let gated = false;
    let reading = 0;
    let most = 0;
    let open!: () => void;
    const allReading = new Promise<void>((resolve) => (open = resolve));
    let safety: NodeJS.Timeout | undefined;
    class GatedStore extends JobStore {
      override async get(id: string) {
        if (!gated) return super.get(id);
        reading += 1;
        most = Math.max(most, reading);
        if (reading === ids.length) open();
        await allReading;
        try {
          return await super.get(id);
        } finally {
          reading -= 1;
        }
      }
    }
    const jobs = new GatedStore(redis, keys2);
    const store = new WebhookStore(redis, keys2, cfg2.webhooks);
    const { endpoint } = await store.createEndpoint("t1", {
      url: "https://a.example/h",
      events: ["job.succeeded"],
    });
    for (const id of ids) {
      const job = {
        id,
        tenantId: "t1",
        queue: "jobs-paid",
        model: "m",
        priority: "normal" as const,
        traceId: "x",
      };
      await jobs.create({ ...job, createdAt: Date.now() }, 60_000, undefined, admitAlways("t1"));
      await jobs.transition(id, "succeeded", { finished_at: Date.now() }, 60_000);
    }
    expect(await redis.xlen(keys2.webhookOutbox)).toBe(ids.length);
    const queue2 = new DeliveryQueue(redis, cfg2);
    // Its own blocking connection: the first test's fan-out still blocks on the shared one.
    const reader2 = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
    const own = new OutboxFanout(
      reader2,
      keys2,
      jobs,
      store,
      queue2,
      new WebhookMetrics(createRegistry("test")),
      createLogger("test", "silent"),
      "me",
    );
    try {
      gated = true;
      safety = setTimeout(() => open(), 5_000);
      await own.start();
      await eventually(
        () => Promise.all(ids.map((id) => store.delivery(deliveryId(id, "succeeded", endpoint.id)))),
        (ds) => ds.every((d) => d !== undefined),
        10_000,
        "every job's delivery record",
      );
      expect(most).toBe(ids.length);
    } finally {
      if (safety) clearTimeout(safety);
      await own.stop();
      await queue2.close();
      await reader2.quit();
      await deleteKeysUnder(redis, [p2]);
    }
  });
});
