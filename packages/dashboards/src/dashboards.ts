import type { DashboardBuilder } from "@grafana/grafana-foundation-sdk/dashboard";
import { chart, dashboard, q, quantiles, row, single } from "./panels";

/**
 * Switchyard's four dashboards. Fleet gauges (key pool, fair queue, queues, Redis, breakers) are
 * read from Redis by every API process alike: they are taken with max/min by their own labels so
 * that API replicas do not add up. Counters and histograms from several processes are summed.
 */

const R = "[$__rate_interval]";

export function overview(): DashboardBuilder {
  const queue = 'queue=~"$queue"';
  return dashboard(
    "switchyard-overview",
    "Switchyard / Overview",
    "Throughput, latency, outcome rates and queues of the whole fleet",
    [{ name: "queue", label: "Queue", query: "label_values(switchyard_queue_waiting_jobs, queue)" }],
  )
    .withRow(row("Throughput"))
    .withPanel(
      chart("Jobs accepted", "Submissions accepted and queued per second, by tier", "reqps", [
        q(`sum by (tier) (rate(switchyard_jobs_enqueued_total${R}))`, "{{tier}}"),
      ]),
    )
    .withPanel(
      chart("Jobs finished", "Jobs reaching a final status per second, by status", "reqps", [
        q(
          `sum by (outcome) (rate(switchyard_worker_jobs_total{${queue}, outcome=~"succeeded|failed|cancelled|expired"}${R}))`,
          "{{outcome}}",
        ),
      ]),
    )
    .withPanel(
      chart("HTTP requests", "Requests the API answered per second, by status", "reqps", [
        q(`sum by (status) (rate(switchyard_http_requests_total${R}))`, "{{status}}"),
      ]),
    )
    .withPanel(
      chart("Upstream calls", "Calls to the providers per second, by provider", "reqps", [
        q(`sum by (provider) (rate(switchyard_key_calls_total${R}))`, "{{provider}}"),
      ]),
    )
    .withRow(row("Latency"))
    .withPanel(
      chart(
        "Submission latency",
        "Time the API takes to accept POST /v1/jobs (p50, p95, p99)",
        "s",
        quantiles("switchyard_http_request_duration_seconds_bucket", '{route="/v1/jobs", method="POST"}'),
        8,
      ),
    )
    .withPanel(
      chart(
        "Queue wait",
        "Submission to first start (p50, p95, p99); alerts at p95 200 ms and 500 ms",
        "s",
        quantiles("switchyard_tenant_queue_wait_seconds_bucket", ""),
        8,
      ),
    )
    .withPanel(
      chart(
        "Upstream latency",
        "Duration of successful upstream calls (p50, p95, p99)",
        "s",
        quantiles("switchyard_upstream_request_duration_seconds_bucket", '{outcome="ok"}'),
        8,
      ),
    )
    .withRow(row("Outcome rates"))
    .withPanel(
      single("Success rate", "Succeeded among jobs that succeeded or failed", "percentunit", {
        expr: `sum(rate(switchyard_worker_jobs_total{outcome="succeeded"}${R})) / sum(rate(switchyard_worker_jobs_total{outcome=~"succeeded|failed"}${R}))`,
        legend: "success",
      }),
    )
    .withPanel(
      single(
        "Error rate",
        "Failed among jobs that succeeded or failed; alerts at 0.5% and 1%",
        "percentunit",
        {
          expr: `sum(rate(switchyard_worker_jobs_total{outcome="failed"}${R})) / sum(rate(switchyard_worker_jobs_total{outcome=~"succeeded|failed"}${R}))`,
          legend: "errors",
        },
      ),
    )
    .withPanel(
      single("429 rate", "Upstream calls answered 429 (the key pool keeps this at 0)", "percentunit", {
        expr: `sum(rate(switchyard_key_calls_total{outcome="rate_limited"}${R})) / sum(rate(switchyard_key_calls_total${R}))`,
        legend: "429",
      }),
    )
    .withPanel(
      single("Timeout rate", "Upstream calls that timed out", "percentunit", {
        expr: `sum(rate(switchyard_upstream_request_duration_seconds_count{outcome="timeout"}${R})) / sum(rate(switchyard_upstream_request_duration_seconds_count${R}))`,
        legend: "timeouts",
      }),
    )
    .withRow(row("Queues"))
    .withPanel(
      chart("Jobs waiting to start", "Listed in the fair queue or picked, per queue", "short", [
        q(`max by (queue) (switchyard_queue_waiting_jobs{${queue}})`, "{{queue}}"),
      ]),
    )
    .withPanel(
      chart(
        "Jobs by state",
        "BullMQ's counts: a job waiting its fair turn is parked in delayed; active ones run",
        "short",
        [
          q(
            `max by (queue, state) (switchyard_queue_jobs{${queue}, state=~"active|delayed|wait"})`,
            "{{queue}} {{state}}",
          ),
        ],
      ),
    )
    .withPanel(
      chart("Workers per queue", "Worker processes consuming each queue; alert at 0", "short", [
        q(`min by (queue) (switchyard_queue_workers{${queue}})`, "{{queue}}"),
      ]),
    )
    .withPanel(
      chart("Upstream calls in flight", "Calls in flight across the workers", "short", [
        q("sum(switchyard_worker_upstream_in_flight)", "in flight"),
      ]),
    )
    .withPanel(
      chart("Redis memory", "used_memory against maxmemory (noeviction: writes fail when full)", "bytes", [
        q("max(switchyard_redis_memory_used_bytes)", "used"),
        q("max(switchyard_redis_maxmemory_bytes)", "maxmemory"),
      ]),
    )
    .withPanel(
      chart(
        "Config reloads",
        "Reloads per hour by result (invalid and failed ones keep the running config)",
        "short",
        [q("sum by (result) (increase(switchyard_config_reloads_total[1h]))", "{{result}}")],
      ),
    );
}

