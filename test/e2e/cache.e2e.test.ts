import { Redis } from "ioredis";
import type { JobView } from "@switchyard/core";
import { FREE_KEY, http, OTHER_KEY, PAID_KEY, Stack, testConfig } from "@switchyard/testing";
import { chat, mockStats, submit, waitFinal } from "./helpers";

/**
 * The answer cache through the real processes: exact hits without an upstream call, a key that
 * changes with everything that changes the answer, tenant scope, bypasses, single-flight across
 * two workers, a failed leader handing over, negative caching of 400s only, stats and purges.
 */
const ADMIN = "admin-token-cache";

describe("answer cache", () => {
  let stack: Stack;
  let redis: Redis;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 2,
      adminToken: ADMIN,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix, { queue: { attempts: 1 } });
        Object.assign(cfg.models as Record<string, unknown>, {
          cached: { provider: "openai", model: "gpt-4o-mini", cache: { mode: "exact", ttl_seconds: 600 } },
          shared: { provider: "openai", model: "gpt-4o-mini", cache: { scope: "global" } },
          "cached-4o": { provider: "openai", model: "gpt-4o", cache: {} },
        });
        cfg.cache = { negative_ttl_seconds: 30 };
        // other-co opts out of caching altogether.
        const tenants = cfg.tenants as Record<string, unknown>[];
        tenants[2]!.cache = { mode: "off" };
        return cfg;
      },
    });
    redis = new Redis(stack.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.stop();
  });

  const calls = async () => (await mockStats(stack.mockUrl)).formats.openai ?? 0;
  const run = async (key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) => {
    const res = await submit(stack.apiUrl, key, body, headers);
    expect(res.status).toBe(202);
    return waitFinal(stack.apiUrl, key, res.body.id);
  };
  const ask = (text: string, extra: Record<string, unknown> = {}) =>
    chat(text, { model: "cached", ...extra });

  it("serves a repeated request from the cache without calling upstream", async () => {
    const first = await run(PAID_KEY, ask("what is fair queueing?"));
    expect(first.status).toBe("succeeded");
    expect(first.result?.cache).toBeUndefined();
    const before = await calls();
    const second = await run(PAID_KEY, ask("what is fair queueing?"));
    expect(second.status).toBe("succeeded");
    expect(second.result).toMatchObject({
      output_text: first.result?.output_text,
      finish_reason: "stop",
      provider: "openai",
      cache: { hit: true, kind: "exact" },
    });
    expect(second.result?.cache?.coalesced).toBeUndefined();
    expect(second.result?.cache?.key_age_seconds).toBeGreaterThanOrEqual(0);
    expect(second.usage).toEqual({ input_tokens: 0, output_tokens: 0 });
    expect(await calls()).toBe(before);
  });

  it("misses when anything that changes the answer differs: tenant, model, parameters, messages", async () => {
    await run(PAID_KEY, ask("the base question", { max_tokens: 20, temperature: 0.5 }));
    const before = await calls();
    const variants: [string, Record<string, unknown>][] = [
      [FREE_KEY, ask("the base question", { max_tokens: 20, temperature: 0.5 })],
      [PAID_KEY, ask("the base question", { model: "cached-4o", max_tokens: 20, temperature: 0.5 })],
      [PAID_KEY, ask("the base question", { max_tokens: 20, temperature: 0.6 })],
      [PAID_KEY, ask("the base question", { max_tokens: 21, temperature: 0.5 })],
      [PAID_KEY, ask("the base question!", { max_tokens: 20, temperature: 0.5 })],
    ];
    for (const [key, body] of variants) {
      const done = await run(key, body);
      expect(done.status).toBe("succeeded");
      expect(done.result?.cache).toBeUndefined();
    }
    expect(await calls()).toBe(before + variants.length);
  });

  it("shares a global route between tenants, and never serves a tenant that turned caching off", async () => {
    await run(PAID_KEY, chat("shared question", { model: "shared" }));
    const before = await calls();
    expect((await run(FREE_KEY, chat("shared question", { model: "shared" }))).result?.cache?.hit).toBe(true);
    expect(await calls()).toBe(before);
    const optedOut = await run(OTHER_KEY, chat("shared question", { model: "shared" }));
    expect(optedOut.result?.cache).toBeUndefined();
    expect(await calls()).toBe(before + 1);
  });

  it("bypasses the cache for no-cache, no-store and a body with cache: false", async () => {
    await run(PAID_KEY, ask("bypass me"));
    let n = await calls();
    const noCache = await run(PAID_KEY, ask("bypass me"), { "cache-control": "no-cache" });
    expect(noCache.result?.cache).toBeUndefined();
    expect(await calls()).toBe(++n);
    const noStore = await run(PAID_KEY, ask("bypass me"), { "cache-control": "no-store" });
    expect(noStore.result?.cache).toBeUndefined();
    expect(await calls()).toBe(++n);
    const off = await run(PAID_KEY, ask("bypass me", { cache: false }));
    expect(off.result?.cache).toBeUndefined();
    expect(await calls()).toBe(n + 1);
    // no-store wrote nothing: a request that was only ever sent with no-store misses.
    await run(PAID_KEY, ask("never stored"), { "cache-control": "no-store" });
    expect((await run(PAID_KEY, ask("never stored"))).result?.cache).toBeUndefined();
  });

  it("makes one upstream call for 50 identical requests at once, across two workers", async () => {
    const before = await calls();
    const body = ask("[[mock:delay=400]] the same question, fifty times");
    const submitted = await Promise.all(
      Array.from({ length: 50 }, () => submit(stack.apiUrl, PAID_KEY, body)),
    );
    const done: JobView[] = await Promise.all(
      submitted.map((s) => waitFinal(stack.apiUrl, PAID_KEY, s.body.id)),
    );
    expect(done.every((j) => j.status === "succeeded")).toBe(true);
    expect(new Set(done.map((j) => j.result?.output_text)).size).toBe(1);
    expect(await calls()).toBe(before + 1);
    const served = done.filter((j) => j.result?.cache?.hit);
    expect(served).toHaveLength(49);
    expect(served.filter((j) => j.result?.cache?.coalesced).length).toBeGreaterThan(0);
  });

  it("hands over when the leader fails: one of those waiting calls upstream and the rest share it", async () => {
    const before = await calls();
    // The first call answers 500 (one attempt per link here: the leader fails); the next succeeds.
    const body = ask("[[mock:status=500,times=1,id=leader-fails,delay=300]] hand over");
    const submitted = await Promise.all(
      Array.from({ length: 5 }, () => submit(stack.apiUrl, PAID_KEY, body)),
    );
    const done = await Promise.all(submitted.map((s) => waitFinal(stack.apiUrl, PAID_KEY, s.body.id)));
    expect(done.filter((j) => j.status === "failed")).toHaveLength(1);
    expect(done.filter((j) => j.status === "succeeded")).toHaveLength(4);
    expect(done.filter((j) => j.result?.cache?.hit)).toHaveLength(3);
    expect(await calls()).toBe(before + 2);
  });

  it("remembers an upstream 400 for its TTL, and never a 500", async () => {
    const bad = ask("[[mock:status=400]] a request the upstream refuses");
    const first = await run(PAID_KEY, bad);
    expect(first.status).toBe("failed");
    expect(first.error?.type).toBe("client");
    const before = await calls();
    const again = await run(PAID_KEY, bad);
    expect(again.status).toBe("failed");
    expect(again.error).toMatchObject({ type: "client", cache: { hit: true, kind: "negative" } });
    expect(await calls()).toBe(before);
    const negKeys = await redis.keys(`${stack.prefix}:cache:neg:*`);
    expect(negKeys.length).toBeGreaterThan(0);
    for (const k of negKeys) {
      const ttl = await redis.pttl(k);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(30_000);
    }

    const flaky = ask("[[mock:status=500]] an upstream in trouble");
    expect((await run(PAID_KEY, flaky)).status).toBe("failed");
    const n = await calls();
    expect((await run(PAID_KEY, flaky)).error?.cache).toBeUndefined();
    expect(await calls()).toBe(n + 1);
  });

  it("reports its counters and purges a tenant's entries", async () => {
    const admin = { headers: { authorization: `Bearer ${ADMIN}` } };
    expect((await http("GET", `${stack.apiUrl}/admin/cache`)).status).toBe(401);
    const stats = await http<Record<string, number>>("GET", `${stack.apiUrl}/admin/cache`, admin);
    expect(stats.status).toBe(200);
    expect(stats.body.hits).toBeGreaterThan(0);
    expect(stats.body.coalesced).toBeGreaterThan(0);
    expect(stats.body.stores).toBeGreaterThan(0);
    expect(stats.body.entries).toBeGreaterThan(0);
    expect(stats.body.negative_hits).toBeGreaterThan(0);
    // What the hits would have cost upstream (gpt-4o-mini is in the price table).
    expect(stats.body.cost_saved_usd).toBeGreaterThan(0);
    expect(stats.body.tokens_saved).toBeGreaterThan(0);

    await run(FREE_KEY, ask("purge me"));
    const purged = await http<{ purged: number }>(
      "DELETE",
      `${stack.apiUrl}/admin/cache?tenant=free-co`,
      admin,
    );
    expect(purged.status).toBe(200);
    expect(purged.body.purged).toBeGreaterThan(0);
    const before = await calls();
    expect((await run(FREE_KEY, ask("purge me"))).result?.cache).toBeUndefined();
    expect(await calls()).toBe(before + 1);
    // The paid tenant's entries stayed.
    expect((await run(PAID_KEY, ask("what is fair queueing?"))).result?.cache?.hit).toBe(true);
    expect((await http("DELETE", `${stack.apiUrl}/admin/cache?tenant=nobody`, admin)).status).toBe(404);
  });
});

