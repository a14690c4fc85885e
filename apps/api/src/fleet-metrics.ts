import type { Queue } from "bullmq";
import { z } from "zod";
import { admissionWaitBoundSeconds, routeLinks, type SwitchyardConfig } from "@switchyard/core";
import type { KeyPool, KeyView } from "@switchyard/limiter";
import { Counter, Gauge, type Registry } from "@switchyard/observability";
import { queueNameFor, type FairQueue, type FairTenantView, type Keys, type Redis } from "@switchyard/queue";

const STATUS_CODE: Record<KeyView["status"], number> = { active: 0, cooling: 1, disabled: 2 };
/** BullMQ's job states reported per queue. */
const QUEUE_STATES = ["wait", "prioritized", "delayed", "active", "completed", "failed"] as const;

interface QueueView {
  queue: string;
  counts: Record<string, number>;
  workers: number;
}

interface BreakerView {
  provider: string;
  scope: string;
  /** 0 closed, 1 half-open (or open with its open period over: the next call probes), 2 open. */
  state: number;
}

interface FleetView {
  breakers: BreakerView[];
  providers: { provider: string; keys: KeyView[] }[];
  tenants: FairTenantView[];
  queues: QueueView[];
  redis: { used: number; max: number } | undefined;
}

export interface FleetSources {
  config: () => SwitchyardConfig;
  redis: Redis;
  keys: Keys;
  pool: KeyPool;
  fair: FairQueue;
  /** Every BullMQ queue to report (job queues and the webhooks queue); read at each scrape. */
  queues: () => Queue[];
}

