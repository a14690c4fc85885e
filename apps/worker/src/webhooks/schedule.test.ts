import { DEFAULT_WEBHOOK_SCHEDULE } from "@switchyard/core";
import { minimalConfig } from "@switchyard/testing";
import { tracingOff, type Logger } from "@switchyard/observability";
import type { Redis } from "@switchyard/queue";
import type { WebhookStore } from "@switchyard/webhooks";
import { DeliveryWorker } from "./delivery-worker";
import type { WebhookMetrics } from "./metrics";
import { webhookRetryAfter, type WebhookSender } from "./sender";

const config = (webhooks: Record<string, unknown> = {}) => minimalConfig({ webhooks });

const worker = (cfg: ReturnType<typeof config>, random: () => number) =>
  new DeliveryWorker(
    cfg,
    {} as Redis,
    {} as WebhookStore,
    {} as WebhookSender,
    {} as WebhookMetrics,
    {} as Logger,
    tracingOff,
    random,
  );

describe("webhook retry timing", () => {
  it("defaults to about 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h", () => {
    expect(config().webhooks.retry_schedule_seconds).toEqual(DEFAULT_WEBHOOK_SCHEDULE);
    expect(DEFAULT_WEBHOOK_SCHEDULE.map((s) => s / 3600)).toEqual([
      5 / 3600,
      5 / 60,
      0.5,
      2,
      5,
      10,
      14,
      20,
      24,
    ]);
  });

  it("jitters each step by at most the configured fraction, both ways", () => {
    const cfg = config({ jitter: 0.2 });
    expect(worker(cfg, () => 0).scheduledDelayMs(1)).toBe(4_000);
    expect(worker(cfg, () => 1).scheduledDelayMs(1)).toBe(6_000);
    expect(worker(cfg, () => 0.5).scheduledDelayMs(2)).toBe(300_000);
    expect(worker(cfg, () => 0.5).scheduledDelayMs(9)).toBe(86_400_000);
    expect(worker(config({ jitter: 0 }), Math.random).scheduledDelayMs(3)).toBe(1_800_000);
  });

  it("reads Retry-After as seconds or as an HTTP date, capped at a day", () => {
    const now = Date.parse("2026-11-22T12:00:00Z");
    expect(webhookRetryAfter("120", now)).toBe(120_000);
    expect(webhookRetryAfter("1.5", now)).toBe(1_500);
    expect(webhookRetryAfter("Sun, 22 Nov 2026 12:01:00 GMT", now)).toBe(60_000);
    expect(webhookRetryAfter("999999", now)).toBe(86_400_000);
    expect(webhookRetryAfter("soon", now)).toBeUndefined();
    expect(webhookRetryAfter(undefined, now)).toBeUndefined();
    expect(webhookRetryAfter("Sun, 22 Nov 2026 11:00:00 GMT", now)).toBeUndefined();
  });
});