export function tenants(): DashboardBuilder {
  const t = 'tenant=~"$tenant"';
  return dashboard(
    "switchyard-tenants",
    "Switchyard / Tenants",
    "Fair shares, waits, usage and cost per tenant",
    [{ name: "tenant", label: "Tenant", query: "label_values(switchyard_tenant_starts_total, tenant)" }],
  )
    .withRow(row("Fair shares"))
    .withPanel(
      chart(
        "Share of starts",
        "Each tenant's part of all first starts (the fair queue's shares)",
        "percentunit",
        [
          q(
            `sum by (tenant) (rate(switchyard_tenant_starts_total{${t}}${R})) / ignoring(tenant) group_left sum(rate(switchyard_tenant_starts_total${R}))`,
            "{{tenant}}",
          ),
        ],
      ),
    )
    .withPanel(
      chart("Starts", "Jobs started for the first time per second", "reqps", [
        q(`sum by (tenant) (rate(switchyard_tenant_starts_total{${t}}${R}))`, "{{tenant}}"),
      ]),
    )
    .withPanel(
      chart("Waiting their turn", "Jobs listed in the fair queue", "short", [
        q(`max by (tenant) (switchyard_tenant_listed_jobs{${t}})`, "{{tenant}}"),
      ]),
    )
    .withPanel(
      chart(
        "Lag in the fair order",
        "How far the tenant's virtual time is ahead of its tier's (0: starts next)",
        "short",
        [q(`max by (tenant) (switchyard_tenant_lag{${t}})`, "{{tenant}}")],
      ),
    )
    .withRow(row("Waits"))
    .withPanel(
      chart("Queue wait p95", "Submission to first start, p95 per tenant", "s", [
        q(
          `histogram_quantile(0.95, sum by (le, tenant) (rate(switchyard_tenant_queue_wait_seconds_bucket{${t}}${R})))`,
          "{{tenant}}",
        ),
      ]),
    )
    .withPanel(
      chart(
        "Oldest waiting job against its bound",
        "Age of the oldest listed job and the tenant's admission bound",
        "s",
        [
          q(`max by (tenant) (switchyard_tenant_oldest_listed_seconds{${t}})`, "{{tenant}} oldest"),
          q(`max by (tenant) (switchyard_tenant_max_wait_seconds{${t}})`, "{{tenant}} bound"),
        ],
      ),
    )
    .withRow(row("Usage and cost"))
    .withPanel(
      chart("Tokens", "Tokens of succeeded jobs per second, by tenant and direction", "short", [
        q(`sum by (tenant, direction) (rate(switchyard_tokens_total{${t}}${R}))`, "{{tenant}} {{direction}}"),
      ]),
    )
    .withPanel(
      chart("Cost per hour", "USD spent upstream in the last hour, by tenant", "currencyUSD", [
        q(`sum by (tenant) (increase(switchyard_cost_usd_total{${t}}[1h]))`, "{{tenant}}"),
      ]),
    )
    .withPanel(
      chart("Cost by model", "USD per hour by tenant and upstream model", "currencyUSD", [
        q(
          `sum by (tenant, provider, model) (increase(switchyard_cost_usd_total{${t}}[1h]))`,
          "{{tenant}} {{provider}}/{{model}}",
        ),
      ]),
    )
    .withPanel(
      chart("Answered from the cache", "Cache hits per second by route (free for the tenant)", "reqps", [
        q(
          `sum by (route) (rate(switchyard_cache_events_total{event=~"hit|semantic_hit|coalesced"}${R}))`,
          "{{route}}",
        ),
      ]),
    );
}

