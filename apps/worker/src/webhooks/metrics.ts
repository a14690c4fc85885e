import { Counter, Histogram, LATENCY_BUCKETS, type Registry } from "@switchyard/observability";
import { WEBHOOK_EVENTS } from "@switchyard/webhooks";

export const DELIVERY_OUTCOMES = [
  "succeeded",
  "retry",
  "failed",
  "blocked",
  "endpoint_disabled",
  "skipped",
] as const;
export type DeliveryOutcome = (typeof DELIVERY_OUTCOMES)[number];

export class WebhookMetrics {
  readonly events: Counter<"event">;
  readonly attempts: Counter<"event" | "outcome">;
  readonly duration: Histogram<"outcome">;

  constructor(registry: Registry) {
    this.events = new Counter({
      name: "switchyard_webhook_events_total",
      help: "Final job events turned into deliveries, by event type",
      labelNames: ["event"],
      registers: [registry],
    });
    this.attempts = new Counter({
      name: "switchyard_webhook_attempts_total",
      help: "Delivery attempts by event and outcome (succeeded, retry, failed: dead-lettered, blocked: refused by the address policy, endpoint_disabled, skipped: endpoint gone or disabled)",
      labelNames: ["event", "outcome"],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: "switchyard_webhook_attempt_seconds",
      help: "Time a delivery attempt took, by outcome",
      labelNames: ["outcome"],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
    // Series at zero from the start: dashboards and the dead-letter alert see them before the first delivery.
    for (const event of WEBHOOK_EVENTS) {
      this.events.inc({ event }, 0);
      for (const outcome of DELIVERY_OUTCOMES) this.attempts.inc({ event, outcome }, 0);
    }
    for (const outcome of DELIVERY_OUTCOMES) this.duration.zero({ outcome });
  }
}
