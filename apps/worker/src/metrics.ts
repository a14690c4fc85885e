import { routeLinks, type SwitchyardConfig, type Usage } from "@switchyard/core";
import { allJobQueues } from "@switchyard/queue";
import type { Bulkheads } from "./bulkhead";
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, type Registry } from "@switchyard/observability";

export class WorkerMetrics {
  readonly jobs: Counter<"queue" | "outcome">;
  readonly queueWait: Histogram<"queue">;
  /** Per tenant (tenants come from the config: a bounded label set). */
  readonly tenantStarts: Counter<"tenant" | "tier">;
  readonly tenantWait: Histogram<"tenant" | "tier">;
  readonly cacheEvents: Counter<"route" | "event">;
  readonly cacheTokensSaved: Counter<"route">;
  readonly cacheCostSaved: Counter<"route">;
  readonly inFlight: Gauge;
  private readonly upstream: Histogram<"provider" | "model" | "outcome">;
  private readonly tokens: Counter<"tenant" | "provider" | "model" | "direction">;
  private readonly cost: Counter<"tenant" | "provider" | "model">;
  readonly fallbacks: Counter<"route" | "from" | "reason">;
  readonly circuit: Gauge<"provider" | "scope">;
  readonly bulkheadRejected: Counter<"provider">;
  readonly limiterWaits: Counter<"provider" | "reason">;
  readonly keyCalls: Counter<"provider" | "key" | "outcome">;
  readonly probes: Counter<"provider" | "key" | "outcome">;

