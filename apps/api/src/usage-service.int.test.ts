import { Redis } from "ioredis";
import type { TenantConfig } from "@switchyard/core";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { admitAlways, dayPeriod, JobStore, Keys, monthPeriod } from "@switchyard/queue";
import { UsageService } from "./usage-service";

/**
 * GET /v1/usage's report from the counters the real scripts write: admission reserves
 * (create-job.lua), a job's end settles with its real usage, kept per model only
 * (transition.lua). The day's totals are the models' sums, and what is reserved for jobs not
 * ended yet is the day's reservation less those sums.
 */
describe("usage report", () => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  let keys: Keys;
  let store: JobStore;
  let usage: UsageService;
  const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
  const tenant: TenantConfig = {
    id: "acme",
    tier: "paid",
    api_keys: ["acme-key-123456"],
    dedicated_queue: false,
    weight: 1,
  };

  beforeEach(() => {
    keys = new Keys(uniquePrefix());
    store = new JobStore(redis, keys);
    usage = new UsageService(redis, keys);
  });
  afterEach(async () => {
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
  });
  afterAll(() => redis.disconnect());

  let n = 0;
  const admit = async (tokens: number, nanoUsd: number) => {
    const id = `job_${++n}`;
    const out = await store.create(
      {
        id,
        tenantId: "acme",
        queue: "jobs-paid",
        model: "m",
        priority: "normal",
        createdAt: T0,
        traceId: "t",
      },
      3_600_000,
      undefined,
      { ...admitAlways("acme", "paid", T0), estimate: { tokens, nanoUsd } },
      T0,
    );
    expect(out.kind).toBe("created");
    return id;
  };

  it("sums the day's usage over its models and reports what unended jobs reserved", async () => {
    const a = await admit(500, 9_000);
    const b = await admit(500, 9_000);
    const c = await admit(300, 5_000); // not ended: its reservation is in flight
    const d = await admit(400, 7_000); // failed: refunded
    await store.transition(a, "succeeded", { finished_at: T0 }, 60_000, {
      usage: { input_tokens: 40, output_tokens: 10, cached_input_tokens: 8, cost_usd: 0.000003 },
      label: "openai/gpt-4o-mini",
    });
    await store.transition(b, "succeeded", { finished_at: T0 }, 60_000, {
      usage: { input_tokens: 7, output_tokens: 5, cost_usd: 0.000002 },
      label: "anthropic/claude-3-5-haiku",
    });
    await store.transition(d, "failed", { finished_at: T0 }, 60_000);
    expect(c).toBeTruthy();

    const byDay = await usage.report(tenant, { from: "2026-11-23", to: "2026-11-23" }, T0);
    const day = {
      requests: 4,
      input_tokens: 47,
      output_tokens: 15,
      cached_input_tokens: 8,
      cost_usd: 0.000005,
    };
    expect(byDay.data).toEqual([{ date: "2026-11-23", ...day }]);
    expect(byDay.total).toEqual(day);
    expect(byDay.in_flight).toEqual({ reserved_tokens: 300, reserved_cost_usd: 0.000005 });

    const byModel = await usage.report(
      tenant,
      { from: "2026-11-23", to: "2026-11-23", group_by: "model" },
      T0,
    );
    expect(byModel.data).toEqual([
      {
        model: "anthropic/claude-3-5-haiku",
        requests: 1,
        input_tokens: 7,
        output_tokens: 5,
        cached_input_tokens: 0,
        cost_usd: 0.000002,
      },
      {
        model: "openai/gpt-4o-mini",
        requests: 1,
        input_tokens: 40,
        output_tokens: 10,
        cached_input_tokens: 8,
        cost_usd: 0.000003,
      },
    ]);
    expect(byModel.total).toEqual(day);
  });

  it("reads a day written before the totals were dropped (day-wide i/o/ci/uc beside the models') alike", async () => {
    // What transition.lua wrote until the day's own totals were dropped: both, equal.
    await redis.hset(keys.usage("acme", dayPeriod(T0)), {
      r: "1",
      t: "50",
      c: "3000",
      i: "40",
      o: "10",
      ci: "8",
      uc: "3000",
      "m|openai/gpt-4o-mini|r": "1",
      "m|openai/gpt-4o-mini|i": "40",
      "m|openai/gpt-4o-mini|o": "10",
      "m|openai/gpt-4o-mini|ci": "8",
      "m|openai/gpt-4o-mini|c": "3000",
    });
    await redis.hset(keys.usage("acme", monthPeriod(T0)), { c: "3000" });
    const r = await usage.report(tenant, { from: "2026-11-23", to: "2026-11-23" }, T0);
    expect(r.total).toEqual({
      requests: 1,
      input_tokens: 40,
      output_tokens: 10,
      cached_input_tokens: 8,
      cost_usd: 0.000003,
    });
    expect(r.in_flight).toEqual({ reserved_tokens: 0, reserved_cost_usd: 0 });
  });
});
