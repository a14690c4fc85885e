import { Queue, type Telemetry } from "bullmq";
import { z } from "zod";
import type { SwitchyardConfig } from "@switchyard/core";
import type { Redis } from "@switchyard/queue";

/** Deliveries run on their own queue, so a slow receiver never holds an LLM worker's slot. */
export const WEBHOOK_QUEUE = "webhooks";
export const DELIVERY_JOB = "deliver";
export const WEBHOOK_BACKOFF = "webhook-schedule";

export const deliveryJobSchema = z.object({ v: z.literal(1), delivery_id: z.string().min(1) }).strict();
export type DeliveryJob = z.infer<typeof deliveryJobSchema>;

/**
 * Adds delivery jobs. The BullMQ job carries only the delivery id; the record holds the body.
 * Attempts are the first try plus one per step of the retry schedule; a failed job (every
 * attempt spent) stays in BullMQ's failed set, the dead-letter list Bull Board shows.
 */
export class DeliveryQueue {
  readonly queue: Queue;

  constructor(
    connection: Redis,
    private config: SwitchyardConfig,
    /** BullMQ's OpenTelemetry integration when tracing is on: deliveries join their job's trace. */
    telemetry?: Telemetry,
  ) {
    this.queue = new Queue(WEBHOOK_QUEUE, {
      connection,
      prefix: config.queue.prefix,
      ...(telemetry ? { telemetry } : {}),
    });
  }

  /** Takes a reloaded config (retention, retry schedule) for the deliveries added from now on. */
  configure(config: SwitchyardConfig): void {
    this.config = config;
  }

  private get jobOptions() {
    const keep = this.config.queue.keep_finished_jobs;
    const ageSec = Math.round(this.config.webhooks.delivery_retention_hours * 3600);
    return {
      attempts: this.config.webhooks.retry_schedule_seconds.length + 1,
      backoff: { type: WEBHOOK_BACKOFF },
      removeOnComplete: { age: ageSec, count: keep },
      removeOnFail: { age: ageSec, count: keep },
    };
  }

  /** Adds deliveries; a BullMQ job id is the delivery id (plus a replay number), so re-adding is a no-op. */
  async add(deliveries: { deliveryId: string; replay?: number }[]): Promise<void> {
    if (deliveries.length === 0) return;
    await this.queue.addBulk(
      deliveries.map((d) => ({
        name: DELIVERY_JOB,
        data: deliveryJobSchema.parse({ v: 1, delivery_id: d.deliveryId }),
        opts: { ...this.jobOptions, jobId: d.replay ? `${d.deliveryId}-r${d.replay}` : d.deliveryId },
      })),
    );
  }

  async close(): Promise<void> {
    await this.queue.close();
  }
}
