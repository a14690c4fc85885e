import type { Queue } from "bullmq";
import type { FairQueue } from "@switchyard/queue";

/**
 * For tests: parks a BullMQ job in `queue`'s delayed set for `delayMs` (as a submission parks it
 * until its start deadline) and lists it in the fair queue, a job of tenant "t" in the paid tier
 * at cost 1.
 */
export async function parkAndList(
  queue: Queue,
  fair: FairQueue,
  jobId: string,
  data: object,
  delayMs = 3_600_000,
): Promise<void> {
  await queue.add("chat", data, { jobId, delay: delayMs, attempts: 3 });
  await fair.enqueue({
    jobId,
    tier: "paid",
    tenantId: "t",
    queue: queue.name,
    cost: 1,
    priority: "normal",
    tierWeight: 1,
    tenantWeight: 1,
  });
}
