import { setTimeout as sleep } from "node:timers/promises";
import type { KeyView } from "@switchyard/limiter";
import { http, PAID_KEY, Stack, testConfig, type ConfigDoc } from "@switchyard/testing";
import { chat, getJob, mockStats, submit, trail, waitFinal } from "./helpers";

/**
 * The fleet-wide key pool end to end, against the mock enforcing the same limits the config
 * gives: three worker processes together stay inside each key's limits; unused tokens are
 * refunded; a SIGKILLed worker's slot comes back once it expires; a 429 moves work to another
 * key; a 401 takes a key out until its probe works; a saturated model leaves others alone.
 * No test here waits for a 60 s window to roll over: jobs left waiting are cancelled.
 */
const ADMIN = "admin-token-for-tests";

function withOpenAI(keys: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  return (mockUrl: string, prefix: string): ConfigDoc => {
    const cfg = testConfig(mockUrl, prefix, { worker: { concurrency: 16 } });
    const providers = cfg.providers as Record<string, unknown>[];
    Object.assign(providers[0] as Record<string, unknown>, { keys, ...extra });
    return cfg;
  };
}

async function adminKeys(stack: Stack, provider = "openai"): Promise<KeyView[]> {
  const res = await http<{ providers: { id: string; keys: KeyView[] }[] }>(
    "GET",
    `${stack.apiUrl}/admin/keys`,
    {
      headers: { authorization: `Bearer ${ADMIN}` },
    },
  );
  if (res.status !== 200) throw new Error(`admin/keys answered ${res.status}`);
  return res.body.providers.find((p) => p.id === provider)?.keys ?? [];
}

const cancel = (stack: Stack, id: string) =>
  http("DELETE", `${stack.apiUrl}/v1/jobs/${id}`, { key: PAID_KEY });