export function providers(): DashboardBuilder {
  const p = 'provider=~"$provider"';
  return dashboard(
    "switchyard-providers",
    "Switchyard / Providers and keys",
    "Limits used, 429s, breakers, bulkheads and latency per provider, key and model",
    [{ name: "provider", label: "Provider", query: "label_values(switchyard_key_status, provider)" }],
  )
    .withRow(row("Key pool"))
    .withPanel(
      chart(
        "Limits used",
        "Use of each key's rolling windows against its limits; alerts at 90% and 95% of tokens",
        "percentunit",
        [
          q(
            `max by (provider, key, window) (switchyard_key_window_usage{${p}}) / max by (provider, key, window) (switchyard_key_limit{${p}})`,
            "{{provider}}/{{key}} {{window}}",
          ),
        ],
      ),
    )
    .withPanel(
      chart("Key status", "0 active, 1 cooling down after a 429, 2 out of the pool", "short", [
        q(`max by (provider, key) (switchyard_key_status{${p}})`, "{{provider}}/{{key}}"),
      ]),
    )
    .withPanel(
      chart("Calls by outcome", "Upstream calls per second by key and outcome", "reqps", [
        q(
          `sum by (provider, key, outcome) (rate(switchyard_key_calls_total{${p}}${R}))`,
          "{{provider}}/{{key}} {{outcome}}",
        ),
      ]),
    )
    .withPanel(
      chart("429s", "Upstream 429s per second by key", "reqps", [
        q(
          `sum by (provider, key) (rate(switchyard_key_calls_total{${p}, outcome="rate_limited"}${R}))`,
          "{{provider}}/{{key}}",
        ),
      ]),
    )
    .withPanel(
      chart("Calls in flight per key", "Fleet-wide, from the key pool", "short", [
        q(`max by (provider, key) (switchyard_key_in_flight{${p}})`, "{{provider}}/{{key}}"),
      ]),
    )
    .withPanel(
      chart("Waits for capacity", "Reservations the key pool refused, by reason", "reqps", [
        q(
          `sum by (provider, reason) (rate(switchyard_limiter_waits_total{${p}}${R}))`,
          "{{provider}} {{reason}}",
        ),
      ]),
    )
    .withRow(row("Health"))
    .withPanel(
      chart("Circuit breakers", "0 closed, 1 half-open, 2 open (shared by the fleet)", "short", [
        q(`max by (provider, scope) (switchyard_breaker_state{${p}})`, "{{scope}}"),
      ]),
    )
    .withPanel(
      chart("Bulkheads", "Calls in flight and jobs waiting in line per provider bulkhead", "short", [
        q(`sum by (provider, state) (switchyard_bulkhead_in_use{${p}})`, "{{provider}} {{state}}"),
      ]),
    )
    .withPanel(
      chart("Fallbacks", "Jobs leaving a route's link for the next, by route and reason", "reqps", [
        q(
          `sum by (route, from, reason) (rate(switchyard_route_fallbacks_total{from=~"$provider"}${R}))`,
          "{{route}} {{from}} {{reason}}",
        ),
      ]),
    )
    .withPanel(
      chart("Errors by kind", "Failed upstream calls per second by provider and error kind", "reqps", [
        q(
          `sum by (provider, outcome) (rate(switchyard_upstream_request_duration_seconds_count{${p}, outcome!="ok"}${R}))`,
          "{{provider}} {{outcome}}",
        ),
      ]),
    )
    .withRow(row("Latency"))
    .withPanel(
      chart(
        "Latency by provider and model",
        "p95 of successful upstream calls",
        "s",
        [
          q(
            `histogram_quantile(0.95, sum by (le, provider, model) (rate(switchyard_upstream_request_duration_seconds_bucket{${p}, outcome="ok"}${R})))`,
            "{{provider}}/{{model}}",
          ),
        ],
        24,
      ),
    )
    .withPanel(
      chart(
        "Tokens by provider and model",
        "Input and output tokens per second",
        "short",
        [
          q(
            `sum by (provider, model, direction) (rate(switchyard_tokens_total{${p}}${R}))`,
            "{{provider}}/{{model}} {{direction}}",
          ),
        ],
        24,
      ),
    );
}

