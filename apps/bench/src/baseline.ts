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

/** One measurement of raw BullMQ: adds, then a no-op Worker completing them. */
export interface RawMeasure {
  addPerSec: number;
  processPerSec: number;
  added: number;
  /** CPU ms per job (add + process): the client (this process) and Redis. */
  clientMs: number;
  redisMs: number;
  cpuPerJobMs: number;
}

/** Raw BullMQ on the run's Redis for `durationS` of adds (200 in flight), then their processing. */
export async function measureRaw(redisUrl: string, durationS: number): Promise<RawMeasure> {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const prefix = `{bench-raw-${Date.now()}}`;
  const queue = new Queue("raw", { connection, prefix });
  try {
    let added = 0;
    const client0 = process.cpuUsage();
    const redis0 = await redisCpuSeconds(redisUrl);
    const end = Date.now() + durationS * 1000;
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
    const t1 = performance.now();
    await processRaw(redisUrl, prefix, added);
    const processPerSec = added / ((performance.now() - t1) / 1000);
    const client = process.cpuUsage(client0);
    const clientMs = (client.user + client.system) / 1000 / added;
    const redisMs = (((await redisCpuSeconds(redisUrl)) - redis0) * 1000) / added;
    return { addPerSec, processPerSec, added, clientMs, redisMs, cpuPerJobMs: clientMs + redisMs };
  } finally {
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    await connection.quit();
  }
}

export async function baselineScenario(opts: {
  redisUrl: string;
  durationS: number;
  log: (s: string) => void;
}): Promise<Baseline> {
  const m = await measureRaw(opts.redisUrl, opts.durationS);
  opts.log(`baseline: raw Queue.add ${Math.round(m.addPerSec)}/s (${m.added} jobs)`);
  opts.log(
    `baseline: raw Worker ${Math.round(m.processPerSec)} jobs/s; CPU per job (add + process) ${m.cpuPerJobMs.toFixed(3)} ms`,
  );
  return {
    addPerSec: m.addPerSec,
    processPerSec: m.processPerSec,
    cpuPerJobMs: m.cpuPerJobMs,
    result: {
      scenario: "baseline",
      description:
        "Raw BullMQ on the same Redis, measured in the same run: Queue.add with 200 adds in flight, then one raw Worker (concurrency 256) completing those jobs with a no-op processor. CPU per job: the bench process (client and worker) and Redis over both phases, divided by the jobs. The speed scenarios (ingest, e2e) also measure raw BullMQ right before and right after each of their runs and divide by that (see their notes): this machine's speed moves by a third within an hour.",
      params: { duration_s: opts.durationS, in_flight: 200, worker_concurrency: 256 },
      figures: [
        { name: "raw Queue.add", value: m.addPerSec, unit: "jobs/s", note: `${m.added} jobs` },
        { name: "raw Worker, no-op", value: m.processPerSec, unit: "jobs/s" },
        { name: "raw CPU per job (add + process): client", value: m.clientMs, unit: "ms" },
        { name: "raw CPU per job (add + process): Redis", value: m.redisMs, unit: "ms" },
        { name: "raw CPU per job (add + process): both", value: m.cpuPerJobMs, unit: "ms" },
      ],
    },
  };
}

/**
 * Raw BullMQ next to a measured run: measured right before it and right after it, on the same
 * Redis (emptied after each), so a ratio divides by the machine's speed of those minutes rather
 * than of the run's start. `mean` is the yardstick; `before` and `after` show how much the
 * machine moved meanwhile.
 */
export interface RawAround {
  before: RawMeasure;
  after: RawMeasure;
  mean: RawMeasure;
}

/** The yardstick of a run from raw BullMQ measured right before and right after it: their mean. */
export function rawAround(before: RawMeasure, after: RawMeasure): RawAround {
  const m = (x: number, y: number) => (x + y) / 2;
  const mean = {
    addPerSec: m(before.addPerSec, after.addPerSec),
    processPerSec: m(before.processPerSec, after.processPerSec),
    added: before.added + after.added,
    clientMs: m(before.clientMs, after.clientMs),
    redisMs: m(before.redisMs, after.redisMs),
    cpuPerJobMs: m(before.cpuPerJobMs, after.cpuPerJobMs),
  };
  return { before, after, mean };
}

/** How a yardstick was measured, for a figure's note. */
export function describeRaw(r: RawAround, what: "add" | "process" | "cpu"): string {
  const f = (m: RawMeasure) =>
    what === "add"
      ? `${Math.round(m.addPerSec)}/s`
      : what === "process"
        ? `${Math.round(m.processPerSec)} jobs/s`
        : `${m.cpuPerJobMs.toFixed(3)} ms`;
  return `raw BullMQ measured right before (${f(r.before)}) and right after (${f(r.after)}) this run: the mean, ${f(r.mean)}`;
}

/** Measures raw BullMQ for `rawDurationS` (see measureRaw), logs it under `label`, and empties Redis. */
export async function rawNextTo(
  opts: { redisUrl: string; rawDurationS: number; log: (s: string) => void; flush: () => Promise<void> },
  label: string,
): Promise<RawMeasure> {
  const m = await measureRaw(opts.redisUrl, opts.rawDurationS);
  await opts.flush();
  opts.log(
    `${label}: raw Queue.add ${Math.round(m.addPerSec)}/s, raw Worker ${Math.round(m.processPerSec)} jobs/s, raw CPU per job ${m.cpuPerJobMs.toFixed(3)} ms`,
  );
  return m;
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