/** used_memory and maxmemory from INFO memory (maxmemory 0: no limit). */
function parseMemory(info: string): { used: number; max: number } | undefined {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:(\\d+)`, "m").exec(info);
    return m?.[1] === undefined ? undefined : Number(m[1]);
  };
  const used = field("used_memory");
  const max = field("maxmemory");
  return used === undefined || max === undefined ? undefined : { used, max };
}

/**
 * Gauges read from Redis at each scrape, for the whole fleet: the key pool by provider and key
 * id, the fair queue by tenant, BullMQ's queues (jobs by state, workers consuming them) and
 * Redis's memory. Tenants, providers and queues come from the config: bounded label sets.
 */
export function fleetMetrics(src: FleetSources, registry: Registry): void {
  let views: Promise<FleetView> | undefined;
  let skips = 0;
  const readQueue = async (q: Queue): Promise<QueueView> => ({
    queue: q.name,
    counts: await q.getJobCounts(...QUEUE_STATES),
    workers: await q.getWorkersCount(),
  });
  // One Redis read per scrape, shared by every gauge below. When Redis cannot be read the scrape
  // still answers with the process's own metrics; the Redis-derived gauges are left empty.
  const read = (): Promise<FleetView> => {
    const config = src.config();
    return (views ??= Promise.all([
      Promise.all(config.providers.map(async (p) => ({ provider: p.id, keys: await src.pool.inspect(p) }))),
      src.fair.inspect(config.tenants.map((t) => ({ id: t.id, tier: t.tier }))),
      Promise.all(src.queues().map(readQueue)),
      src.redis.info("memory").then(parseMemory),
      readBreakers(src.redis, src.keys, config),
    ])
      .then(([providers, tenants, queues, redis, breakers]) => ({
        providers,
        tenants,
        queues,
        redis,
        breakers,
      }))
      .catch(() => {
        skips += 1;
        return { providers: [], tenants: [], queues: [], redis: undefined, breakers: [] };
      })
      .finally(() => setTimeout(() => (views = undefined), 100)));
  };
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
    "Age of the tenant's oldest job waiting its turn in the fair queue (0 when none waits)",
    (t) => t.oldest_listed_seconds ?? 0,
  );
  tenantGauge(
    "switchyard_tenant_lag",
    "How far the tenant's virtual time is ahead of its tier's (cost / weight; 0: it starts next)",
    (t) => t.lag,
  );
  new Gauge({
    name: "switchyard_tenant_max_wait_seconds",
    help: "The longest a tenant's job may wait to start: its admission bound (tenant or tier max_wait_seconds), else queue.max_queue_age_hours",
    labelNames: ["tenant", "tier"] as const,
    registers: [registry],
    collect() {
      this.reset();
      const config = src.config();
      for (const t of config.tenants)
        this.set({ tenant: t.id, tier: t.tier }, admissionWaitBoundSeconds(config, t));
    },
  });

  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (g: Gauge<L>, view: FleetView) => void,
  ) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        fill(this, await read());
      },
    });
  const perKey = (
    name: string,
    help: string,
    labels: readonly ("provider" | "key" | "window")[],
    fill: (g: Gauge<"provider" | "key" | "window">, provider: string, key: KeyView) => void,
  ) =>
    gauge(name, help, labels, (g, v) => {
      for (const { provider, keys } of v.providers) for (const k of keys) fill(g, provider, k);
    });
  perKey(
    "switchyard_key_status",
    "Key state: 0 active, 1 cooling down after a 429, 2 out of the pool",
    ["provider", "key"],
    (g, provider, k) => g.set({ provider, key: k.id }, STATUS_CODE[k.status]),
  );
  perKey(
    "switchyard_key_in_flight",
    "Calls in flight on the key across the fleet",
    ["provider", "key"],
    (g, provider, k) => g.set({ provider, key: k.id }, k.usage.in_flight),
  );
  perKey(
    "switchyard_key_window_usage",
    "Use of the key in its rolling windows (rpm, tpm, itpm, otpm per minute; rpd per day; concurrency in flight)",
    ["provider", "key", "window"],
    (g, provider, k) => {
      for (const [window, value] of usageByWindow(k)) g.set({ provider, key: k.id, window }, value);
    },
  );
  perKey(
    "switchyard_key_limit",
    "The key's key-wide limit per window as the pool applies it (configured, or lower when the provider's headers said so); absent when not limited",
    ["provider", "key", "window"],
    (g, provider, k) => {
      for (const [window, value] of limitByWindow(k)) g.set({ provider, key: k.id, window }, value);
    },
  );
  perKey(
    "switchyard_key_remaining",
    "Room left on the key's key-wide limits (rpm, tpm, itpm, otpm, rpd, concurrency)",
    ["provider", "key", "window"],
    (g, provider, k) => {
      const used = new Map(usageByWindow(k));
      for (const [window, limit] of limitByWindow(k))
        g.set({ provider, key: k.id, window }, Math.max(0, limit - (used.get(window) ?? 0)));
    },
  );
  gauge(
    "switchyard_queue_jobs",
    "BullMQ jobs per queue and state (a job waiting its fair turn is parked in delayed)",
    ["queue", "state"],
    (g, v) => {
      for (const q of v.queues)
        for (const state of QUEUE_STATES) g.set({ queue: q.queue, state }, q.counts[state] ?? 0);
    },
  );
  gauge(
    "switchyard_queue_waiting_jobs",
    "Jobs of the queue not started yet: listed in the fair queue, or picked and waiting for a worker",
    ["queue"],
    (g, v) => {
      const listed = new Map<string, number>();
      const byId = new Map(src.config().tenants.map((t) => [t.id, t]));
      for (const t of v.tenants) {
        const tenant = byId.get(t.tenant);
        if (!tenant) continue;
        const queue = queueNameFor(tenant);
        listed.set(queue, (listed.get(queue) ?? 0) + t.listed);
      }
      for (const q of v.queues)
        g.set(
          { queue: q.queue },
          (listed.get(q.queue) ?? 0) + (q.counts.wait ?? 0) + (q.counts.prioritized ?? 0),
        );
    },
  );
  gauge(
    "switchyard_queue_workers",
    "Worker processes consuming the queue (BullMQ's worker connections in CLIENT LIST)",
    ["queue"],
    (g, v) => {
      for (const q of v.queues) g.set({ queue: q.queue }, q.workers);
    },
  );
  gauge(
    "switchyard_breaker_state",
    "Circuit breaker state as the fleet shares it in Redis (0 closed, 1 half-open, 2 open), per provider or provider/model",
    ["provider", "scope"],
    (g, v) => {
      for (const b of v.breakers) g.set({ provider: b.provider, scope: b.scope }, b.state);
    },
  );
  gauge("switchyard_redis_memory_used_bytes", "Redis used_memory", [], (g, v) => {
    if (v.redis) g.set(v.redis.used);
  });
  gauge("switchyard_redis_maxmemory_bytes", "Redis maxmemory (0: no limit set)", [], (g, v) => {
    if (v.redis) g.set(v.redis.max);
  });
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

/**
 * Every configured breaker's state from Redis (read-only): one per provider, or one per provider
 * and upstream model of its routes with per_model. No hash: closed.
 */
async function readBreakers(redis: Redis, keys: Keys, config: SwitchyardConfig): Promise<BreakerView[]> {
  const targets: { provider: string; scope: string; key: string }[] = [];
  for (const p of config.providers) {
    if (!p.breaker.enabled) continue;
    if (!p.breaker.per_model) {
      targets.push({ provider: p.id, scope: p.id, key: keys.breaker(p.id) });
      continue;
    }
    const models = new Set(
      Object.keys(config.models).flatMap((alias) =>
        (routeLinks(config, alias) ?? []).filter((l) => l.provider === p.id).map((l) => l.model),
      ),
    );
    for (const m of models)
      targets.push({ provider: p.id, scope: `${p.id}/${m}`, key: keys.breaker(p.id, m) });
  }
  if (targets.length === 0) return [];
  const pipe = redis.pipeline().time();
  for (const t of targets) pipe.hmget(t.key, "state", "open_until");
  const rows = (await pipe.exec()) ?? [];
  const clock = z.tuple([z.coerce.number(), z.coerce.number()]).parse(rows[0]?.[1]);
  const now = clock[0] * 1000 + Math.floor(clock[1] / 1000);
  return targets.map((t, i) => {
    const [state, until] = z.tuple([z.string().nullable(), z.string().nullable()]).parse(rows[i + 1]?.[1]);
    const open = state === "open" && Number(until ?? 0) > now;
    return { provider: t.provider, scope: t.scope, state: open ? 2 : state === "closed" || !state ? 0 : 1 };
  });
}

function usageByWindow(k: KeyView): [string, number][] {
  return [
    ["rpm", k.usage.requests],
    ["tpm", k.usage.tokens],
    ["itpm", k.usage.input_tokens],
    ["otpm", k.usage.output_tokens],
    ["rpd", k.usage.requests_today],
    ["concurrency", k.usage.in_flight],
  ];
}

function limitByWindow(k: KeyView): [string, number][] {
  const learned = k.usage.reported_limits;
  const eff = (configured: number | undefined, reported: number | undefined) =>
    configured === undefined ? undefined : Math.min(configured, reported ?? configured);
  const out: [string, number | undefined][] = [
    ["rpm", eff(k.limits.rpm, learned.rpm)],
    ["tpm", eff(k.limits.tpm, learned.tpm)],
    ["itpm", eff(k.limits.itpm, learned.itpm)],
    ["otpm", eff(k.limits.otpm, learned.otpm)],
    ["rpd", k.limits.rpd],
    ["concurrency", k.limits.max_concurrency],
  ];
  return out.filter((e): e is [string, number] => e[1] !== undefined);
}
