import { Router } from "express";
import {
  badRequest,
  notFound,
  ownEntry,
  publicConfig,
  type LiveConfig,
  type SwitchyardConfig,
} from "@switchyard/core";
import type { KeyPool } from "@switchyard/limiter";
import type { AnswerCache, FairQueue, JobProducer } from "@switchyard/queue";
import { z } from "zod";
import { adminAuth } from "../auth";

/**
 * GET /admin/keys: every provider key's state as the whole fleet sees it (limits, use in the
 * rolling windows, calls in flight, cooldowns, why a key is out of the pool, health). Keys are
 * named by id and the last four characters of the secret, never more.
 */
export function adminRouter(
  config: SwitchyardConfig,
  live: LiveConfig,
  pool: KeyPool,
  fair: FairQueue,
  producer: JobProducer,
  cache: AnswerCache,
  adminToken: string | undefined,
): Router {
  const router = Router();
  /**
   * GET /admin/config: the running config version (hash of the file's bytes, as sha256sum
   * prints it; when and from where it was loaded; settings that wait for a restart) and the
   * config itself without secrets.
   */
  router.get("/admin/config", adminAuth(adminToken), (_req, res) => {
    const v = live.current;
    res.json({
      object: "config",
      hash: v.hash,
      version: v.version,
      loaded_at: v.loadedAt / 1000,
      source: v.source,
      restart_required: v.restartRequired,
      config: publicConfig(v.config),
    });
  });
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
