import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { parseConfig, resolveRoute, type Attempt } from "@switchyard/core";
import { CircuitBreakers, KeyPool, type ReserveRequest, type ReserveResult } from "@switchyard/limiter";
import { createLogger, createRegistry } from "@switchyard/observability";
import { AnswerCache, FairQueue, Keys } from "@switchyard/queue";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { MockProvider } from "../../mock-provider/src/server";
import { Bulkheads } from "./bulkhead";
import { KeyedCaller } from "./keyed-call";
import { WorkerMetrics } from "./metrics";
import { chatPayload } from "./parked-job.test-util";
import { breakerSettings, Runtimes } from "./runtime";

/** The real key pool, with each reservation held back a while, its start and end noted. */
class SlowPool extends KeyPool {
  reserving: number[] = [];
  reservedAt: number[] = [];
  override async reserve(req: ReserveRequest): Promise<ReserveResult> {
    this.reserving.push(Date.now());
    await sleep(RESERVE_DELAY_MS);
    const r = await super.reserve(req);
    this.reservedAt.push(Date.now());
    return r;
  }
}
const RESERVE_DELAY_MS = 150;

/**
 * An attempt's started_at and duration_ms are its upstream call's: the key pool's reservation
 * before the call is not in them (the bench's overhead scenario splits a job's time at them), for
 * a succeeded attempt as for a failed one.
 */
describe("RouteExecutor: an attempt's timing is its call's", () => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const keys = new Keys(uniquePrefix());
  const mock = new MockProvider({ latencyMs: 0, errorRate: 0, maxBodyBytes: 1 << 20 });
  const log = createLogger("test", "silent");
  let pool: SlowPool;
  let runtimes: Runtimes;
  let base = "";

  beforeAll(async () => {
    base = `http://127.0.0.1:${await mock.listen(0)}`;
    const config = parseConfig(
      `
queue: { prefix: "${keys.prefix}", attempts: 2 }
providers:
  - id: mock
    type: openai-compatible
    base_url: "${base}/v1"
    keys: [{ id: k1, secret: sk-one }, { id: k2, secret: sk-two }]
models:
  m: { provider: mock }
tenants:
  - { id: t, tier: paid, api_keys: [sk-t-1234567890] }
`,
      {},
    );
    const metrics = new WorkerMetrics(createRegistry("worker-test"));
    pool = new SlowPool(redis, keys);
    runtimes = new Runtimes(config, {
      keyed: new KeyedCaller(pool, metrics),
      breakers: new CircuitBreakers(redis, keys, breakerSettings(config)),
      bulkheads: new Bulkheads(config.providers),
      metrics,
      cache: (c) => new AnswerCache(redis, keys, c.cache),
      fair: new FairQueue(redis, keys),
      log,
    });
  });
  afterAll(async () => {
    await mock.close();
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
    redis.disconnect();
  });

  it("leaves the reservation out of a succeeded attempt, and of a failed one before it", async () => {
    const rt = runtimes.acquire();
    const p = chatPayload("job_timing");
    // The first call is answered 429: the pool moves the job to the other key, in the same run.
    const fault = await fetch(`${base}/_control/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ fault: "status=429,times=1,id=timing" }),
    });
    expect(fault.status).toBeLessThan(300);
    const history: Attempt[] = [];
    try {
      const route = resolveRoute(rt.config, "m", { messages: p.request.messages });
      if (!route) throw new Error("model m has no route");
      const outcome = await rt.executor.execute(p, route, history, undefined, log);
      expect(outcome.kind).toBe("succeeded");
    } finally {
      runtimes.release(rt);
    }
    // Two calls, each after its own reservation: the first key's 429, then the second key's answer.
    expect(history.map((a) => [a.outcome, a.error_type])).toEqual([
      ["failed", "rate_limit"],
      ["succeeded", undefined],
    ]);
    expect(pool.reservedAt).toHaveLength(2);
    history.forEach((a, i) => {
      const startedAt = Math.round(a.started_at * 1000);
      // Each call starts after its reservation ended, and ends before the next one began.
      expect(startedAt).toBeGreaterThanOrEqual(pool.reservedAt[i] ?? Infinity);
      const next = pool.reserving[i + 1];
      if (next !== undefined) expect(startedAt + a.duration_ms).toBeLessThanOrEqual(next);
    });
  });
});
