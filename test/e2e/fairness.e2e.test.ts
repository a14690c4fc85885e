import type { JobView } from "@switchyard/core";
import { http, Stack, testConfig, type ConfigDoc } from "@switchyard/testing";
import { chat, getJob, mockStats, submit, waitFinal } from "./helpers";

/**
 * The fair order across real processes: a light tenant's job is not held behind another
 * tenant's backlog in the same tier queue, not even when that backlog is marked high priority,
 * and four backlogged tenants start jobs in proportion to their tier and tenant weights.
 */
const KEYS = {
  heavy: "sk-fair-heavy-001",
  light: "sk-fair-light-001",
  paidA: "sk-fair-paid-a-01",
  paidB: "sk-fair-paid-b-01",
  freeA: "sk-fair-free-a-01",
  freeB: "sk-fair-free-b-01",
};

function fairConfig(mockUrl: string, prefix: string, concurrency: number): ConfigDoc {
  const cfg = testConfig(mockUrl, prefix, { worker: { concurrency, tier_weights: { paid: 4, free: 1 } } });
  cfg.tenants = [
    { id: "heavy", tier: "paid", api_keys: [KEYS.heavy] },
    { id: "light", tier: "paid", api_keys: [KEYS.light], dedicated_queue: true },
    { id: "paid-a", tier: "paid", api_keys: [KEYS.paidA], weight: 2 },
    { id: "paid-b", tier: "paid", api_keys: [KEYS.paidB] },
    { id: "free-a", tier: "free", api_keys: [KEYS.freeA] },
    { id: "free-b", tier: "free", api_keys: [KEYS.freeB] },
  ];
  return cfg;
}

const ADMIN = "admin-token-fair";
interface TenantRow {
  tenant: string;
  tier: string;
  weight: number;
  listed: number;
  running: number;
  backlogged: boolean;
  starts_last_minute: number;
  share_last_minute: number | null;
}

const started = async (apiUrl: string, key: string, id: string): Promise<number> => {
  const job: JobView = (await getJob(apiUrl, key, id)).body;
  return job.started_at ?? Infinity;
};

