import type { Usage } from "@switchyard/core";
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, type Registry } from "@switchyard/observability";

export class WorkerMetrics {
  readonly jobs: Counter<"queue" | "outcome">;
  readonly queueWait: Histogram<"queue">;
  readonly inFlight: Gauge;
  private readonly upstream: Histogram<"provider" | "outcome">;
  private readonly tokens: Counter<"provider" | "direction">;

  constructor(registry: Registry) {
    this.jobs = new Counter({
      name: "switchyard_worker_jobs_total",
      help: "Job attempts by queue and outcome (succeeded, failed, retried, cancelled, expired)",
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
    this.inFlight = new Gauge({
      name: "switchyard_worker_upstream_in_flight",
      help: "Upstream calls in flight in this process",
      registers: [registry],
    });
    this.upstream = new Histogram({
      name: "switchyard_upstream_request_duration_seconds",
      help: "Upstream call duration by provider and outcome (ok or the error kind)",
      labelNames: ["provider", "outcome"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    this.tokens = new Counter({
      name: "switchyard_tokens_total",
      help: "Tokens reported by upstreams, by provider and direction (input, output)",
      labelNames: ["provider", "direction"],
      registers: [registry],
    });
  }

  observeCall(provider: string, outcome: string, start: bigint, usage?: Usage): void {
    this.upstream.observe({ provider, outcome }, Number(process.hrtime.bigint() - start) / 1e9);
    if (usage) {
      this.tokens.inc({ provider, direction: "input" }, usage.input_tokens);
      this.tokens.inc({ provider, direction: "output" }, usage.output_tokens);
    }
  }
}
