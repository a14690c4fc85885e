import { Router } from "express";
import { badRequest, notFound, ownEntry, type SwitchyardConfig } from "@switchyard/core";
import type { KeyPool, KeyView } from "@switchyard/limiter";
import type { AnswerCache, FairQueue, FairTenantView, JobProducer } from "@switchyard/queue";
import { z } from "zod";
import { Counter, Gauge, type Registry } from "@switchyard/observability";
import { adminAuth } from "../auth";

/**
 * GET /admin/keys: every provider key's state as the whole fleet sees it (limits, use in the
 * rolling windows, calls in flight, cooldowns, why a key is out of the pool, health). Keys are
 * named by id and the last four characters of the secret, never more.
 */
export function adminRouter(
  config: SwitchyardConfig,
  pool: KeyPool,
  fair: FairQueue,
  producer: JobProducer,
  cache: AnswerCache,
  adminToken: string | undefined,
): Router {
  const router = Router();
  /** GET /admin/cache: the answer cache's fleet-wide counters and size. */
  router.get("/admin/cache", adminAuth(adminToken), async (_req, res) => {
    const stats = await cache.stats();
    const lookups = stats.hits + stats.coalesced + stats.misses;
    res.json({
      object: "cache_stats",
      ...stats,
      hit_rate: lookups > 0 ? (stats.hits + stats.coalesced) / lookups : null,
      limits: config.cache,
    });
  });
  /** DELETE /admin/cache[?tenant=<id>|?route=<alias>]: purges entries; answers how many. */
  router.delete("/admin/cache", adminAuth(adminToken), async (req, res) => {
    const tenant = typeof req.query.tenant === "string" ? req.query.tenant : undefined;
    const route = typeof req.query.route === "string" ? req.query.route : undefined;
    if (tenant !== undefined && route !== undefined)
      throw badRequest("purge by tenant or by route, not both", [{ path: "query", message: "one filter" }]);
    if (tenant !== undefined && !config.tenants.some((t) => t.id === tenant))
      throw notFound(`no tenant ${tenant.slice(0, 64)}`);
    if (route !== undefined && !ownEntry(config.models, route))
      throw notFound(`no route ${route.slice(0, 64)}`);
    const purged = await cache.purge(
      tenant !== undefined ? { tenant } : route !== undefined ? { route } : undefined,
    );
    res.json({ object: "cache_purge", purged, ...(tenant ? { tenant } : {}), ...(route ? { route } : {}) });
  });
  /**
   * GET /admin/tenants: the fair-share view. Per tenant its tier and weight, jobs listed (waiting
   * their turn) and running, its pass and lag in the fair order, the oldest listed job's age and
   * its starts and share of starts over the last minute.
   */
  router.get("/admin/tenants", adminAuth(adminToken), async (_req, res) => {
    const views = await fair.inspect(config.tenants.map((t) => ({ id: t.id, tier: t.tier })));
    const running = new Map<string, number>();
    for (const queue of producer.queues.values())
      for (const job of await queue.getActive(0, RUNNING_SCAN - 1)) {
        const tenant = tenantOfJob(job.data);
        if (tenant) running.set(tenant, (running.get(tenant) ?? 0) + 1);
      }
    const byId = new Map(config.tenants.map((t) => [t.id, t]));
    res.json({
      object: "list",
      generated_at: Date.now(),
      tier_weights: config.worker.tier_weights,
      cost: config.scheduler.cost,
      data: views.map((v) => ({
        ...v,
        weight: byId.get(v.tenant)?.weight ?? 1,
        dedicated_queue: byId.get(v.tenant)?.dedicated_queue ?? false,
        running: running.get(v.tenant) ?? 0,
      })),
    });
  });
  router.get("/admin/keys", adminAuth(adminToken), async (_req, res) => {
    const providers = await Promise.all(
      config.providers.map(async (p) => ({
        id: p.id,
        type: p.type,
        shares: p.limiter.shares,
        keys: await pool.inspect(p),
      })),
    );
    res.json({ object: "list", window_seconds: 60, generated_at: Date.now(), providers });
  });
  return router;
}

/** Running jobs counted per queue for the tenants view (a view, not an account: bounded). */
const RUNNING_SCAN = 5_000;
const tenantOfJob = (data: unknown): string | undefined => {
  const r = z.object({ tenant_id: z.string() }).safeParse(data);
  return r.success ? r.data.tenant_id : undefined;
};

const STATUS_CODE: Record<KeyView["status"], number> = { active: 0, cooling: 1, disabled: 2 };

