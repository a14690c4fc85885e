import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { Pool } from "undici";
import { percentile } from "./harness";
import { chatBody } from "./ingest";
import { paced } from "./load";

/**
 * The overhead floor on this machine, for comparison: raw BullMQ (Queue.add, one Worker) whose
 * processor makes the same upstream call to the same mock, jobs added at the same rate (open
 * loop). Overhead = finishedOn - timestamp - the mock's latency, as BullMQ records them. What a
 * bare queue plus one HTTP call adds here (timer and wake-up latency, the HTTP round trip, the
 * add and the completion) is a floor Switchyard's own overhead cannot go below on this machine.
 */
export async function rawOverhead(opts: {
  redisUrl: string;
  mockUrl: string;
  ratePerSec: number;
  durationS: number;
  latencyMs: number;
  concurrency: number;
}): Promise<{ p50: number | null; p99: number | null; jobs: number }> {
  const prefix = `{bench-raw-oh-${Date.now()}}`;
  const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const workerConnection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const upstream = new Pool(opts.mockUrl, { connections: opts.concurrency });
  const queue = new Queue("raw-overhead", { connection, prefix });
  const overheads: number[] = [];
  const total = Math.round(opts.ratePerSec * opts.durationS);
  let finish = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  const worker = new Worker(
    "raw-overhead",
    async (job) => {
      const res = await upstream.request({
        path: "/v1/chat/completions",
        method: "POST",
        headers: { authorization: "Bearer sk-upstream-1", "content-type": "application/json" },
        body: chatBody(Number(job.data.i)),
      });
      await res.body.json();
    },
    { connection: workerConnection, prefix, concurrency: opts.concurrency },
  );
  worker.on("completed", (job) => {
    if (job.finishedOn !== undefined) overheads.push(job.finishedOn - job.timestamp - opts.latencyMs);
    if (overheads.length >= total) finish();
  });
  try {
    await worker.waitUntilReady();
    await paced(opts.ratePerSec, total, (i) =>
      queue.add("chat", { i }, { removeOnComplete: { count: 5_000 }, removeOnFail: true }),
    );
    await Promise.race([done, new Promise((r) => setTimeout(r, 60_000 + opts.latencyMs))]);
    return { p50: percentile(overheads, 50), p99: percentile(overheads, 99), jobs: overheads.length };
  } finally {
    await worker.close();
    await queue.close();
    await upstream.close();
    await Promise.all([connection.quit(), workerConnection.quit()]);
  }
}
