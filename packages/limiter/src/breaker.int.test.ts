import { Redis } from "ioredis";
import { Keys } from "@switchyard/queue";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { CircuitBreakers, type BreakerState } from "./breaker";

/**
 * The breaker script on a real Redis, with explicit clock values so every transition is
 * deterministic: opens on the failure rate once min_calls is reached, stays open, lets one
 * probe through half-open, re-opens with a doubled period on a failed probe, closes on success.
 */
describe("CircuitBreakers", () => {
  const redis = new Redis(testRedisUrl());
  const keys = new Keys(uniquePrefix());
  const cfg = {
    enabled: true,
    per_model: false,
    window_ms: 10_000,
    min_calls: 4,
    failure_rate: 0.5,
    open_ms: 1_000,
    max_open_ms: 3_000,
    half_open_probes: 1,
    probeTtlMs: 5_000,
  };
  const seen: [string, BreakerState][] = [];
  const breakers = new CircuitBreakers(
    redis,
    keys,
    new Map([
      ["up", cfg],
      ["per-model", { ...cfg, per_model: true }],
      ["off", { ...cfg, enabled: false }],
    ]),
    (_p, scope, state) => seen.push([scope, state]),
  );
  afterAll(async () => {
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
    redis.disconnect();
  });

  const call = async (provider: string, outcome: "success" | "failure", now: number, model = "m") => {
    const d = await breakers.acquire(provider, model, now);
    if (!d.allowed) return d;
    await breakers.record(d.permit, outcome, now);
    return d;
  };

  it("opens at the failure rate once min_calls is reached, not before", async () => {
    const t = 1_000_000;
    await call("up", "failure", t);
    await call("up", "failure", t + 1);
    await call("up", "success", t + 2); // 2 of 3 failed, but only 3 calls: stays closed
    expect((await breakers.acquire("up", "m", t + 3)).allowed).toBe(true);
    await call("up", "failure", t + 4); // 3 of 4: opens
    const d = await breakers.acquire("up", "m", t + 5);
    expect(d).toEqual({ allowed: false, state: "open", retryAt: t + 4 + 1_000, now: t + 5 });
  });

  it("lets one probe through when the open period ends; a failed probe re-opens it for twice as long", async () => {
    const t = 1_000_000 + 4 + 1_000;
    const probe = await breakers.acquire("up", "m", t);
    expect(probe).toMatchObject({ allowed: true, state: "half_open", permit: { probe: true } });
    expect(await breakers.acquire("up", "m", t + 1)).toMatchObject({ allowed: false, state: "half_open" });
    if (!probe.allowed) throw new Error("unreachable");
    expect(await breakers.record(probe.permit, "failure", t + 10)).toBe("open");
    expect(await breakers.acquire("up", "m", t + 11)).toEqual({
      allowed: false,
      state: "open",
      retryAt: t + 10 + 2_000,
      now: t + 11,
    });
  });

  it("closes on a successful probe and counts afresh", async () => {
    const t = 1_000_000 + 4 + 1_000 + 10 + 2_000;
    const probe = await breakers.acquire("up", "m", t);
    if (!probe.allowed || !probe.permit.probe) throw new Error("expected a probe");
    expect(await breakers.record(probe.permit, "success", t + 5)).toBe("closed");
    await call("up", "failure", t + 6);
    expect(await breakers.acquire("up", "m", t + 7)).toMatchObject({ allowed: true, state: "closed" });
  });

  it("gives up a probe whose worker never reported, so half-open cannot stick", async () => {
    const t = 2_000_000;
    for (let i = 0; i < 4; i++) await call("per-model", "failure", t + i, "a");
    const probe = await breakers.acquire("per-model", "a", t + 1_010);
    expect(probe).toMatchObject({ allowed: true, permit: { probe: true } });
    expect((await breakers.acquire("per-model", "a", t + 2_000)).allowed).toBe(false);
    // the probe's deadline (5 s) passes without a report: the next caller becomes the probe
    expect(await breakers.acquire("per-model", "a", t + 1_010 + 5_000)).toMatchObject({
      allowed: true,
      permit: { probe: true },
    });
  });

  it("keeps per-model breakers apart and ignores late results while open", async () => {
    const t = 3_000_000;
    expect((await breakers.acquire("per-model", "b", t)).allowed).toBe(true);
    const late = await breakers.acquire("up", "m", t);
    if (!late.allowed) throw new Error("expected closed");
    for (let i = 0; i < 4; i++) await call("up", "failure", t + i);
    expect(await breakers.record(late.permit, "success", t + 10)).toBe("open");
    expect(seen).toContainEqual(["per-model/a", "half_open"]);
  });

  it("always allows a provider whose breaker is disabled and keeps no state for it", async () => {
    for (let i = 0; i < 10; i++) await call("off", "failure", 4_000_000 + i);
    expect((await breakers.acquire("off", "m", 4_000_100)).allowed).toBe(true);
    expect(await redis.exists(keys.breaker("off"))).toBe(0);
  });

  it("sets a TTL on every breaker it writes", async () => {
    const ttl = await redis.pttl(keys.breaker("up"));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(2 * 10_000);
  });
});
