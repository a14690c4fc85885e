import { PriceBook, type JobView } from "@switchyard/core";
import { freePort, http, Stack, testConfig, type ConfigDoc } from "@switchyard/testing";
import { chat, clearFaults, mockStats, standingFault, submit, waitFinal } from "./helpers";

/**
 * Admission control, degrade, quotas and cost across real processes: the free tier is refused
 * at its bound with a Retry-After while paid work is admitted; degrade reroutes and says so; a
 * quota admits exactly its requests out of a concurrent burst; usage and cost add up to what
 * the mock counted.
 */
const KEYS = {
  paid: "sk-prot-paid-0001",
  free: "sk-prot-free-0001",
  quota: "sk-prot-quota-001",
  budget: "sk-prot-budget-01",
};

function protectionConfig(mockUrl: string, prefix: string, extra: Partial<ConfigDoc> = {}): ConfigDoc {
  const cfg = testConfig(mockUrl, prefix, { worker: { concurrency: 2 } });
  cfg.tenants = [
    { id: "paid-co", tier: "paid", api_keys: [KEYS.paid] },
    { id: "free-co", tier: "free", api_keys: [KEYS.free] },
    { id: "quota-co", tier: "paid", api_keys: [KEYS.quota], quota: { requests_per_day: 50 } },
    {
      id: "budget-co",
      tier: "paid",
      api_keys: [KEYS.budget],
      quota: { tokens_per_day: 300, usd_per_month: 1 },
    },
  ];
  return { ...cfg, ...extra };
}

interface ErrorBody {
  error: { type: string; message: string; details?: { path: string }[] };
}

