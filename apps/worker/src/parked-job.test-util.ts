import type { Queue } from "bullmq";
import type { JobPayload } from "@switchyard/core";
import type { FairQueue } from "@switchyard/queue";

/** For tests: a small chat job of tenant "t" in the paid tier, for model "m". */
export function chatPayload(jobId: string): JobPayload {
  return {
    v: 1,
    job_id: jobId,
    tenant_id: "t",
    tier: "paid",
    model: "m",
    request: { messages: [{ role: "user", content: "hi" }], max_tokens: 8 },
    priority: "normal",
    start_deadline: Date.now() + 3_600_000,
    trace_id: "trace",
  };
}

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