describe("fair scheduling", () => {
  describe("a light tenant behind another tenant's backlog (two workers, two slots each)", () => {
    let stack: Stack;
    beforeAll(async () => {
      stack = await Stack.start({
        workers: 2,
        config: (mockUrl, prefix) => fairConfig(mockUrl, prefix, 2),
      });
    });
    afterAll(async () => {
      await stack?.stop();
    });

    it.each(["normal", "high"])(
      "starts the light tenant's job next, whatever the backlog's priority (%s)",
      async (priority) => {
        const backlog = [];
        for (let i = 0; i < 60; i++)
          backlog.push(
            await submit(stack.apiUrl, KEYS.heavy, chat(`[[mock:delay=150]] heavy ${i}`, { priority })),
          );
        const light = await submit(stack.apiUrl, KEYS.light, chat("[[mock:delay=150]] light"));
        expect(light.status).toBe(202);
        const lightDone = await waitFinal(stack.apiUrl, KEYS.light, light.body.id, 30);
        expect(lightDone.status).toBe("succeeded");
        const lightStart = lightDone.started_at ?? Infinity;
        const submittedAt = light.body.created_at;
        // Heavy jobs that started after the light job was submitted and before it started: with
        // a FIFO tier queue that was the whole remaining backlog; in the fair order, at most the
        // picks already under way.
        const heavyStarts = await Promise.all(
          backlog.map((b) => started(stack.apiUrl, KEYS.heavy, b.body.id)),
        );
        const jumped = heavyStarts.filter((t) => t > submittedAt && t < lightStart).length;
        expect(jumped).toBeLessThanOrEqual(4);
        const remaining = heavyStarts.filter((t) => t > lightStart).length;
        expect(remaining).toBeGreaterThan(20); // the backlog was still long when the light job ran
        for (const b of backlog)
          expect((await waitFinal(stack.apiUrl, KEYS.heavy, b.body.id, 30)).status).toBe("succeeded");
      },
    );
  });

  it("shares starts by tier weight (4:1) and tenant weight (2:1) among four backlogged tenants", async () => {
    // One slot, and every job queued before the worker starts: the start order is the pick order.
    const stack = await Stack.start({
      workers: 0,
      adminToken: ADMIN,
      config: (mockUrl, prefix) => fairConfig(mockUrl, prefix, 1),
    });
    try {
      const tenants = [
        ["paid-a", KEYS.paidA],
        ["paid-b", KEYS.paidB],
        ["free-a", KEYS.freeA],
        ["free-b", KEYS.freeB],
      ] as const;
      const jobs: { tenant: string; key: string; id: string }[] = [];
      for (let i = 0; i < 30; i++)
        for (const [tenant, key] of tenants) {
          // Same length for every prompt: equal costs, so shares follow the weights alone.
          const res = await submit(stack.apiUrl, key, chat(`job ${String(i).padStart(2, "0")}`));
          jobs.push({ tenant, key, id: res.body.id });
        }
      // Before any worker runs, the API's metrics show each tenant's waiting jobs.
      const metrics = (await http<string>("GET", `${stack.apiUrl}/metrics`)).body;
      expect(metrics).toMatch(/switchyard_tenant_listed_jobs\{tenant="paid-a",tier="paid"[^}]*\} 30/);
      expect(metrics).toMatch(
        /switchyard_tenant_oldest_listed_seconds\{tenant="free-b",tier="free"[^}]*\} \d/,
      );
      await stack.addWorker();
      const done = await Promise.all(
        jobs.map(async (j) => ({ ...j, view: await waitFinal(stack.apiUrl, j.key, j.id, 30) })),
      );
      const order = done
        .sort((a, b) => (a.view.started_at ?? 0) - (b.view.started_at ?? 0))
        .map((j) => j.tenant);
      const first = order.slice(0, 30);
      const count = (t: string) => first.filter((x) => x === t).length;
      // Expected of 30 starts: paid 24 (paid-a 16, paid-b 8), free 6 (3 each).
      expect(count("paid-a")).toBeGreaterThanOrEqual(15);
      expect(count("paid-a")).toBeLessThanOrEqual(17);
      expect(count("paid-b")).toBeGreaterThanOrEqual(7);
      expect(count("paid-b")).toBeLessThanOrEqual(9);
      expect(count("free-a")).toBeGreaterThanOrEqual(2);
      expect(count("free-b")).toBeGreaterThanOrEqual(2);
      expect(count("free-a") + count("free-b")).toBeLessThanOrEqual(7);

      // The operators' view: every start of the last minute, each tenant's weight and tier.
      expect((await http("GET", `${stack.apiUrl}/admin/tenants`)).status).toBe(401);
      const view = await http<{ data: TenantRow[] }>("GET", `${stack.apiUrl}/admin/tenants`, {
        headers: { authorization: `Bearer ${ADMIN}` },
      });
      expect(view.status).toBe(200);
      const row = (id: string) => view.body.data.find((r) => r.tenant === id);
      expect(row("paid-a")).toMatchObject({
        tier: "paid",
        weight: 2,
        listed: 0,
        running: 0,
        starts_last_minute: 30,
      });
      expect(row("free-b")).toMatchObject({ tier: "free", weight: 1, starts_last_minute: 30 });
      expect(row("paid-b")?.share_last_minute).toBeCloseTo(0.25, 5);
      expect(row("heavy")).toMatchObject({ starts_last_minute: 0, share_last_minute: 0, backlogged: false });
    } finally {
      await stack.stop();
    }
  });

  it("gives freed capacity of a saturated key to the light tenant next, not in arrival order", async () => {
    // One upstream key that takes one call at a time: capacity, not slots, is the bottleneck.
    const stack = await Stack.start({
      workers: 2,
      config: (mockUrl, prefix) => {
        const cfg = fairConfig(mockUrl, prefix, 64);
        const [openai] = cfg.providers as Record<string, unknown>[];
        openai!.keys = [{ id: "k1", secret: "sk-upstream-1", max_concurrency: 1 }];
        return cfg;
      },
    });
    try {
      const backlog = [];
      for (let i = 0; i < 20; i++)
        backlog.push(await submit(stack.apiUrl, KEYS.heavy, chat(`[[mock:delay=150]] heavy ${i}`)));
      const light = await submit(stack.apiUrl, KEYS.light, chat("[[mock:delay=150]] light"));
      const lightDone = await waitFinal(stack.apiUrl, KEYS.light, light.body.id, 30);
      expect(lightDone.status).toBe("succeeded");
      const heavyStarts = await Promise.all(
        backlog.map(async (b) => {
          const done = await waitFinal(stack.apiUrl, KEYS.heavy, b.body.id, 30);
          expect(done.status).toBe("succeeded");
          // The upstream call's start (the last attempt), not the first run that found no capacity.
          const calls = (done.result?.attempts ?? []).filter((a) => a.outcome === "succeeded");
          return calls[calls.length - 1]?.started_at ?? Infinity;
        }),
      );
      const lightCall =
        (lightDone.result?.attempts ?? []).find((a) => a.outcome === "succeeded")?.started_at ?? Infinity;
      const jumped = heavyStarts.filter((t) => t > light.body.created_at && t < lightCall).length;
      const after = heavyStarts.filter((t) => t > lightCall).length;
      console.info(
        `saturated key: ${jumped} heavy calls went between the light job's submission and its call; ${after} after it`,
      );
      expect(jumped).toBeLessThanOrEqual(3);
      expect(after).toBeGreaterThan(12);
      const stats = await mockStats(stack.mockUrl);
      expect(stats.keys["sk-upstream-1"]?.rate_limited ?? 0).toBe(0);
      expect(stats.keys["sk-upstream-1"]?.max_in_flight).toBe(1);
    } finally {
      await stack.stop();
    }
  });
});
