import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { FairQueue } from "./fair-queue";
import { admitAlways, dayPeriod, JobStore, monthPeriod, type AdmissionCheck } from "./job-store";
import { Keys } from "./keys";

/**
 * Admission on a real Redis with an explicit clock (create-job.lua reading the fair queue's
 * counts and measured start rate; transition.lua settling usage): exact estimates, each bound
 * refusing with its name and a Retry-After from the estimate, degrade, the quota reserved
 * atomically under concurrency and settled once.
 */
// Every test runs twice: create-job loaded as a function library (Redis 7), and as an EVAL script
// (Redis before 7, or FUNCTION not allowed): the same program (lua-library.ts).
describe.each(["function", "script"] as const)("admission (create-job as a %s)", (mode) => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  let keys: Keys;
  let fq: FairQueue;
  let store: JobStore;
  let queues: Map<string, Queue>;
  const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);

  beforeEach(() => {
    keys = new Keys(uniquePrefix());
    fq = new FairQueue(redis, keys);
    store = new JobStore(redis, keys, mode);
    queues = new Map(
      ["jobs-paid", "jobs-free"].map((n) => [n, new Queue(n, { connection: redis, prefix: keys.prefix })]),
    );
  });
  afterEach(async () => {
    expect(store.luaMode).toBe(mode);
    await Promise.all([...queues.values()].map((q) => q.close()));
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
  });
  afterAll(() => redis.disconnect());

  let n = 0;
  /**
   * Admits a job as the API does at `now`: parked in BullMQ first, then admitted, recorded and
   * listed in one script call; a degraded job is listed on its own afterwards, a refused one's
   * parked job removed.
   */
  const submit = async (
    tenantId: string,
    tier: "paid" | "free",
    now: number,
    check: Partial<AdmissionCheck> = {},
  ) => {
    const id = `job_${tenantId}_${++n}`;
    const queue = `jobs-${tier}`;
    await queues.get(queue)?.add("chat", {}, { jobId: id, delay: 3_600_000 });
    const out = await store.create(
      { id, tenantId, queue, model: "m", priority: "normal", createdAt: now, traceId: "t" },
      3_600_000,
      undefined,
      { ...admitAlways(tenantId, tier, now), ...check },
      now,
      { bullPrefix: keys.prefix, cost: 1, tierWeight: tier === "paid" ? 4 : 1 },
    );
    if (out.kind !== "created") await queues.get(queue)?.remove(id);
    else if (!out.listed)
      await fq.enqueue(
        { jobId: id, tier, tenantId, queue, cost: 1, priority: "normal", tierWeight: 4, tenantWeight: 1 },
        now,
      );
    return { id, out };
  };
  const pick = async (now: number) => {
    const p = await fq.pick(now);
    if (!p.picked) throw new Error("nothing to pick");
    return p;
  };

  it("estimates 0 with nothing waiting, unknown before a start rate is measured", async () => {
    expect((await submit("a", "paid", T0)).out).toEqual({
      kind: "created",
      estimatedWaitMs: 0,
      degraded: false,
      listed: true,
    });
    expect((await submit("a", "paid", T0)).out).toEqual({
      kind: "created",
      estimatedWaitMs: null,
      degraded: false,
      listed: true,
    });
  });

  it("estimates from the tier's measured start rate and the tenant's share of it", async () => {
    // 40 jobs of tenant a; 10 starts per second for 2 s while the tier stays backlogged.
    for (let i = 0; i < 40; i++) await submit("a", "paid", T0);
    for (let ms = 0; ms <= 2000; ms += 100) await pick(T0 + ms);
    // 21 starts. The tier got busy at T0: 11 starts by T0 + 1 s (11/s), 10 more in the next
    // second (10/s); each measurement weighs half: 10.5 starts/s.
    const rate = 10.5;
    const left = 40 - 21;
    // Tenant a alone in its tier: everything ahead of a new job is its own.
    expect((await submit("a", "paid", T0 + 2000)).out).toEqual({
      kind: "created",
      estimatedWaitMs: Math.floor(((left + 1) / rate) * 1000),
      degraded: false,
      listed: true,
    });
    // A new tenant b of equal weight: its first job waits for one start of b at half the rate.
    expect((await submit("b", "paid", T0 + 2000)).out).toEqual({
      kind: "created",
      estimatedWaitMs: Math.floor((1 / 0.5 / rate) * 1000),
      degraded: false,
      listed: true,
    });
    // Starts stop: 3 s later, the rate seen since the last measurement (1 start in 3 s) rules.
    expect((await submit("b", "paid", T0 + 5000)).out).toMatchObject({ kind: "created" });
    const stalled = await submit("c", "paid", T0 + 5000);
    expect(stalled.out).toEqual({
      kind: "created",
      // Tenants a and b backlogged, c new: c's share is 1/3 of a rate of one start in 3 s.
      estimatedWaitMs: 9000,
      degraded: false,
      listed: true,
    });
  });

  it("refuses at each bound with its name and a Retry-After from the estimate, and degrades", async () => {
    for (let i = 0; i < 30; i++) await submit("a", "free", T0);
    for (let ms = 0; ms <= 1000; ms += 100) await pick(T0 + ms); // 11 starts in the tier's first second
    const now = T0 + 1000;
    // 19 waiting, 11 starts/s: a new job of a waits (19 + 1) / 11 s.
    const est = Math.floor((20 / 11) * 1000);
    expect((await submit("a", "free", now, { tierMaxWaiting: 19 })).out).toEqual({
      kind: "refused",
      bound: "tier_max_waiting",
      retryAfterMs: 1000,
      estimatedWaitMs: est,
    });
    expect((await submit("a", "free", now, { tierMaxWaitMs: 500 })).out).toEqual({
      kind: "refused",
      bound: "tier_max_wait_seconds",
      retryAfterMs: est - 500,
      estimatedWaitMs: est,
    });
    expect((await submit("a", "free", now, { tenantMaxWaiting: 10 })).out).toMatchObject({
      kind: "refused",
      bound: "tenant_max_waiting",
      retryAfterMs: 1000,
    });
    expect((await submit("a", "free", now, { tenantMaxWaitMs: 1000 })).out).toMatchObject({
      kind: "refused",
      bound: "tenant_max_wait_seconds",
    });
    // The paid tier has nothing waiting: admitted at once, whatever the free tier's state.
    expect((await submit("p", "paid", now, { tierMaxWaiting: 0, tierMaxWaitMs: 1 })).out).toMatchObject({
      kind: "refused",
      bound: "tier_max_waiting",
    });
    expect((await submit("p", "paid", now, { tierMaxWaiting: 1, tierMaxWaitMs: 1 })).out).toEqual({
      kind: "created",
      estimatedWaitMs: 0,
      degraded: false,
      listed: true,
    });
    // Refusals wrote nothing.
    expect(await redis.hget(keys.fairQueue.state, "n:free")).toBe("19");
    const degraded = await submit("a", "free", now, {
      degradeOverMs: 1500,
      degradeTo: { model: "cheap", max_tokens_cap: 64 },
    });
    expect(degraded.out).toEqual({ kind: "created", estimatedWaitMs: est, degraded: true, listed: false });
    expect((await store.get(degraded.id))?.view.degraded).toEqual({
      from: "m",
      to: "cheap",
      estimated_wait_seconds: est / 1000,
      max_tokens_cap: 64,
    });
    expect((await submit("a", "free", now, { degradeOverMs: 5000 })).out).toMatchObject({ degraded: false });
  });

  it("counts waiting jobs exactly through picks, rooms and cancels", async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await submit("a", "paid", T0)).id);
    const state = async () => redis.hmget(keys.fairQueue.state, "n:paid", "nt:a");
    expect(await state()).toEqual(["5", "5"]);
    const first = await pick(T0);
    expect(await state()).toEqual(["4", "4"]);
    // No capacity for it: it waits in a room and counts as waiting again.
    await fq.wait(
      {
        jobId: first.jobId,
        tier: "paid",
        tenantId: "a",
        queue: "jobs-paid",
        cost: 1,
        priority: "normal",
        tierWeight: 4,
        tenantWeight: 1,
      },
      "openai/m",
      60_000,
      T0,
    );
    expect(await state()).toEqual(["5", "5"]);
    await fq.forget(ids[4] ?? "");
    await fq.forget(ids[4] ?? ""); // twice: counted once
    expect(await state()).toEqual(["4", "4"]);
    for (let i = 0; i < 3; i++) await pick(T0);
    expect(await state()).toEqual(["1", "1"]);
  });

  it("admits exactly the quota's requests from concurrent submissions and reserves their estimate", async () => {
    const quota = { requestsPerDay: 50 };
    const results = await Promise.all(
      Array.from({ length: 200 }, () =>
        submit("q", "paid", T0, { quota, estimate: { tokens: 100, nanoUsd: 2_000 } }),
      ),
    );
    const kinds = results.map((r) => r.out.kind);
    expect(kinds.filter((k) => k === "created")).toHaveLength(50);
    expect(results.filter((r) => r.out.kind === "over_quota").map((r) => r.out)).toEqual(
      Array.from({ length: 150 }, () => ({ kind: "over_quota", quota: "requests_per_day" })),
    );
    const day = await redis.hgetall(keys.usage("q", dayPeriod(T0)));
    expect(day).toMatchObject({ r: "50", t: "5000", c: "100000" });
    expect(await redis.pttl(keys.usage("q", dayPeriod(T0)))).toBeGreaterThan(399 * 86_400_000);
  });

  it("stops a token or USD quota once reached, never more than one estimate over", async () => {
    const est = { tokens: 300, nanoUsd: 7_000_000 };
    const tokens = await Promise.all(
      Array.from({ length: 20 }, () =>
        submit("t", "paid", T0, { quota: { tokensPerDay: 1_000 }, estimate: est }),
      ),
    );
    expect(tokens.filter((r) => r.out.kind === "created")).toHaveLength(4); // 0, 300, 600, 900 < 1000
    const usd = await Promise.all(
      Array.from({ length: 20 }, () =>
        submit("u", "paid", T0, { quota: { nanoUsdPerMonth: 20_000_000 }, estimate: est }),
      ),
    );
    expect(usd.filter((r) => r.out.kind === "created")).toHaveLength(3); // 0, 7, 14 < 20 (millionths)
    expect(usd.find((r) => r.out.kind === "over_quota")?.out).toEqual({
      kind: "over_quota",
      quota: "usd_per_month",
    });
  });

  it("settles the reservation with the real usage once, and refunds jobs that spent nothing", async () => {
    const est = { estimate: { tokens: 500, nanoUsd: 9_000 } };
    const a = await submit("s", "paid", T0, est);
    const b = await submit("s", "paid", T0, est);
    const spent = {
      usage: { input_tokens: 40, output_tokens: 10, cached_input_tokens: 8, cost_usd: 0.000003 },
      label: "openai/gpt-4o-mini",
    };
    await store.transition(a.id, "succeeded", { finished_at: T0 }, 60_000, spent);
    await store.transition(a.id, "succeeded", { finished_at: T0 }, 60_000, spent); // already final: no-op
    await store.transition(b.id, "cancelled", { finished_at: T0 }, 60_000);
    const day = await redis.hgetall(keys.usage("s", dayPeriod(T0)));
    expect(day).toEqual({
      r: "2",
      t: "50",
      c: "3000",
      // The real usage is kept per model only; the day's totals are their sums (usage-service.ts).
      "m|openai/gpt-4o-mini|r": "1",
      "m|openai/gpt-4o-mini|i": "40",
      "m|openai/gpt-4o-mini|o": "10",
      "m|openai/gpt-4o-mini|ci": "8",
      "m|openai/gpt-4o-mini|c": "3000",
    });
    // The month keeps only what its quota reads.
    expect(await redis.hgetall(keys.usage("s", monthPeriod(T0)))).toEqual({ c: "3000" });
  });
});