  constructor(private readonly registry: Registry) {
    this.jobs = new Counter({
      name: "switchyard_worker_jobs_total",
      help: "Job runs by queue and outcome (succeeded, failed, retried, cancelled, expired, waiting_<why> for runs handed back to wait: limited, cooling, share, bulkhead)",
      labelNames: ["queue", "outcome"],
      registers: [registry],
    });
    this.queueWait = new Histogram({
      name: "switchyard_queue_wait_seconds",
      help: "Time from submission to the start of an attempt",
      labelNames: ["queue"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.tenantStarts = new Counter({
      name: "switchyard_tenant_starts_total",
      help: "Jobs started for the first time, by tenant and tier (the fair queue's shares)",
      labelNames: ["tenant", "tier"],
      registers: [registry],
    });
    this.tenantWait = new Histogram({
      name: "switchyard_tenant_queue_wait_seconds",
      help: "Time from submission to a job's first start, by tenant and tier",
      labelNames: ["tenant", "tier"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.cacheEvents = new Counter({
      name: "switchyard_cache_events_total",
      help: "Answer cache events by route: hit, miss, coalesced (waited for an identical running job), store, negative_hit, negative_store",
      labelNames: ["route", "event"],
      registers: [registry],
    });
    this.cacheTokensSaved = new Counter({
      name: "switchyard_cache_tokens_saved_total",
      help: "Tokens an answer served from the cache would have cost upstream, by route",
      labelNames: ["route"],
      registers: [registry],
    });
    this.cacheCostSaved = new Counter({
      name: "switchyard_cache_cost_saved_usd_total",
      help: "What the answers served from the cache would have cost upstream in USD (at the serving model's price), by route",
      labelNames: ["route"],
      registers: [registry],
    });
    this.inFlight = new Gauge({
      name: "switchyard_worker_upstream_in_flight",
      help: "Upstream calls in flight in this process",
      registers: [registry],
    });
    this.upstream = new Histogram({
      name: "switchyard_upstream_request_duration_seconds",
      help: "Upstream call duration by provider, upstream model (the config's, a bounded set) and outcome (ok or the error kind)",
      labelNames: ["provider", "model", "outcome"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.tokens = new Counter({
      name: "switchyard_tokens_total",
      help: "Tokens of succeeded jobs as upstreams reported them, by tenant, provider, model and direction (input, output, cached_input: the part of input served from the provider's prompt cache)",
      labelNames: ["tenant", "provider", "model", "direction"],
      registers: [registry],
    });
    this.cost = new Counter({
      name: "switchyard_cost_usd_total",
      help: "What succeeded jobs cost upstream in USD (price table or the config's prices), by tenant, provider and model",
      labelNames: ["tenant", "provider", "model"],
      registers: [registry],
    });
    this.fallbacks = new Counter({
      name: "switchyard_route_fallbacks_total",
      help: "Times a job left a route link for the next one, by route, the provider left and why",
      labelNames: ["route", "from", "reason"],
      registers: [registry],
    });
    this.circuit = new Gauge({
      name: "switchyard_circuit_state",
      help: "Circuit breaker state as this worker last saw it (0 closed, 1 half-open, 2 open)",
      labelNames: ["provider", "scope"],
      registers: [registry],
    });
    this.bulkheadRejected = new Counter({
      name: "switchyard_bulkhead_rejected_total",
      help: "Jobs handed back to the queue because the provider's bulkhead and its line were full",
      labelNames: ["provider"],
      registers: [registry],
    });
    this.limiterWaits = new Counter({
      name: "switchyard_limiter_waits_total",
      help: "Reservations the key pool refused, by provider and reason (limited, cooling, share, disabled, too_large)",
      labelNames: ["provider", "reason"],
      registers: [registry],
    });
    this.keyCalls = new Counter({
      name: "switchyard_key_calls_total",
      help: "Upstream calls by provider key id and outcome (ok, rate_limited, disabled, or the error kind)",
      labelNames: ["provider", "key", "outcome"],
      registers: [registry],
    });
    this.probes = new Counter({
      name: "switchyard_key_probes_total",
      help: "Probes of keys taken out of the pool, by outcome (restored, still_failing)",
      labelNames: ["provider", "key", "outcome"],
      registers: [registry],
    });
  }

  /**
   * Creates the series the config implies at zero (queues by final outcome, tenants, providers
   * and their keys, cached routes), so that dashboards and alert rules see them before the first
   * event and rate() counts that first event. Called again after a reload.
   */
  seed(config: SwitchyardConfig): void {
    for (const { name } of allJobQueues(config)) {
      this.queueWait.zero({ queue: name });
      for (const outcome of ["succeeded", "failed", "retried", "cancelled", "expired"])
        this.jobs.inc({ queue: name, outcome }, 0);
    }
    for (const t of config.tenants) {
      this.tenantStarts.inc({ tenant: t.id, tier: t.tier }, 0);
      this.tenantWait.zero({ tenant: t.id, tier: t.tier });
    }
    const links = Object.keys(config.models).flatMap((alias) => routeLinks(config, alias) ?? []);
    for (const l of links)
      for (const outcome of ["ok", "timeout", "server", "rate_limit"])
        this.upstream.zero({ provider: l.provider, model: l.model, outcome });
    for (const [alias, m] of Object.entries(config.models))
      for (const l of (m.chain ?? []).slice(0, -1))
        for (const reason of ["retries_exhausted", "circuit_open"])
          this.fallbacks.inc({ route: alias, from: l.provider, reason }, 0);
    for (const p of config.providers) {
      this.limiterWaits.inc({ provider: p.id, reason: "limited" }, 0);
      this.bulkheadRejected.inc({ provider: p.id }, 0);
      for (const k of p.keys)
        for (const outcome of ["ok", "rate_limited", "timeout", "server"])
          this.keyCalls.inc({ provider: p.id, key: k.id, outcome }, 0);
    }
    for (const [route, m] of Object.entries(config.models))
      if (m.cache && m.cache.mode !== "off") {
        for (const event of ["hit", "miss", "coalesced", "store"]) this.cacheEvents.inc({ route, event }, 0);
        this.cacheTokensSaved.inc({ route }, 0);
        this.cacheCostSaved.inc({ route }, 0);
      }
  }

  /** Reports each bulkhead's calls in flight and waiting at every scrape. */
  watchBulkheads(bulkheads: Bulkheads): void {
    new Gauge({
      name: "switchyard_bulkhead_in_use",
      help: "Calls in flight (state=active) and jobs waiting in line (state=waiting) per provider bulkhead",
      labelNames: ["provider", "state"],
      registers: [this.registry],
      collect() {
        for (const [provider, b] of bulkheads.entries()) {
          this.set({ provider, state: "active" }, b.inUse);
          this.set({ provider, state: "waiting" }, b.queued);
        }
      },
    });
  }

  /** Circuit state as this process last saw it: 0 closed, 1 half-open, 2 open. */
  setCircuit(provider: string, scope: string, state: "closed" | "half_open" | "open"): void {
    this.circuit.set({ provider, scope }, state === "closed" ? 0 : state === "half_open" ? 1 : 2);
  }

  observeCall(provider: string, model: string, outcome: string, start: bigint): void {
    this.upstream.observe({ provider, model, outcome }, Number(process.hrtime.bigint() - start) / 1e9);
  }

  /** What a succeeded job spent upstream. */
  spent(tenant: string, provider: string, model: string, usage: Usage): void {
    // Label objects written out: a spread ({ ...who, direction }) made each inc() ~2 us slower
    // (prom-client 15 on Node 20: 2.6 against 0.3 us per call).
    this.tokens.inc({ tenant, provider, model, direction: "input" }, usage.input_tokens);
    this.tokens.inc({ tenant, provider, model, direction: "output" }, usage.output_tokens);
    if (usage.cached_input_tokens)
      this.tokens.inc({ tenant, provider, model, direction: "cached_input" }, usage.cached_input_tokens);
    if (usage.cost_usd !== undefined) this.cost.inc({ tenant, provider, model }, usage.cost_usd);
  }
}