async function until<T>(what: string, probe: () => Promise<T | undefined>, seconds = 20): Promise<T> {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

describe("fleet-wide key pool", () => {
  describe("three workers sharing three keys", () => {
    let stack: Stack;
    const limits = { "sk-lim-1": { rpm: 12 }, "sk-lim-2": { rpm: 8 }, "sk-lim-3": { rpm: 5 } };
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 3,
        adminToken: ADMIN,
        mockEnv: { MOCK_LIMITS: JSON.stringify(limits), MOCK_LATENCY_MS: "50" },
        config: withOpenAI([
          { id: "k1", secret: "sk-lim-1", rpm: 12 },
          { id: "k2", secret: "sk-lim-2", rpm: 8 },
          { id: "k3", secret: "sk-lim-3", rpm: 5 },
        ]),
      });
    });
    afterAll(() => stack?.stop());

    it("stays inside every key's limit together, and jobs beyond it wait without an attempt", async () => {
      const jobs = await Promise.all(
        Array.from({ length: 40 }, (_, i) => submit(stack.apiUrl, PAID_KEY, chat(`limit ${i}`))),
      );
      const ids = jobs.map((j) => j.body.id);
      // The keys allow 25 requests a minute between them: 25 succeed, 15 wait for the window.
      const done = await until("25 jobs to succeed", async () => {
        const views = await Promise.all(
          ids.map(async (id) => (await getJob(stack.apiUrl, PAID_KEY, id)).body),
        );
        const ok = views.filter((v) => v.status === "succeeded");
        return ok.length >= 25 ? views : undefined;
      });
      await sleep(1_000); // had anything gone past the limits, it would have been sent by now
      const stats = await mockStats(stack.mockUrl);
      for (const [key, l] of Object.entries(limits)) {
        expect(stats.keys[key]?.rate_limited ?? 0).toBe(0);
        expect(stats.keys[key]?.window_max.offered.requests).toBe(l.rpm);
      }
      const waiting = (
        await Promise.all(ids.map(async (id) => (await getJob(stack.apiUrl, PAID_KEY, id)).body))
      ).filter((v) => v.status === "queued");
      expect(done.filter((v) => v.status === "succeeded")).toHaveLength(25);
      expect(waiting).toHaveLength(15);
      expect(waiting.every((v) => (v.attempts ?? 0) === 0)).toBe(true);
      const view = await adminKeys(stack);
      expect(view.map((k) => [k.id, k.usage.requests])).toEqual([
        ["k1", 12],
        ["k2", 8],
        ["k3", 5],
      ]);
      expect(JSON.stringify(view)).not.toContain("sk-lim");
      const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
      expect(metrics).toMatch(
        /switchyard_key_window_usage\{provider="openai",key="k1",window="rpm"[^}]*\} 12/,
      );
      for (const v of waiting) expect((await cancel(stack, v.id)).status).toBeLessThan(300);
      for (const v of waiting)
        expect((await waitFinal(stack.apiUrl, PAID_KEY, v.id, 10)).status).toBe("cancelled");
    });
  });

  describe("token reconciliation", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        adminToken: ADMIN,
        mockEnv: { MOCK_LIMITS: JSON.stringify({ "sk-tok-1": { tpm: 2000 } }) },
        config: withOpenAI([{ id: "t1", secret: "sk-tok-1", tpm: 2000 }]),
      });
    });
    afterAll(() => stack?.stop());

    it("refunds the unused part of max_tokens, so more calls fit than the reservations suggest", async () => {
      // Each call reserves its prompt plus max_tokens 600 (about 610 tokens); it uses about 15.
      // Without refunds the fourth call would wait for the window; with them, ten fit at once.
      for (let i = 0; i < 10; i++) {
        const res = await submit(stack.apiUrl, PAID_KEY, chat(`refund ${i}`, { max_tokens: 600 }));
        const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id, 10);
        expect(done.status).toBe("succeeded");
      }
      const [key] = await adminKeys(stack);
      const stats = await mockStats(stack.mockUrl);
      expect(key?.usage.tokens).toBe(stats.keys["sk-tok-1"]?.tokens);
      expect(key?.usage.tokens).toBeLessThan(300);
    });
  });

  describe("a worker killed during a call", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        adminToken: ADMIN,
        config: withOpenAI([{ id: "c1", secret: "sk-conc-1", max_concurrency: 1 }], { timeout_ms: 1000 }),
      });
    });
    afterAll(() => stack?.stop());

    it("holds its slot until the slot expires, then another worker runs the job", async () => {
      const res = await submit(
        stack.apiUrl,
        PAID_KEY,
        chat("[[mock:delay=30000,times=1,id=slow-kill]] hold"),
      );
      await until("the call to reach the mock", async () =>
        ((await mockStats(stack.mockUrl)).keys["sk-conc-1"]?.in_flight ?? 0) > 0 ? true : undefined,
      );
      const [w1] = stack.workers;
      await w1?.kill();
      const killedAt = Date.now();
      expect((await adminKeys(stack))[0]?.usage.in_flight).toBe(1); // the dead worker's slot
      await stack.addWorker();
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id, 30);
      expect(done.status).toBe("succeeded");
      // The slot lives timeout_ms + 5 s after it was taken: the job could not run before that.
      expect(Date.now() - killedAt).toBeGreaterThanOrEqual(4_000);
      expect((await adminKeys(stack))[0]?.usage.in_flight).toBe(0);
    });
  });

  describe("429s and rejected keys", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        adminToken: ADMIN,
        config: withOpenAI(
          [
            { id: "r1", secret: "sk-r-1" },
            { id: "r2", secret: "sk-r-2" },
          ],
          { limiter: { probe_interval_ms: 500 } },
        ),
      });
    });
    afterAll(() => stack?.stop());

    it("cools a key down after a 429 and moves the job to another key without spending an attempt", async () => {
      const res = await submit(
        stack.apiUrl,
        PAID_KEY,
        chat("[[mock:status=429,times=1,id=cool,retry_after=3]] x"),
      );
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id, 10);
      expect(done.status).toBe("succeeded");
      expect(trail(done.result?.attempts)).toEqual(["openai:failed:rate_limit", "openai:succeeded"]);
      // The second call went to the other key at once: no wait for the 3 s hint.
      const [first, second] = done.result?.attempts ?? [];
      expect((second?.started_at ?? 0) - (first?.started_at ?? 0)).toBeLessThan(3);
      let stats = await mockStats(stack.mockUrl);
      expect(stats.keys["sk-r-1"]?.rate_limited).toBe(1);
      expect(stats.keys["sk-r-2"]?.by_status["200"]).toBe(1);
      // While r1 cools down, every worker leaves it alone.
      for (let i = 0; i < 4; i++) {
        const r = await submit(stack.apiUrl, PAID_KEY, chat(`cool ${i}`));
        expect((await waitFinal(stack.apiUrl, PAID_KEY, r.body.id, 10)).status).toBe("succeeded");
      }
      stats = await mockStats(stack.mockUrl);
      expect(stats.keys["sk-r-1"]?.requests).toBe(1);
      expect(stats.keys["sk-r-2"]?.requests).toBe(5);
      const r1 = (await adminKeys(stack)).find((k) => k.id === "r1");
      expect(r1?.status).toBe("cooling");
      expect(r1?.health.rate_limited).toBe(1);
    });

    it("takes a key out on 401 with the reason, and its probe puts it back when it works", async () => {
      await until("r1 to finish cooling down", async () =>
        (await adminKeys(stack)).every((k) => k.status === "active") ? true : undefined,
      );
      await http("POST", `${stack.mockUrl}/_control/keys`, { json: { key: "sk-r-1", revoked: true } });
      const res = await submit(stack.apiUrl, PAID_KEY, chat("after revoke"));
      const done = await waitFinal(stack.apiUrl, PAID_KEY, res.body.id, 10);
      // r1 answers 401 and leaves the pool; the job goes on to r2 without spending an attempt.
      expect(done.status).toBe("succeeded");
      expect(trail(done.result?.attempts)).toEqual(["openai:failed:auth", "openai:succeeded"]);
      expect(done.result?.attempts?.[0]?.status).toBe(401);
      const r1 = (await adminKeys(stack)).find((k) => k.id === "r1");
      expect(r1?.status).toBe("disabled");
      expect(r1?.disabled?.reason).toMatch(/401/);
      await sleep(1_500); // its probes keep failing while the key is revoked
      expect((await adminKeys(stack)).find((k) => k.id === "r1")?.status).toBe("disabled");
      await http("POST", `${stack.mockUrl}/_control/keys`, { json: { key: "sk-r-1", revoked: false } });
      await until("the probe to restore r1", async () =>
        (await adminKeys(stack)).find((k) => k.id === "r1")?.status === "active" ? true : undefined,
      );
      const metrics = await (await fetch(`${stack.apiUrl}/metrics`)).text();
      expect(metrics).toMatch(/switchyard_key_status\{provider="openai",key="r1"[^}]*\} 0/);
    });
  });

  describe("a saturated model", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 1,
        config: withOpenAI([{ id: "m1", secret: "sk-m-1", models: { "gpt-4o": { rpm: 2 } } }]),
      });
    });
    afterAll(() => stack?.stop());

    it("does not delay jobs for another model", async () => {
      const slow = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          submit(stack.apiUrl, PAID_KEY, chat(`big ${i}`, { model: "smart" })),
        ),
      );
      await sleep(300);
      const fast = await Promise.all(
        Array.from({ length: 5 }, (_, i) => submit(stack.apiUrl, PAID_KEY, chat(`small ${i}`))),
      );
      for (const f of fast)
        expect((await waitFinal(stack.apiUrl, PAID_KEY, f.body.id, 10)).status).toBe("succeeded");
      const views = await Promise.all(
        slow.map(async (s) => (await getJob(stack.apiUrl, PAID_KEY, s.body.id)).body),
      );
      expect(views.filter((v) => v.status === "succeeded")).toHaveLength(2);
      const waiting = views.filter((v) => v.status === "queued");
      expect(waiting).toHaveLength(3);
      for (const v of waiting) await cancel(stack, v.id);
    });
  });
});