describe("protection", () => {
  describe("admission bounds (one worker, two slots)", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        config: (mockUrl, prefix) =>
          protectionConfig(mockUrl, prefix, { admission: { free: { max_waiting: 4 } } }),
      });
    });
    afterAll(async () => {
      await stack?.stop();
    });

    it("refuses free work at its bound with 503 and Retry-After while paid work is admitted", async () => {
      const free = [];
      for (let i = 0; i < 10; i++)
        free.push(await submit(stack.apiUrl, KEYS.free, chat(`[[mock:delay=1500]] free ${i}`)));
      const refused = free.filter((r) => r.status === 503);
      const admitted = free.filter((r) => r.status === 202);
      // Two may start at once; four more wait; the rest is refused.
      expect(admitted.length).toBeGreaterThanOrEqual(4);
      expect(admitted.length).toBeLessThanOrEqual(6);
      expect(refused.length).toBe(10 - admitted.length);
      const first = refused[0];
      const body = first?.body as unknown as ErrorBody;
      expect(body.error.type).toBe("overloaded");
      expect(body.error.message).toMatch(/admission\.<tier>\.max_waiting/);
      expect(body.error.details?.[0]?.path).toBe("admission.tier_max_waiting");
      const retry = Number(first?.headers.get("retry-after"));
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(60);
      // Paid work is admitted meanwhile, with its estimate.
      const paid = await submit(stack.apiUrl, KEYS.paid, chat("paid while free is full"));
      expect(paid.status).toBe(202);
      expect(typeof paid.body.estimated_start_seconds).toBe("number");
      for (const a of admitted)
        expect(
          typeof a.body.estimated_start_seconds === "number" || a.body.estimated_start_seconds === null,
        ).toBe(true);
      // Every accepted job ends; none costs a 5xx.
      for (const a of [...admitted, paid]) {
        const key = a === paid ? KEYS.paid : KEYS.free;
        expect((await waitFinal(stack.apiUrl, key, a.body.id, 30)).status).toBe("succeeded");
      }
      // One worker with two slots never had more than two calls upstream at once.
      const peaks = Object.values((await mockStats(stack.mockUrl)).keys).map((k) => k.max_in_flight);
      expect(Math.max(...peaks)).toBe(2);
      // Once the backlog is gone, free work is admitted again.
      expect((await submit(stack.apiUrl, KEYS.free, chat("free again"))).status).toBe(202);
    });
  });

  describe("degrade", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        config: (mockUrl, prefix) =>
          protectionConfig(mockUrl, prefix, {
            admission: {
              free: { degrade: { model: "fast", max_tokens_cap: 3, when_wait_over_seconds: 0 } },
            },
          }),
      });
    });
    afterAll(async () => {
      await stack?.stop();
    });

    it("reroutes new free jobs to the cheaper route while the estimated wait is over the threshold", async () => {
      // A backlog that keeps the tier busy long enough for its start rate to be measured.
      const backlog = [];
      for (let i = 0; i < 16; i++)
        backlog.push(
          await submit(stack.apiUrl, KEYS.free, {
            ...chat(`[[mock:delay=250]] backlog ${i}`),
            model: "claude-sonnet-4-6",
          }),
        );
      let degraded: JobView | undefined;
      for (let i = 0; i < 40 && !degraded; i++) {
        const r = await submit(stack.apiUrl, KEYS.free, {
          ...chat("one two three four five six seven"),
          model: "claude-sonnet-4-6",
          max_tokens: 50,
        });
        expect(r.status).toBe(202);
        if (r.body.degraded) degraded = r.body;
        else await new Promise((res) => setTimeout(res, 100));
      }
      expect(degraded?.degraded).toMatchObject({ from: "claude-sonnet-4-6", to: "fast", max_tokens_cap: 3 });
      expect(degraded?.degraded?.estimated_wait_seconds).toBeGreaterThan(0);
      const done = await waitFinal(stack.apiUrl, KEYS.free, degraded?.id ?? "", 30);
      expect(done.status).toBe("succeeded");
      expect(done.model).toBe("claude-sonnet-4-6");
      // Served by the cheaper route, its max_tokens capped, and it says so.
      expect(done.result).toMatchObject({
        provider: "openai",
        model: "gpt-4o-mini",
        finish_reason: "length",
        output_text: "Echo: one two",
        degraded: { from: "claude-sonnet-4-6", to: "fast", max_tokens_cap: 3 },
      });
      expect(done.degraded).toEqual(done.result?.degraded);
      for (const b of backlog) await waitFinal(stack.apiUrl, KEYS.free, b.body.id, 30);
    });
  });

  describe("quotas, usage and cost", () => {
    let stack: Stack;
    let metricsPort: number;
    beforeAll(async () => {
      metricsPort = await freePort();
      stack = await Stack.start({
        workers: 1,
        config: (mockUrl, prefix) => {
          const cfg = protectionConfig(mockUrl, prefix);
          (cfg.models as Record<string, unknown>).cached = {
            provider: "openai",
            model: "gpt-4o-mini",
            cache: { mode: "exact" },
          };
          cfg.cache = { max_entries: 2 };
          return cfg;
        },
        workerEnv: { METRICS_PORT: String(metricsPort) },
      });
    });
    afterAll(async () => {
      await stack?.stop();
    });

    it("admits exactly 50 of 200 concurrent submissions against a quota of 50 requests", async () => {
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) => submit(stack.apiUrl, KEYS.quota, chat(`quota ${i}`))),
      );
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s === 202)).toHaveLength(50);
      expect(statuses.filter((s) => s === 429)).toHaveLength(150);
      const over = answers.find((a) => a.status === 429);
      expect((over?.body as unknown as ErrorBody).error.type).toBe("quota_exceeded");
      const retry = Number(over?.headers.get("retry-after"));
      expect(retry).toBeGreaterThanOrEqual(1);
      expect(retry).toBeLessThanOrEqual(86_400);
      const usage = await http<{ quota: Record<string, { limit: number; used: number }> }>(
        "GET",
        `${stack.apiUrl}/v1/usage`,
        { key: KEYS.quota },
      );
      expect(usage.body.quota.requests_per_day).toMatchObject({ limit: 50, used: 50 });
      for (const a of answers.filter((x) => x.status === 202))
        expect((await waitFinal(stack.apiUrl, KEYS.quota, a.body.id, 30)).status).toBe("succeeded");
    });

    it("never overshoots a token quota by more than one request's estimate", async () => {
      // Each request reserves its prompt estimate plus max_tokens (40): about 46 tokens. The
      // upstream holds its answers while the burst is answered: a job that settled during the
      // burst would give back the part of its reservation it did not use, and a later request
      // could then be admitted (rightly), which would make the count depend on the machine's speed.
      await standingFault(stack.mockUrl, { fault: "delay=3000" });
      let answers: Awaited<ReturnType<typeof submit>>[];
      try {
        answers = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            submit(
              stack.apiUrl,
              KEYS.budget,
              chat(`budget ${i} one two three four five six`, { max_tokens: 40 }),
            ),
          ),
        );
      } finally {
        await clearFaults(stack.mockUrl);
      }
      const admitted = answers.filter((a) => a.status === 202);
      expect(admitted.length).toBeGreaterThanOrEqual(6); // 300 / 46
      expect(admitted.length).toBeLessThanOrEqual(7);
      for (const a of admitted) await waitFinal(stack.apiUrl, KEYS.budget, a.body.id, 30);
      const usage = await http<{ total: { input_tokens: number; output_tokens: number } }>(
        "GET",
        `${stack.apiUrl}/v1/usage`,
        { key: KEYS.budget },
      );
      // The real usage (settled) stays under the quota plus one estimate.
      expect(usage.body.total.input_tokens + usage.body.total.output_tokens).toBeLessThanOrEqual(300 + 46);
    });

    it("adds usage and cost up to what the mock counted, per model and per day, for this tenant only", async () => {
      const before = await mockStats(stack.mockUrl);
      const models = ["gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash"];
      const jobs = [];
      for (let i = 0; i < 9; i++) {
        const model = models[i % 3] ?? "gpt-4o-mini";
        const cached = i === 0 ? "[[mock:cached=6]] " : "";
        jobs.push(
          await submit(stack.apiUrl, KEYS.paid, { ...chat(`${cached}cost ${i} alpha beta gamma`), model }),
        );
      }
      const done = await Promise.all(jobs.map((j) => waitFinal(stack.apiUrl, KEYS.paid, j.body.id, 30)));
      expect(done.map((d) => d.status)).toEqual(Array(9).fill("succeeded"));
      const after = await mockStats(stack.mockUrl);
      const mockTokens = (id: string) => (after.keys[id]?.tokens ?? 0) - (before.keys[id]?.tokens ?? 0);

      const usage = await http<{
        data: {
          model: string;
          requests: number;
          input_tokens: number;
          output_tokens: number;
          cached_input_tokens: number;
          cost_usd: number;
        }[];
        total: { requests: number; cost_usd: number };
      }>("GET", `${stack.apiUrl}/v1/usage?group_by=model`, { key: KEYS.paid });
      expect(usage.status).toBe(200);
      const row = (m: string) => usage.body.data.find((d) => d.model === m);
      const upstream: Record<string, string> = {
        "openai/gpt-4o-mini": "sk-upstream-1",
        "anthropic/claude-sonnet-4-6": "sk-ant-upstream-1",
        "gemini/gemini-2.5-flash": "gm-upstream-1",
      };
      const book = new PriceBook([
        { id: "openai", type: "openai" },
        { id: "anthropic", type: "anthropic" },
        { id: "gemini", type: "gemini" },
      ]);
      for (const [label, key] of Object.entries(upstream)) {
        const r = row(label);
        expect(r?.requests).toBe(3);
        expect((r?.input_tokens ?? 0) + (r?.output_tokens ?? 0)).toBe(mockTokens(key));
        const [provider, model] = label.split("/") as [string, string];
        const jobsOf = done.filter((d) => d.result?.provider === provider);
        const expected = jobsOf.reduce(
          (s, d) => s + (book.cost(provider, model, d.usage ?? { input_tokens: 0, output_tokens: 0 }) ?? 0),
          0,
        );
        expect(r?.cost_usd).toBeCloseTo(expected, 8);
        expect(r?.cost_usd).toBeGreaterThan(0);
      }
      expect(row("openai/gpt-4o-mini")?.cached_input_tokens).toBe(6);
      expect(done[0]?.usage?.cached_input_tokens).toBe(6);
      // Cached input is priced apart (cheaper) where the provider reports it.
      const plain =
        book.cost("openai", "gpt-4o-mini", {
          ...(done[0]?.usage ?? { input_tokens: 0, output_tokens: 0 }),
          cached_input_tokens: 0,
        }) ?? 0;
      expect(done[0]?.usage?.cost_usd).toBeLessThan(plain);

      // By day: today's row carries the same totals; other tenants see only their own.
      const byDay = await http<{ data: { date: string; requests: number; cost_usd: number }[] }>(
        "GET",
        `${stack.apiUrl}/v1/usage?group_by=day`,
        { key: KEYS.paid },
      );
      const today = new Date().toISOString().slice(0, 10);
      expect(byDay.body.data.at(-1)).toMatchObject({ date: today, requests: 9 });
      expect(byDay.body.data.at(-1)?.cost_usd).toBeCloseTo(usage.body.total.cost_usd, 9);
      const other = await http<{ total: { requests: number } }>("GET", `${stack.apiUrl}/v1/usage`, {
        key: KEYS.free,
      });
      expect(other.body.total.requests).toBe(0);

      // The worker's metrics carry tokens and cost by tenant, provider and model.
      const metrics = (await http<string>("GET", `http://127.0.0.1:${metricsPort}/metrics`)).body;
      expect(metrics).toMatch(
        /switchyard_cost_usd_total\{tenant="paid-co",provider="openai",model="gpt-4o-mini"[^}]*\} [0-9.e-]+/,
      );
      expect(metrics).toMatch(
        /switchyard_tokens_total\{tenant="paid-co",provider="openai",model="gpt-4o-mini",direction="cached_input"[^}]*\} 6/,
      );
    });

    it("counts what cache hits saved in USD, and charges them nothing", async () => {
      const ask = { ...chat("a question worth caching"), model: "cached" };
      const first = await submit(stack.apiUrl, KEYS.free, ask);
      const miss = await waitFinal(stack.apiUrl, KEYS.free, first.body.id, 30);
      const second = await submit(stack.apiUrl, KEYS.free, ask);
      const hit = await waitFinal(stack.apiUrl, KEYS.free, second.body.id, 30);
      expect(hit.result?.cache?.hit).toBe(true);
      expect(hit.usage).toEqual({ input_tokens: 0, output_tokens: 0 });
      const usage = await http<{ total: { requests: number; cost_usd: number } }>(
        "GET",
        `${stack.apiUrl}/v1/usage`,
        {
          key: KEYS.free,
        },
      );
      expect(usage.body.total.requests).toBe(2);
      expect(usage.body.total.cost_usd).toBeCloseTo(miss.usage?.cost_usd ?? -1, 9);
      const metrics = (await http<string>("GET", `http://127.0.0.1:${metricsPort}/metrics`)).body;
      const saved = /switchyard_cache_cost_saved_usd_total\{route="cached"[^}]*\} ([0-9.e-]+)/.exec(metrics);
      expect(Number(saved?.[1])).toBeCloseTo(miss.usage?.cost_usd ?? -1, 9);
      // Past max_entries (2) the oldest entries go, counted by the route they belonged to.
      for (const q of ["another", "and another", "and one more"]) {
        const r = await submit(stack.apiUrl, KEYS.free, { ...chat(q), model: "cached" });
        await waitFinal(stack.apiUrl, KEYS.free, r.body.id, 30);
      }
      const after = (await http<string>("GET", `http://127.0.0.1:${metricsPort}/metrics`)).body;
      const evicted = /switchyard_cache_events_total\{route="cached",event="eviction"[^}]*\} (\d+)/.exec(
        after,
      );
      expect(Number(evicted?.[1])).toBe(2);
    });

    it("answers bad usage queries with 400 and the field", async () => {
      for (const q of [
        "from=2026-13-01",
        "to=yesterday",
        "group_by=hour",
        "from=2026-02-01&to=2026-01-01",
        "from=2020-01-01&to=2026-01-01",
      ]) {
        const r = await http<ErrorBody>("GET", `${stack.apiUrl}/v1/usage?${q}`, { key: KEYS.paid });
        expect(r.status).toBe(400);
        expect(r.body.error.details?.[0]?.path).toMatch(/^query\./);
      }
      expect((await http("GET", `${stack.apiUrl}/v1/usage`)).status).toBe(401);
    });
  });
});
