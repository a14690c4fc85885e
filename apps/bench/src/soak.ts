import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { rssMiB, slope, startBenchStack } from "./harness";
import { openLoop } from "./load";
import { submitRequest } from "./ingest";
import type { ScenarioResult } from "./results";

/**
 * Soak: a steady rate for the duration; RSS of the API and each worker and Redis used_memory
 * sampled every 5 s. Growth per minute is the least-squares slope after the first third (warm-up).
 * Job records live for queue.retention_hours, so Redis grows by design during a soak shorter than
 * that; its figure is reported with that in mind.
 */
export async function soakScenario(opts: {
  redisUrl: string;
  durationS: number;
  ratePerSec: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const stack = await startBenchStack({ redisUrl: opts.redisUrl, workers: 2, mockLatencyMs: 50 });
  const redis = new Redis(opts.redisUrl);
  const samples: { t: number; api: number | null; workers: (number | null)[]; redis: number }[] = [];
  try {
    const start = Date.now();
    let running = true;
    const sampler = (async () => {
      while (running) {
        const info = await redis.info("memory");
        const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0) / 2 ** 20;
        samples.push({
          t: (Date.now() - start) / 60_000,
          api: rssMiB(stack.api.child.pid),
          workers: stack.workers.map((w) => rssMiB(w.child.pid)),
          redis: used,
        });
        const last = samples[samples.length - 1];
        if (samples.length % 6 === 0 && last)
          opts.log(
            `  soak ${Math.round(last.t * 60)} s: api ${last.api?.toFixed(0)} MiB, workers ${last.workers.map((w) => w?.toFixed(0)).join("/")} MiB, redis ${last.redis.toFixed(1)} MiB`,
          );
        await sleep(5_000);
      }
    })();
    const load = await openLoop(stack.apiUrl, submitRequest, {
      ratePerSec: opts.ratePerSec,
      durationMs: opts.durationS * 1000,
      connections: 32,
    });
    running = false;
    await sampler;
    const warm = samples.filter((s) => s.t >= opts.durationS / 60 / 3);
    const growth = (pick: (s: (typeof samples)[number]) => number | null) =>
      slope(warm.flatMap((s) => (pick(s) === null ? [] : [{ x: s.t, y: pick(s) as number }])));
    const workerGrowth = stack.workers.map((_, i) => growth((s) => s.workers[i] ?? null));
    const first = samples[0];
    const last = samples[samples.length - 1];
    return {
      scenario: "soak",
      description: `${opts.ratePerSec} jobs/s for ${opts.durationS} s (mock latency 50 ms, 2 workers). Memory sampled every 5 s; growth = least-squares slope after the first third of the run.`,
      params: { duration_s: opts.durationS, rate_per_s: opts.ratePerSec },
      figures: [
        {
          name: "api RSS growth",
          value: growth((s) => s.api),
          unit: "MiB/min",
          goal: "< 1 MiB/min",
          note: `${first?.api?.toFixed(0)} -> ${last?.api?.toFixed(0)} MiB`,
        },
        ...workerGrowth.map((g, i) => ({
          name: `worker ${i + 1} RSS growth`,
          value: g,
          unit: "MiB/min",
          goal: "< 1 MiB/min",
          note: `${first?.workers[i]?.toFixed(0)} -> ${last?.workers[i]?.toFixed(0)} MiB`,
        })),
        {
          name: "Redis used_memory growth",
          value: growth((s) => s.redis),
          unit: "MiB/min",
          note: `${first?.redis.toFixed(1)} -> ${last?.redis.toFixed(1)} MiB; job records are kept queue.retention_hours (24 h by default), so this grows by design until then`,
        },
        { name: "jobs accepted", value: load.statuses[202] ?? 0, unit: "" },
      ],
      details: { samples },
    };
  } finally {
    await redis.quit();
    await stack.stop();
  }
}