interface FleetView {
  providers: { provider: string; keys: KeyView[] }[];
  tenants: FairTenantView[];
}

/**
 * Gauges read from Redis at each scrape: the key pool by provider and key id, the fair queue by
 * tenant (tenants come from the config: a bounded label set).
 */
export function fleetMetrics(
  config: SwitchyardConfig,
  pool: KeyPool,
  fair: FairQueue,
  registry: Registry,
): void {
  let views: Promise<FleetView> | undefined;
  let skips = 0;
  // One Redis read per scrape, shared by every gauge below. When Redis cannot be read the scrape
  // still answers with the process's own metrics; the Redis-derived gauges are left empty.
  const read = (): Promise<FleetView> =>
    (views ??= Promise.all([
      Promise.all(config.providers.map(async (p) => ({ provider: p.id, keys: await pool.inspect(p) }))),
      fair.inspect(config.tenants.map((t) => ({ id: t.id, tier: t.tier }))),
    ])
      .then(([providers, tenants]) => ({ providers, tenants }))
      .catch(() => {
        skips += 1;
        return { providers: [], tenants: [] };
      })
      .finally(() => setTimeout(() => (views = undefined), 100)));
  const tenantGauge = (name: string, help: string, value: (t: FairTenantView) => number | null) =>
    new Gauge({
      name,
      help,
      labelNames: ["tenant", "tier"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const t of (await read()).tenants) {
          const v = value(t);
          if (v !== null) this.set({ tenant: t.tenant, tier: t.tier }, v);
        }
      },
    });
  tenantGauge(
    "switchyard_tenant_listed_jobs",
    "Jobs listed in the fair queue, waiting their turn",
    (t) => t.listed,
  );
  tenantGauge(
    "switchyard_tenant_oldest_listed_seconds",
    "Age of the tenant's oldest job waiting its turn in the fair queue (absent when none waits)",
    (t) => t.oldest_listed_seconds,
  );
  tenantGauge(
    "switchyard_tenant_lag",
    "How far the tenant's virtual time is ahead of its tier's (cost / weight; 0: it starts next)",
    (t) => t.lag,
  );
  const gauge = (
    name: string,
    help: string,
    labelNames: readonly ("provider" | "key" | "window")[],
    fill: (g: Gauge<"provider" | "key" | "window">, provider: string, key: KeyView) => void,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const { provider, keys } of (await read()).providers)
          for (const k of keys) fill(this, provider, k);
      },
    });
  gauge(
    "switchyard_key_status",
    "Key state: 0 active, 1 cooling down after a 429, 2 out of the pool",
    ["provider", "key"],
    (g, provider, k) => g.set({ provider, key: k.id }, STATUS_CODE[k.status]),
  );
  gauge(
    "switchyard_key_in_flight",
    "Calls in flight on the key across the fleet",
    ["provider", "key"],
    (g, provider, k) => g.set({ provider, key: k.id }, k.usage.in_flight),
  );
  gauge(
    "switchyard_key_window_usage",
    "Use of the key in its rolling windows (requests and tokens per minute, requests per day)",
    ["provider", "key", "window"],
    (g, provider, k) => {
      g.set({ provider, key: k.id, window: "rpm" }, k.usage.requests);
      g.set({ provider, key: k.id, window: "tpm" }, k.usage.tokens);
      g.set({ provider, key: k.id, window: "rpd" }, k.usage.requests_today);
    },
  );
  gauge(
    "switchyard_key_remaining",
    "Room left on the key's configured key-wide limits (rpm, tpm, rpd)",
    ["provider", "key", "window"],
    (g, provider, k) => {
      if (k.limits.rpm)
        g.set({ provider, key: k.id, window: "rpm" }, Math.max(0, k.limits.rpm - k.usage.requests));
      if (k.limits.tpm)
        g.set({ provider, key: k.id, window: "tpm" }, Math.max(0, k.limits.tpm - k.usage.tokens));
      if (k.limits.rpd)
        g.set({ provider, key: k.id, window: "rpd" }, Math.max(0, k.limits.rpd - k.usage.requests_today));
    },
  );
  new Counter({
    name: "switchyard_metrics_redis_skipped_total",
    help: "Scrapes that left out the Redis-derived gauges because Redis could not be read",
    registers: [registry],
    // Collected with the gauges, after the shared read: a scrape shows its own skip.
    async collect() {
      await read();
      if (skips > 0) this.inc(skips);
      skips = 0;
    },
  });
}
