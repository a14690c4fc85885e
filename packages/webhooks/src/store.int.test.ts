import { Redis } from "ioredis";
import { Keys } from "@switchyard/queue";
import { minimalConfig, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { WebhookStore } from "./store";

const webhooks = minimalConfig({
  webhooks: { max_deliveries_per_endpoint: 10, retry_schedule_seconds: [1, 2], delivery_retention_hours: 1 },
}).webhooks;

/** The webhook store against a real Redis: bounds, atomic deletes, secrets never read back. */
describe("WebhookStore", () => {
  let redis: Redis;
  let keys: Keys;
  let store: WebhookStore;
  beforeEach(() => {
    redis = new Redis(testRedisUrl());
    keys = new Keys(uniquePrefix());
    store = new WebhookStore(redis, keys, webhooks);
  });
  afterEach(() => redis.quit());

  it("keeps a tenant in the outbox set exactly while it has endpoints; a deleted endpoint is never recreated", async () => {
    const a = await store.createEndpoint("t1", { url: "https://a.example/h", events: ["job.succeeded"] });
    const b = await store.createEndpoint("t1", { url: "https://b.example/h", events: ["job.failed"] });
    expect(JSON.stringify(a.endpoint)).not.toContain(a.secret);
    expect(await redis.sismember(keys.tenantsWithEndpoints, "t1")).toBe(1);
    expect(await store.deleteEndpoint("t2", a.endpoint.id)).toBe(false);
    expect(await store.deleteEndpoint("t1", a.endpoint.id)).toBe(true);
    expect(await redis.sismember(keys.tenantsWithEndpoints, "t1")).toBe(1);
    expect(await store.deleteEndpoint("t1", b.endpoint.id)).toBe(true);
    expect(await redis.sismember(keys.tenantsWithEndpoints, "t1")).toBe(0);

    // A delivery finishing late must not leave a bare hash (it would have no TTL).
    await store.noteFailure(b.endpoint.id);
    await store.noteSuccess(b.endpoint.id);
    await store.setEndpointStatus(b.endpoint.id, "disabled", "410");
    expect(await redis.exists(keys.webhookEndpoint(b.endpoint.id))).toBe(0);
  });

  it("remembers since when an endpoint fails, until a success; re-enabling clears the reason", async () => {
    const { endpoint } = await store.createEndpoint("t1", {
      url: "https://a.example/h",
      events: ["job.failed"],
    });
    expect(await store.noteFailure(endpoint.id, 1_000)).toBe(1_000);
    expect(await store.noteFailure(endpoint.id, 5_000)).toBe(1_000);
    await store.noteSuccess(endpoint.id, 6_000);
    expect(await store.noteFailure(endpoint.id, 7_000)).toBe(7_000);
    await store.setEndpointStatus(endpoint.id, "disabled", "the receiver answered 410 Gone");
    expect((await store.endpoint(endpoint.id, "t1"))?.disabled_reason).toMatch(/410/);
    await store.setEndpointStatus(endpoint.id, "enabled");
    const back = await store.endpoint(endpoint.id, "t1");
    expect(back?.status).toBe("enabled");
    expect(back?.disabled_reason).toBeUndefined();
    expect(back?.failing_since).toBeUndefined();
  });

  it("signs with the old secret too until the grace period ends", async () => {
    const { endpoint, secret } = await store.createEndpoint("t1", {
      url: "https://a.example/h",
      events: ["job.failed"],
    });
    const newer = await store.rotateEndpointSecret(endpoint.id, 60_000, 10_000);
    expect((await store.endpoint(endpoint.id, "t1", 20_000))?.secrets).toEqual([newer, secret]);
    expect((await store.endpoint(endpoint.id, "t1", 70_001))?.secrets).toEqual([newer]);
    const { secret: t1, view } = await store.rotateTenantSecret("t1", 0);
    expect(JSON.stringify(view)).not.toContain(t1);
    expect(await store.tenantSecrets("t1")).toEqual([t1]);
  });

  it("writes a delivery once, with a TTL, and keeps each index to its bound", async () => {
    const base = {
      tenantId: "t1",
      target: "ep_00000000000000000000",
      jobId: "job_x",
      event: "job.succeeded" as const,
      msgId: "msg_x",
      body: "{}",
    };
    expect(await store.createDelivery({ ...base, id: "d0" }, 1)).toBe(true);
    await store.updateDelivery("d0", { status: "succeeded", attempts: 1 });
    expect(await store.createDelivery({ ...base, id: "d0", body: "changed" }, 2)).toBe(false);
    expect((await store.delivery("d0"))?.status).toBe("succeeded");
    expect((await store.delivery("d0"))?.body).toBe("{}");
    expect(await redis.pttl(keys.webhookDelivery("d0"))).toBeGreaterThan(3_600_000);
    for (let i = 1; i <= 12; i++) await store.createDelivery({ ...base, id: `d${i}` }, 10 + i);
    expect(await redis.zcard(keys.endpointDeliveries(base.target))).toBe(10);
    const listed = await store.listDeliveries("t1", base.target, { limit: 3 });
    expect(listed.map((d) => d.id)).toEqual(["d12", "d11", "d10"]);
    expect(await store.listDeliveries("t2", base.target, { limit: 3 })).toEqual([]);
    expect(await store.delivery("d1", "t2")).toBeUndefined();
  });
});