describe("semantic cache", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 1,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix);
        Object.assign(cfg.models as Record<string, unknown>, {
          faq: {
            provider: "openai",
            model: "gpt-4o-mini",
            cache: { mode: "semantic", embedding: { provider: "openai", model: "text-embedding-3-small" } },
          },
          "faq-exact-only": {
            provider: "openai",
            model: "gpt-4o-mini",
            cache: { mode: "exact" },
          },
        });
        return cfg;
      },
    });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const calls = async () => (await mockStats(stack.mockUrl)).formats.openai ?? 0;
  /** The cosine similarity the mock's embeddings give two prompts (as the cache embeds them). */
  const similarity = async (a: string, b: string): Promise<number> => {
    const res = await http<{ data: { embedding: number[] }[] }>("POST", `${stack.mockUrl}/v1/embeddings`, {
      key: "sk-upstream-1",
      json: { model: "m", input: [`user: ${a}`, `user: ${b}`] },
    });
    const [x = [], y = []] = res.body.data.map((d) => d.embedding);
    const dot = x.reduce((s, v, i) => s + v * (y[i] ?? 0), 0);
    return dot / Math.sqrt(x.reduce((s, v) => s + v * v, 0) * y.reduce((s, v) => s + v * v, 0));
  };
  const run = async (key: string, text: string, extra: Record<string, unknown> = {}) => {
    const res = await submit(stack.apiUrl, key, chat(text, { model: "faq", ...extra }));
    expect(res.status).toBe(202);
    return waitFinal(stack.apiUrl, key, res.body.id);
  };

  it("answers a paraphrase from the cache, and says how similar it was", async () => {
    const first = await run(PAID_KEY, "What is the capital of France?");
    expect(first.result?.cache).toBeUndefined();
    const before = await calls();
    const para = await run(PAID_KEY, "capital of france, please");
    expect(para.status).toBe("succeeded");
    expect(para.result?.output_text).toBe(first.result?.output_text);
    expect(para.result?.cache).toMatchObject({ hit: true, kind: "semantic" });
    expect(para.result?.cache?.similarity).toBeGreaterThanOrEqual(0.95);
    expect(await calls()).toBe(before);
  });

  it.each([
    ["How do I enable two-factor login?", "How do I disable two-factor login?"],
    ["What is 2+2?", "What is 2+3?"],
    ["Is the store open on sundays?", "Is the store not open on sundays?"],
    ["Can I return shoes after 30 days?", "Can't I return shoes after 30 days?"],
  ])("never answers %j with the answer to %j (guarded)", async (a, b) => {
    // The embeddings alone would call them the same question (as real ones do, at 0.96).
    expect(await similarity(a, b)).toBeGreaterThanOrEqual(0.95);
    await run(PAID_KEY, a);
    const before = await calls();
    const other = await run(PAID_KEY, b);
    expect(other.result?.cache).toBeUndefined();
    expect(other.result?.output_text).toBe(`Echo: ${b}`);
    expect(await calls()).toBe(before + 1);
  });

  it("never serves one tenant another's answer, nor across parameters", async () => {
    await run(PAID_KEY, "Which ocean is the largest?");
    let n = await calls();
    expect((await run(FREE_KEY, "which is the largest ocean")).result?.cache).toBeUndefined();
    expect(await calls()).toBe(++n);
    expect(
      (await run(PAID_KEY, "which is the largest ocean", { temperature: 1.5 })).result?.cache,
    ).toBeUndefined();
    expect(await calls()).toBe(++n);
    expect((await run(PAID_KEY, "which is the largest ocean")).result?.cache?.kind).toBe("semantic");
    expect(await calls()).toBe(n);
  });

  it("looks up only exact keys on a route in exact mode", async () => {
    const exact = (text: string) =>
      submit(stack.apiUrl, PAID_KEY, chat(text, { model: "faq-exact-only" })).then((r) =>
        waitFinal(stack.apiUrl, PAID_KEY, r.body.id),
      );
    await exact("Where is the Eiffel tower?");
    const before = await calls();
    expect((await exact("eiffel tower, where?")).result?.cache).toBeUndefined();
    expect((await exact("Where is the Eiffel tower?")).result?.cache?.kind).toBe("exact");
    expect(await calls()).toBe(before + 1);
  });
});