export function webhooks(): DashboardBuilder {
  const w = 'queue="webhooks"';
  return dashboard(
    "switchyard-webhooks",
    "Switchyard / Webhooks",
    "Signed deliveries of final job events",
    [],
  )
    .withRow(row("Deliveries"))
    .withPanel(
      chart(
        "Attempts by outcome",
        "Delivery attempts per second: succeeded, retry, failed (dead-lettered), blocked",
        "reqps",
        [q(`sum by (outcome) (rate(switchyard_webhook_attempts_total${R}))`, "{{outcome}}")],
      ),
    )
    .withPanel(
      chart("Events fanned out", "Final job events turned into deliveries, per second", "reqps", [
        q(`sum by (event) (rate(switchyard_webhook_events_total${R}))`, "{{event}}"),
      ]),
    )
    .withPanel(
      chart(
        "Dead letters",
        "Deliveries that spent every attempt, in the last hour (replay them from the API)",
        "short",
        [
          q(
            'sum by (event) (increase(switchyard_webhook_attempts_total{outcome="failed"}[1h]))',
            "{{event}}",
          ),
        ],
      ),
    )
    .withPanel(
      chart(
        "Attempt latency",
        "Time a delivery attempt takes (p50, p95, p99)",
        "s",
        quantiles("switchyard_webhook_attempt_seconds_bucket", ""),
      ),
    )
    .withRow(row("Queue"))
    .withPanel(
      chart("Deliveries by state", "The webhooks queue: waiting, retrying (delayed), in flight", "short", [
        q(`max by (state) (switchyard_queue_jobs{${w}, state=~"wait|delayed|active"})`, "{{state}}"),
      ]),
    )
    .withPanel(
      single("Dead-letter list", "Failed deliveries kept in BullMQ's failed set (bounded)", "short", {
        expr: `max(switchyard_queue_jobs{${w}, state="failed"})`,
        legend: "failed",
      }),
    )
    .withPanel(
      single("Delivery workers", "Worker processes consuming the webhooks queue", "short", {
        expr: `min(switchyard_queue_workers{${w}})`,
        legend: "workers",
      }),
    );
}

/** Every dashboard with the file it is provisioned from (infra/grafana/dashboards/). */
export const DASHBOARDS: { file: string; build: () => DashboardBuilder }[] = [
  { file: "overview.json", build: overview },
  { file: "tenants.json", build: tenants },
  { file: "providers.json", build: providers },
  { file: "webhooks.json", build: webhooks },
];
