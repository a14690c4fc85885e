import { withTraceparent, type Logger } from "@switchyard/observability";
import type { JobStore, Keys, Redis } from "@switchyard/queue";
import {
  JOB_URL_TARGET,
  deliveryId,
  eventBody,
  eventFor,
  messageId,
  type DeliveryQueue,
  type NewDelivery,
  type WebhookStore,
} from "@switchyard/webhooks";
import type { WebhookMetrics } from "./metrics";

const GROUP = "fanout";
/** An entry a consumer took but did not finish for this long is taken over by another. */
const CLAIM_IDLE_MS = 30_000;
const BATCH = 100;
/** Consumers (one per worker process ever started) with nothing pending and idle this long are removed. */
const FORGET_IDLE_MS = 600_000;

type StreamEntry = [id: string, fields: string[]];

/**
 * Turns final job events into deliveries. transition.lua appends each final event of a tenant
 * with endpoints (or of a job with its own webhook.url) to the outbox stream in the same step
 * as the status change; this reads the stream as a consumer group, writes one delivery record
 * and one BullMQ job per target, and only then acknowledges and deletes the entry. An entry
 * left by a worker that died is claimed by another after CLAIM_IDLE_MS; delivery ids are
 * deterministic, so doing an entry twice adds nothing twice.
 */
export class OutboxFanout {
  private running = false;
  private loop?: Promise<void>;
  private lastClaim = 0;

  constructor(
    private readonly blocking: Redis,
    private readonly keys: Keys,
    private readonly jobs: JobStore,
    private readonly store: WebhookStore,
    private readonly queue: DeliveryQueue,
    private readonly metrics: WebhookMetrics,
    private readonly log: Logger,
    private readonly consumer: string,
    private readonly forgetIdleMs = FORGET_IDLE_MS,
  ) {}

  async start(): Promise<void> {
    try {
      await this.blocking.xgroup("CREATE", this.keys.webhookOutbox, GROUP, "0", "MKSTREAM");
    } catch (err) {
      if (!String((err as Error).message).includes("BUSYGROUP")) throw err;
    }
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        if (Date.now() - this.lastClaim > CLAIM_IDLE_MS / 2) {
          this.lastClaim = Date.now();
          const claimed = (await this.blocking.xautoclaim(
            this.keys.webhookOutbox,
            GROUP,
            this.consumer,
            CLAIM_IDLE_MS,
            "0-0",
            "COUNT",
            BATCH,
          )) as [string, StreamEntry[]];
          if (claimed[1].length) await this.handle(claimed[1]);
          await this.forgetIdleConsumers();
        }
        const reply = (await this.blocking.xreadgroup(
          "GROUP",
          GROUP,
          this.consumer,
          "COUNT",
          BATCH,
          "BLOCK",
          1_000,
          "STREAMS",
          this.keys.webhookOutbox,
          ">",
        )) as [string, StreamEntry[]][] | null;
        for (const [, entries] of reply ?? []) await this.handle(entries);
      } catch (err) {
        if (!this.running) break;
        this.log.error({ err }, "webhook fan-out failed; retrying in 1 s");
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
  }

  /** Keeps the group's consumer list bounded: every restarted worker joins under a new name. */
  private async forgetIdleConsumers(): Promise<void> {
    const list = (await this.blocking.xinfo("CONSUMERS", this.keys.webhookOutbox, GROUP)) as unknown[][];
    for (const row of list) {
      const info: Record<string, unknown> = {};
      for (let i = 0; i + 1 < row.length; i += 2) info[String(row[i])] = row[i + 1];
      const name = String(info.name);
      if (name !== this.consumer && Number(info.pending) === 0 && Number(info.idle) >= this.forgetIdleMs)
        await this.blocking.xgroup("DELCONSUMER", this.keys.webhookOutbox, GROUP, name);
    }
  }

  /**
   * Fans out a batch's entries all at once: each is a few round trips (the record, the
   * endpoints, the delivery records, the BullMQ jobs), and one after the other they capped the
   * fan-out at a few hundred events a second on a busy machine (deliveries seconds late at 200
   * jobs/s). Entries are independent: each job's deliveries have their own ids and jobs.
   */
  private async handle(entries: StreamEntry[]): Promise<void> {
    const done: string[] = [];
    await Promise.all(
      entries.map(async ([id, fields]) => {
        // A claimed entry deleted meanwhile comes back with no fields: nothing to do but ack it.
        const f: Record<string, string> = {};
        for (let i = 0; i + 1 < (fields?.length ?? 0); i += 2)
          f[fields[i] as string] = fields[i + 1] as string;
        try {
          if (f.job && f.status) await this.fanOut(f.job, f.status);
          done.push(id);
        } catch (err) {
          // Left unacknowledged: claimed again after CLAIM_IDLE_MS.
          this.log.error({ err, jobId: f.job }, "could not fan out a webhook event; will retry");
        }
      }),
    );
    if (done.length)
      await this.blocking
        .multi()
        .xack(this.keys.webhookOutbox, GROUP, ...done)
        .xdel(this.keys.webhookOutbox, ...done)
        .exec();
  }

  private async fanOut(jobId: string, status: string): Promise<void> {
    const event = eventFor(status);
    const rec = await this.jobs.get(jobId);
    if (!event || !rec) return;
    const body = eventBody(event, rec.view);
    const msgId = messageId(jobId, status);
    const targets: NewDelivery[] = [];
    const base = { tenantId: rec.tenantId, jobId, event, msgId, body };
    for (const ep of await this.store.endpoints(rec.tenantId)) {
      if (ep.status !== "enabled" || !ep.events.includes(event)) continue;
      targets.push({ ...base, id: deliveryId(jobId, status, ep.id), target: ep.id });
    }
    if (rec.webhookUrl)
      targets.push({
        ...base,
        id: deliveryId(jobId, status, JOB_URL_TARGET),
        target: JOB_URL_TARGET,
        url: rec.webhookUrl,
      });
    if (targets.length === 0) return;
    await Promise.all(targets.map((t) => this.store.createDelivery(t)));
    // Queued in the submission's trace: the deliveries are the end of the job's trace.
    await withTraceparent(rec.traceparent, () => this.queue.add(targets.map((t) => ({ deliveryId: t.id }))));
    this.metrics.events.inc({ event });
  }
}
