import { Redis } from "ioredis";
import type { ProviderConfig } from "@switchyard/core";
import { Keys } from "@switchyard/queue";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { KeyPool } from "./key-pool";
import { denied, FREE, granted, PAID, provider, T0, type Tenant } from "./key-pool.test-util";

/**
 * The key-pool script on a real Redis with explicit clock values, so every window edge is
 * exact: limits across keys, the choice of key, sliding windows, reconciliation, slots and
 * their expiry, cooldowns, disabling and probes, header corrections, shares, appointments.
 */
// Every test runs twice: with the pool loaded as a function library (Redis 7) and as an EVAL
// script (Redis before 7, or FUNCTION not allowed): both run the same program.
describe.each(["function", "script"] as const)("KeyPool (as a %s)", (mode) => {
  const redis = new Redis(testRedisUrl());
  let pool: KeyPool;
  let prefix: string;
  beforeEach(() => {
    prefix = uniquePrefix();
    pool = new KeyPool(redis, new Keys(prefix), mode);
  });
  afterEach(() => expect(pool.luaMode).toBe(mode));
  afterAll(() => redis.disconnect());

  const reserve = (
    p: ProviderConfig,
    now: number,
    o: Partial<{ tin: number; tout: number; tenant: Tenant; returning: boolean; model: string }> = {},
  ) =>
    pool.reserve({
      provider: p,
      model: o.model ?? "m",
      tenant: o.tenant ?? PAID,
      tokensIn: o.tin ?? 10,
      tokensOut: o.tout ?? 10,
      returning: o.returning ?? false,
      now,
    });

  it("keeps three keys within their rpm together and picks the key with the most room", async () => {
    const p = provider([
      { id: "a", secret: "sk-a", rpm: 2 },
      { id: "b", secret: "sk-b", rpm: 3 },
      { id: "c", secret: "sk-c", rpm: 5 },
    ]);
    const used: Record<string, number> = {};
    for (let i = 0; i < 10; i++) {
      const r = granted(await reserve(p, T0 + i));
      used[r.key.id] = (used[r.key.id] ?? 0) + 1;
    }
    expect(used).toEqual({ a: 2, b: 3, c: 5 });
    const d = denied(await reserve(p, T0 + 20));
    expect(d.reason).toBe("limited");
    // The oldest request leaves the window once its whole 1 s bucket is 60 s (+0.5 s margin) old.
    expect(d.retryAt).toBe(T0 + 1_000 + 60_000 + 500);
    denied(await reserve(p, T0 + 61_499, { returning: true }));
    granted(await reserve(p, T0 + 61_500));
  });

  it("counts a rolling window: no double burst at a minute boundary", async () => {
    const p = provider([{ id: "a", secret: "sk-a", rpm: 4 }]);
    granted(await reserve(p, T0 + 59_000));
    granted(await reserve(p, T0 + 59_000));
    granted(await reserve(p, T0 + 59_900));
    granted(await reserve(p, T0 + 59_900));
    // A fixed-window counter would allow four more at T0 + 60 s; a rolling window must not.
    denied(await reserve(p, T0 + 60_000));
    denied(await reserve(p, T0 + 100_000, { returning: true }));
    granted(await reserve(p, T0 + 120_500));
  });

  it("spreads over unlimited keys by fewest calls in flight", async () => {
    const p = provider([
      { id: "a", secret: "sk-a" },
      { id: "b", secret: "sk-b" },
      { id: "c", secret: "sk-c" },
    ]);
    const ids = new Set<string>();
    for (let i = 0; i < 3; i++) ids.add(granted(await reserve(p, T0)).key.id);
    expect(ids.size).toBe(3);
  });

  it("refunds unused tokens when the call settles", async () => {
    const p = provider([{ id: "a", secret: "sk-a", tpm: 1000 }]);
    const r = granted(await reserve(p, T0, { tin: 100, tout: 800 }));
    denied(await reserve(p, T0 + 10, { tin: 100, tout: 800 }));
    await pool.settle(r, { kind: "ok", usage: { input_tokens: 100, output_tokens: 50 }, now: T0 + 200 });
    granted(await reserve(p, T0 + 300, { tin: 100, tout: 700 }));
    const [view] = await pool.inspect(p, T0 + 400);
    expect(view?.usage.tokens).toBe(950);
    expect(view?.usage.input_tokens).toBe(200);
    expect(view?.usage.output_tokens).toBe(750);
  });

  it("charges the difference when the call used more than reserved", async () => {
    const p = provider([{ id: "a", secret: "sk-a", tpm: 1000 }]);
    const r = granted(await reserve(p, T0, { tin: 100, tout: 100 }));
    await pool.settle(r, { kind: "ok", usage: { input_tokens: 600, output_tokens: 300 }, now: T0 + 100 });
    denied(await reserve(p, T0 + 200, { tin: 100, tout: 100 }));
  });

  it("counts total tokens as input plus output, sliding out bucket by bucket", async () => {
    const p = provider([{ id: "a", secret: "sk-a", tpm: 1000 }]);
    granted(await reserve(p, T0, { tin: 300, tout: 100 })); // 400 in the second T0
    granted(await reserve(p, T0 + 20_000, { tin: 100, tout: 400 })); // 900 in all
    // 200 more would make 1,100: refused until T0's 400 leave the window (a minute, the margin).
    const d = await reserve(p, T0 + 30_000, { tin: 100, tout: 100 });
    if (d.granted) throw new Error("expected a refusal");
    expect(d.retryAt).toBeGreaterThanOrEqual(T0 + 60_000);
    expect(d.retryAt).toBeLessThan(T0 + 62_000);
    granted(await reserve(p, d.retryAt + 1, { tin: 100, tout: 100, returning: true }));
    const [view] = await pool.inspect(p, d.retryAt + 2);
    expect(view?.usage).toMatchObject({ tokens: 700, input_tokens: 200, output_tokens: 500 });
  });

  it("drops the total-token fields a window kept before total tokens were input plus output", async () => {
    const p = provider([{ id: "a", secret: "sk-a", tpm: 1000 }]);
    granted(await reserve(p, T0, { tin: 100, tout: 100 }));
    const window = new Keys(prefix).keyWindow("up", "a");
    // What the older script wrote beside the input and output buckets: a sum and its buckets.
    await redis.hset(window, "t", "200", `t:${Math.floor(T0 / 1000)}`, "200", "t:1", "5");
    granted(await reserve(p, T0 + 10, { tin: 100, tout: 100 }));
    const fields = await redis.hkeys(window);
    expect(fields.filter((f) => f === "t" || f.startsWith("t:"))).toEqual([]);
    expect(fields).toEqual(expect.arrayContaining(["i", "o", `i:${Math.floor(T0 / 1000)}`]));
    const [view] = await pool.inspect(p, T0 + 20);
    expect(view?.usage).toMatchObject({ tokens: 400, input_tokens: 200, output_tokens: 200 });
  });

  it("holds a slot per call in flight; a slot its worker never released expires", async () => {
    const p = provider([{ id: "a", secret: "sk-a", max_concurrency: 1 }]);
    const r = granted(await reserve(p, T0));
    denied(await reserve(p, T0 + 10));
    await pool.settle(r, { kind: "ok", now: T0 + 20 });
    granted(await reserve(p, T0 + 30)); // never settled: its worker "died"
    denied(await reserve(p, T0 + 5_000, { returning: true }));
    // timeout_ms (1000) + 5000 ms of slack after the reservation, the slot is free again.
    granted(await reserve(p, T0 + 30 + 6_001));
  });

  it("cools a key down after a 429 and moves work to another key", async () => {
    const p = provider([
      { id: "a", secret: "sk-a" },
      { id: "b", secret: "sk-b" },
    ]);
    const r = granted(await reserve(p, T0));
    await pool.settle(r, { kind: "rate_limited", coolUntil: T0 + 5_000, now: T0 + 10 });
    for (let i = 0; i < 3; i++) {
      const next = granted(await reserve(p, T0 + 100 + i));
      expect(next.key.id).not.toBe(r.key.id);
      await pool.settle(next, { kind: "ok", now: T0 + 100 + i });
    }
    const [a] = (await pool.inspect(p, T0 + 200)).filter((v) => v.id === r.key.id);
    expect(a?.health.rate_limited).toBe(1);
    expect(a?.models.m?.cooling_until).toBe(T0 + 5_000);
  });

  it("makes a lone cooling key's jobs wait exactly for the cooldown", async () => {
    const p = provider([{ id: "a", secret: "sk-a" }]);
    const r = granted(await reserve(p, T0));
    await pool.settle(r, { kind: "rate_limited", coolUntil: T0 + 3_000, now: T0 + 10 });
    const d = denied(await reserve(p, T0 + 20));
    expect(d.reason).toBe("cooling");
    expect(d.retryAt).toBe(T0 + 3_000);
    granted(await reserve(p, T0 + 3_000));
  });

  it("takes a disabled key out of the pool, probes it once per interval, and puts it back", async () => {
    const p = provider(
      [
        { id: "a", secret: "sk-aaaaaaaaaaaa1234" },
        { id: "b", secret: "sk-b" },
      ],
      { probe_interval_ms: 1_000 },
    );
    const first = granted(await reserve(p, T0));
    await pool.settle(first, { kind: "disabled", reason: "401 from upstream", now: T0 });
    const other = first.key.id === "a" ? "b" : "a";
    for (let i = 0; i < 3; i++) {
      const r = granted(await reserve(p, T0 + 10 + i));
      expect(r.key.id).toBe(other);
      await pool.settle(r, { kind: "ok", now: T0 + 10 + i });
    }
    expect(await pool.dueProbes(p, T0 + 500)).toEqual([]);
    expect((await pool.dueProbes(p, T0 + 1_000)).map((k) => k.id)).toEqual([first.key.id]);
    expect(await pool.dueProbes(p, T0 + 1_001)).toEqual([]); // claimed once
    const views = await pool.inspect(p, T0 + 1_002);
    const v = views.find((x) => x.id === first.key.id);
    expect(v?.status).toBe("disabled");
    expect(v?.disabled?.reason).toBe("401 from upstream");
    expect(JSON.stringify(views)).not.toContain("sk-aaaaaaaaaaaa1234");
    expect(views.find((x) => x.id === "a")?.secret_hint).toBe("…1234");
    await pool.enable(p, first.key, T0 + 1_100);
    expect((await pool.inspect(p, T0 + 1_200)).every((x) => x.status === "active")).toBe(true);
  });

  it("answers disabled when every key is out, with the next probe time", async () => {
    const p = provider([{ id: "a", secret: "sk-a" }], { probe_interval_ms: 2_000 });
    await pool.settle(granted(await reserve(p, T0)), { kind: "disabled", reason: "403", now: T0 });
    const d = denied(await reserve(p, T0 + 1));
    expect(d.reason).toBe("disabled");
    expect(d.retryAt).toBe(T0 + 2_000);
  });

  it("learns a lower limit and unseen usage from the provider's headers", async () => {
    const p = provider([{ id: "a", secret: "sk-a", rpm: 100 }]);
    const r = granted(await reserve(p, T0));
    // The provider says this key's model allows 3 requests a minute and 1 is left (another
    // client used one): the extra use counts until the provider's reset, 5 s from now.
    await pool.settle(r, {
      kind: "ok",
      reported: { requests: { limit: 3, remaining: 1, resetMs: 5_000 } },
      now: T0 + 10,
    });
    granted(await reserve(p, T0 + 20));
    const d = denied(await reserve(p, T0 + 30));
    expect(d.retryAt).toBe(T0 + 10 + 5_000);
    const [v] = await pool.inspect(p, T0 + 40);
    expect(v?.models.m?.reported_limits.rpm).toBe(3);
    expect(v?.models.m?.requests).toBe(3);
    // After the reset only our own two requests count: one more fits under the learned 3.
    granted(await reserve(p, T0 + 5_010, { returning: true }));
    denied(await reserve(p, T0 + 5_020, { returning: true }));
  });

  it("keeps a tier within its share of the pool while other work goes on", async () => {
    const p = provider(
      [
        { id: "a", secret: "sk-a", rpm: 6 },
        { id: "b", secret: "sk-b", rpm: 4 },
      ],
      { shares: [{ tier: "free", fraction: 0.3 }] },
    );
    for (let i = 0; i < 3; i++) granted(await reserve(p, T0 + i, { tenant: FREE }));
    const d = denied(await reserve(p, T0 + 10, { tenant: FREE }));
    expect(d.reason).toBe("share");
    for (let i = 0; i < 7; i++) granted(await reserve(p, T0 + 20 + i, { tenant: PAID }));
    expect(denied(await reserve(p, T0 + 30, { tenant: PAID })).reason).toBe("limited");
  });

  it("gives waiting jobs appointments spaced by what the pool frees, not one time for all", async () => {
    const p = provider([{ id: "a", secret: "sk-a", rpm: 6 }]);
    for (let i = 0; i < 6; i++) granted(await reserve(p, T0));
    const times: number[] = [];
    for (let i = 0; i < 4; i++) times.push(denied(await reserve(p, T0 + 100)).retryAt);
    // One request is 10 s of a 6 rpm pool: appointments 10 s apart from the first free moment.
    expect(times).toEqual([T0 + 61_500, T0 + 71_500, T0 + 81_500, T0 + 91_500]);
    // Jobs back from their appointment that still do not fit go ahead of the line, spaced too.
    expect(denied(await reserve(p, T0 + 200, { returning: true })).retryAt).toBe(T0 + 61_500);
    expect(denied(await reserve(p, T0 + 200, { returning: true })).retryAt).toBe(T0 + 71_500);
  });

  it("spaces appointments by what calls really use, not by their reservations", async () => {
    const p = provider([{ id: "a", secret: "sk-a", tpm: 700 }]);
    // Calls reserve 100 tokens and use 50: after a dozen, the pool paces waiting jobs by less.
    for (let i = 0; i < 12; i++) {
      const r = granted(await reserve(p, T0 + i, { tin: 50, tout: 50 }));
      await pool.settle(r, { kind: "ok", usage: { input_tokens: 25, output_tokens: 25 }, now: T0 + i });
    }
    granted(await reserve(p, T0 + 100, { tin: 50, tout: 50 }));
    const a = denied(await reserve(p, T0 + 100, { tin: 50, tout: 50 })).retryAt;
    const b = denied(await reserve(p, T0 + 100, { tin: 50, tout: 50 })).retryAt;
    // 100 tokens of a 700 tpm pool are 8.6 s; scaled by the fill (0.5 + 0.5 * 0.9^12 = 0.64): 5.5 s.
    expect(b - a).toBeGreaterThan(5_000);
    expect(b - a).toBeLessThan(6_000);
  });

  it("says too_large when a single call exceeds every key's limit", async () => {
    const p = provider([{ id: "a", secret: "sk-a", tpm: 100 }]);
    expect(denied(await reserve(p, T0, { tin: 150, tout: 10 })).reason).toBe("too_large");
  });

  it("applies per-model limits on top of key-wide ones ('*' for unlisted models)", async () => {
    const p = provider([{ id: "a", secret: "sk-a", rpm: 10, models: { "*": { rpm: 2 }, big: { rpm: 1 } } }]);
    granted(await reserve(p, T0, { model: "m" }));
    granted(await reserve(p, T0, { model: "m" }));
    denied(await reserve(p, T0, { model: "m" }));
    granted(await reserve(p, T0, { model: "big" }));
    denied(await reserve(p, T0, { model: "big" }));
    granted(await reserve(p, T0, { model: "other" }));
  });

  it("limits requests per rolling day", async () => {
    const p = provider([{ id: "a", secret: "sk-a", rpd: 2 }]);
    granted(await reserve(p, T0));
    granted(await reserve(p, T0 + 3_600_000));
    const d = denied(await reserve(p, T0 + 7_200_000));
    expect(d.retryAt).toBeGreaterThan(T0 + 86_400_000);
    expect(d.retryAt).toBeLessThanOrEqual(T0 + 86_400_000 + 600_000 + 500);
    granted(await reserve(p, d.retryAt, { returning: true }));
  });

  it("bounds every key it writes with a TTL and keeps window hashes as hash tables", async () => {
    const p = provider(
      [
        { id: "a", secret: "sk-a", rpm: 600 },
        { id: "b", secret: "sk-b", rpm: 600 },
      ],
      { shares: [{ tier: "free", fraction: 0.5 }] },
    );
    // A few calls of both tiers over a few seconds, one of them cooled down by a 429.
    for (let i = 0; i < 6; i++) {
      const r = granted(await reserve(p, T0 + i * 1_000, { tenant: i % 2 ? FREE : PAID }));
      await pool.settle(
        r,
        i === 3
          ? { kind: "rate_limited", coolUntil: T0 + i * 1_000 + 500, now: T0 + i * 1_000 + 10 }
          : { kind: "ok", usage: { input_tokens: 5, output_tokens: 5 }, now: T0 + i * 1_000 + 10 },
      );
    }
    const keys = await redis.keys(`${prefix}:kp:*`);
    const windows = keys.filter((k) => /:w(:|$)/.test(k) || k.includes(":share:"));
    // Key-wide and per-model windows of both keys, and the free tier's share window.
    expect(windows).toHaveLength(5);
    for (const k of keys) expect([k, (await redis.pttl(k)) > 0]).toEqual([k, true]);
    // Each call reads and writes a window's fields one by one: a listpack would be scanned
    // whole for every field (see pool.lua).
    for (const k of windows) expect([k, await redis.object("ENCODING", k)]).toEqual([k, "hashtable"]);
  });

  it("gives a state or window hash that a settlement creates its TTL", async () => {
    // A settlement renews no TTL of a key in use (its reservations do, once a second), so one
    // that finds its key's state or window gone (deleted by hand, say) must bound what it writes.
    const p = provider([{ id: "a", secret: "sk-a" }]);
    const r = granted(await reserve(p, T0));
    const keys = new Keys(prefix);
    const state = keys.keyState("up", "a");
    const window = keys.keyWindow("up", "a", "m");
    await redis.del(state, window);
    await pool.settle(r, {
      kind: "ok",
      usage: { input_tokens: 5, output_tokens: 5 },
      now: T0 + 10,
      reported: { requests: { limit: 500, remaining: 400, resetMs: 1_000 } },
    });
    expect(await redis.hget(state, "ok")).toBe("1");
    expect(await redis.hget(window, "hl:r")).toBe("500");
    for (const k of [state, window]) expect([k, (await redis.pttl(k)) > 0]).toEqual([k, true]);
  });

  it("writes no token correction into a window that is gone between reservation and settlement", async () => {
    // A key-wide limit, so that the key-wide window counts (see the tests below).
    const p = provider([{ id: "a", secret: "sk-a", rpm: 1_000 }]);
    const r = granted(await reserve(p, T0, { tin: 10, tout: 100 }));
    const keys = new Keys(prefix);
    const keyWide = keys.keyWindow("up", "a");
    const perModel = keys.keyWindow("up", "a", "m");
    await redis.del(keyWide);
    await pool.settle(r, { kind: "ok", usage: { input_tokens: 10, output_tokens: 20 }, now: T0 + 10 });
    // The key-wide window is not recreated (it would have no TTL); the per-model one is corrected.
    expect(await redis.exists(keyWide)).toBe(0);
    expect(await redis.hmget(perModel, "i", "o")).toEqual(["10", "20"]);
  });

  describe("the key-wide scope, counted only while a key-wide limit is in force", () => {
    const kp = (key: Record<string, unknown>) => provider([{ id: "a", secret: "sk-a", ...key }]);

    it("counts a key without key-wide limits per model only, and shows its usage as its models' sum", async () => {
      const p = kp({ models: { m: { rpm: 100 } } });
      const held = granted(await reserve(p, T0, { tin: 10, tout: 20 }));
      for (let i = 1; i < 3; i++) {
        const r = granted(await reserve(p, T0 + i, { tin: 10, tout: 20 }));
        await pool.settle(r, { kind: "ok", usage: { input_tokens: 10, output_tokens: 5 }, now: T0 + i + 1 });
      }
      granted(await reserve(p, T0 + 10, { model: "m2", tin: 7, tout: 1 }));
      expect(held.keyWide).toBe(false);
      const keys = new Keys(prefix);
      expect(await redis.exists(keys.keyWindow("up", "a"), keys.keySlots("up", "a"))).toBe(0);
      const [view] = await pool.inspect(p, T0 + 20);
      expect(view?.models.m).toMatchObject({
        requests: 3,
        input_tokens: 30,
        output_tokens: 30,
        in_flight: 1,
      });
      expect(view?.models.m2).toMatchObject({ requests: 1, input_tokens: 7, output_tokens: 1, in_flight: 1 });
      expect(view?.usage).toMatchObject({
        requests: 4,
        tokens: 68,
        input_tokens: 37,
        output_tokens: 31,
        requests_today: 4,
        in_flight: 2,
      });
    });

    it("rebuilds the key-wide window and slots from the models' when a key-wide limit appears", async () => {
      // Before a configuration reload: no key-wide limit; 3 calls on m in T0's second, 2 on m2
      // a second later, one of those still in flight.
      const before = kp({});
      for (let i = 0; i < 3; i++) {
        const r = granted(await reserve(before, T0 + i));
        await pool.settle(r, { kind: "ok", now: T0 + i + 1 });
      }
      granted(await reserve(before, T0 + 1_000, { model: "m2" })); // in flight
      const r = granted(await reserve(before, T0 + 1_001, { model: "m2" }));
      await pool.settle(r, { kind: "ok", now: T0 + 1_002 });
      // After it: at most 6 requests a minute and 2 calls in flight on the key, all models.
      const after = kp({ rpm: 6, max_concurrency: 2 });
      const first = granted(await reserve(after, T0 + 2_000));
      expect(first.keyWide).toBe(true);
      expect(denied(await reserve(after, T0 + 2_001)).reason).toBe("limited"); // 2 in flight
      await pool.settle(first, { kind: "ok", now: T0 + 2_002 });
      expect(denied(await reserve(after, T0 + 2_003)).reason).toBe("limited"); // 6 requests
      const window = new Keys(prefix).keyWindow("up", "a");
      expect(
        await redis.hmget(window, "r", `r:${Math.floor(T0 / 1000)}`, `r:${Math.floor(T0 / 1000) + 1}`),
      ).toEqual(["6", "3", "2"]);
      // Bucket by bucket: T0's three calls leave the window when T0's second does (plus the margin).
      denied(await reserve(after, T0 + 61_400, { returning: true }));
      granted(await reserve(after, T0 + 61_600));
      // The copied slot expired as its original would (the provider's timeout and slack, 6 s).
      const [view] = await pool.inspect(after, T0 + 61_700);
      expect(view?.usage).toMatchObject({ requests: 4, in_flight: 1 });
    });

    it("keeps counting key-wide in a process whose configuration lacks the limit, while another's has it", async () => {
      const limited = kp({ rpm: 3 });
      const unlimited = kp({});
      granted(await reserve(limited, T0));
      const a = granted(await reserve(unlimited, T0 + 1));
      const b = granted(await reserve(unlimited, T0 + 2));
      expect([a.keyWide, b.keyWide]).toEqual([true, true]);
      expect(denied(await reserve(limited, T0 + 3)).reason).toBe("limited");
      // Two windows after the last reservation that had the limit, the key-wide scope stops.
      const window = new Keys(prefix).keyWindow("up", "a");
      const c = granted(await reserve(unlimited, T0 + 121_000));
      expect(c.keyWide).toBe(false);
      await pool.settle(c, { kind: "ok", usage: { input_tokens: 1, output_tokens: 1 }, now: T0 + 121_001 });
      expect(await redis.hget(window, `r:${Math.floor((T0 + 121_000) / 1000)}`)).toBeNull();
    });
  });
});
