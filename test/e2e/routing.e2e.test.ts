import { PAID_KEY, Stack, testConfig } from "@switchyard/testing";
import { chat, clearFaults, mockStats, standingFault, submit, trail, waitFinal } from "./helpers";

/**
 * Routes end to end: fallback along a three-provider chain, a rejected key skipped at once,
 * every fault kind of every wire format retried to success or failed with a clear error, and
 * a bulkhead that keeps a slow provider from taking every slot.
 */
describe("routes and providers", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 1,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix, { queue: { attempts: 2 }, worker: { concurrency: 4 } });
        const providers = cfg.providers as Record<string, unknown>[];
        for (const p of providers) p.timeout_ms = 1000;
        providers.push(
          {
            id: "bad-key",
            type: "openai",
            base_url: `${mockUrl}/v1`,
            keys: [{ id: "revoked", secret: "sk-invalid-revoked" }],
            breaker: { enabled: false },
          },
          {
            id: "slow",
            type: "openai-compatible",
            base_url: `${mockUrl}/v1`,
            keys: [{ id: "s1", secret: "sk-slow-upstream" }],
            breaker: { enabled: false },
            timeout_ms: 10_000,
            bulkhead: { max_concurrent: 2, max_waiting: 0 },
          },
        );
        Object.assign(cfg.models as Record<string, unknown>, {
          keyed: {
            chain: [
              { provider: "bad-key", model: "gpt-4o" },
              { provider: "anthropic", model: "claude-haiku" },
            ],
          },
          "slow-model": { provider: "slow", model: "llama3" },
        });
        return cfg;
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });
  afterEach(async () => {
    await clearFaults(stack.mockUrl);
  });

  it("falls back openai -> anthropic -> gemini when each fails after its retries", async () => {
    await standingFault(stack.mockUrl, { format: "openai", fault: "status=500" });
    await standingFault(stack.mockUrl, { format: "anthropic", fault: "status=529" });
    const res = await submit(stack.apiUrl, PAID_KEY, { ...chat("fall back please"), model: "smart" });
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("succeeded");
    expect(done.result).toMatchObject({
      provider: "gemini",
      model: "gemini-2.5-flash",
      output_text: "Echo: fall back please",
    });
    expect(trail(done.result?.attempts)).toEqual([
      "openai:failed:server",
      "openai:failed:server",
      "anthropic:failed:server",
      "anthropic:failed:server",
      "gemini:succeeded",
    ]);
    expect(done.result?.attempts?.[2]).toMatchObject({ model: "claude-sonnet-4-6", status: 529 });
    expect(done.attempts).toBe(5);
  });

  it("fails with the last link's error when every link fails", async () => {
    await standingFault(stack.mockUrl, { fault: "status=503" });
    const res = await submit(stack.apiUrl, PAID_KEY, { ...chat("nobody home"), model: "smart" });
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("failed");
    expect(done.error).toMatchObject({
      type: "server",
      status: 503,
      provider: "gemini",
      model: "gemini-2.5-flash",
    });
    expect(done.error?.message).toMatch(/overloaded/);
    expect(trail(done.error?.attempts)).toHaveLength(6);
  });

  it("skips a link whose key is rejected at once, without retrying it", async () => {
    const before = await mockStats(stack.mockUrl);
    const res = await submit(stack.apiUrl, PAID_KEY, { ...chat("key trouble"), model: "keyed" });
    const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
    expect(done.status).toBe("succeeded");
    // The rejected key leaves the pool; with no key left, the link is skipped for the next one.
    expect(trail(done.result?.attempts)).toEqual([
      "bad-key:failed:auth",
      "bad-key:skipped:no_keys",
      "anthropic:succeeded",
    ]);
    expect(done.result?.attempts?.[0]?.status).toBe(401);
    expect(done.result?.model).toBe("claude-haiku");
    const after = await mockStats(stack.mockUrl);
    // The mock refuses a bad key before counting the request; the job view says it happened once.
    expect(after.formats.openai ?? 0).toBe(before.formats.openai ?? 0);
  });

  describe.each([
    ["claude-sonnet-4-6", "anthropic"],
    ["gemini-2.5-flash", "gemini"],
    ["gpt-4o-mini", "openai"],
  ])("every fault kind of %s", (model, provider) => {
    it.each([
      ["status=500", "server"],
      ["status=429,retry_after=1", "rate_limit"],
      ["hang", "timeout"],
      ["reset", "connection"],
      ["malformed", "malformed"],
      ["truncated", "connection"],
    ])("%s is retried as %s and then succeeds", async (fault, kind) => {
      const id = `${provider}-${fault.replace(/\W/g, "")}`;
      const res = await submit(stack.apiUrl, PAID_KEY, {
        ...chat(`[[mock:${fault},times=1,id=${id}]] ok`),
        model,
      });
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
      expect(done.status).toBe("succeeded");
      expect(trail(done.result?.attempts)).toEqual([`${provider}:failed:${kind}`, `${provider}:succeeded`]);
      if (kind === "rate_limit") {
        const [first, second] = done.result?.attempts ?? [];
        // the retry waited for the provider's hint (1 s), not the 50 ms backoff
        expect((second?.started_at ?? 0) - (first?.started_at ?? 0)).toBeGreaterThanOrEqual(1);
      }
    });
  });

  it("keeps a slow provider to its bulkhead while other work goes past it", async () => {
    await fetch(`${stack.mockUrl}/_stats/reset`, { method: "POST" });
    const slow = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        submit(stack.apiUrl, PAID_KEY, { ...chat(`[[mock:delay=2000]] slow ${i}`), model: "slow-model" }),
      ),
    );
    const fast = await Promise.all(
      Array.from({ length: 4 }, (_, i) => submit(stack.apiUrl, PAID_KEY, chat(`fast ${i}`))),
    );
    const slowDone = await Promise.all(slow.map((r) => waitFinal(stack.apiUrl, PAID_KEY, r.body.id, 30)));
    const fastDone = await Promise.all(fast.map((r) => waitFinal(stack.apiUrl, PAID_KEY, r.body.id, 30)));
    expect([...slowDone, ...fastDone].every((j) => j.status === "succeeded")).toBe(true);
    const stats = await mockStats(stack.mockUrl);
    expect(stats.keys["sk-slow-upstream"]?.max_in_flight).toBe(2);
    // With 4 slots and no bulkhead, the slow jobs would hold every slot for 2 s and the fast
    // ones would wait for them; with it, the fast jobs finish before the first slow one does.
    const firstSlow = Math.min(...slowDone.map((j) => j.finished_at ?? Infinity));
    expect(Math.max(...fastDone.map((j) => j.finished_at ?? Infinity))).toBeLessThan(firstSlow);
    // handed-back jobs spent no attempt
    expect(slowDone.map((j) => j.attempts)).toEqual([1, 1, 1, 1, 1, 1]);
  });
});
