import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { redisCpuSeconds } from "./harness";
import type { ScenarioResult } from "./results";

/**
 * Raw BullMQ on the run's Redis, the yardstick every other figure is divided by: Queue.add with
 * 200 adds in flight (a payload the size of a small chat job), then a raw Worker (concurrency
 * 256, like one Switchyard worker) processing those jobs with a no-op.
 */
export interface Baseline {
  addPerSec: number;
  processPerSec: number;
  /** CPU ms per job of raw add + process: this (client) process and Redis. */
  cpuPerJobMs: number;
  result: ScenarioResult;
}

/** A payload the size of a small chat job. */
export const PAYLOAD = {
  v: 1,
  tenant_id: "bench",
  tier: "paid",
  model: "gpt-4o-mini",
  request: { messages: [{ role: "user", content: "say hello to the benchmark in five words" }] },
  priority: "normal",
};

export async function baselineScenario(opts: {
  redisUrl: string;
  durationS: number;
  log: (s: string) => void;
}): Promise<Baseline> {
  const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const prefix = `{bench-raw-${Date.now()}}`;
  const queue = new Queue("raw", { connection, prefix });
  try {
    let added = 0;
    const client0 = process.cpuUsage();
    const redis0 = await redisCpuSeconds(opts.redisUrl);
    const end = Date.now() + opts.durationS * 1000;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (Date.now() < end) {
          await queue.add("chat", PAYLOAD, {
            removeOnComplete: { count: 5_000 },
            removeOnFail: { count: 5_000 },
          });
          added += 1;
        }
      }),
    );
    const addPerSec = added / ((performance.now() - t0) / 1000);
    opts.log(`baseline: raw Queue.add ${Math.round(addPerSec)}/s (${added} jobs)`);

    const t1 = performance.now();
    await processRaw(opts.redisUrl, prefix, added);
    const processPerSec = added / ((performance.now() - t1) / 1000);
    const client = process.cpuUsage(client0);
    const clientMs = (client.user + client.system) / 1000 / added;
    const redisMs = (((await redisCpuSeconds(opts.redisUrl)) - redis0) * 1000) / added;
    opts.log(
      `baseline: raw Worker ${Math.round(processPerSec)} jobs/s; CPU per job (add + process) ${(clientMs + redisMs).toFixed(3)} ms`,
    );
    return {
      addPerSec,
      processPerSec,
      cpuPerJobMs: clientMs + redisMs,
      result: {
        scenario: "baseline",
        description:
          "Raw BullMQ on the same Redis, measured in the same run: Queue.add with 200 adds in flight, then one raw Worker (concurrency 256) completing those jobs with a no-op processor. CPU per job: the bench process (client and worker) and Redis over both phases, divided by the jobs.",
        params: { duration_s: opts.durationS, in_flight: 200, worker_concurrency: 256 },
        figures: [
          { name: "raw Queue.add", value: addPerSec, unit: "jobs/s", note: `${added} jobs` },
          { name: "raw Worker, no-op", value: processPerSec, unit: "jobs/s" },
          { name: "raw CPU per job (add + process): client", value: clientMs, unit: "ms" },
          { name: "raw CPU per job (add + process): Redis", value: redisMs, unit: "ms" },
          { name: "raw CPU per job (add + process): both", value: clientMs + redisMs, unit: "ms" },
        ],
      },
    };
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    await connection.quit();
  }
}

/** A raw BullMQ Worker (concurrency 256, like one Switchyard worker) completes `count` jobs of queue "raw" with a no-op. */
export async function processRaw(redisUrl: string, prefix: string, count: number): Promise<void> {
  let processed = 0;
  let finish = () => {};
  const done = new Promise<void>((resolve) => (finish = resolve));
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const worker = new Worker(
    "raw",
    async () => {
      processed += 1;
      if (processed === count) finish();
    },
    { connection, prefix, concurrency: 256 },
  );
  await done;
  await worker.close();
  await connection.quit();
}
