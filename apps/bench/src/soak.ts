import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { rssMiB, slope, startBenchStack } from "./harness";
import { openLoop } from "./load";
import { submitRequest } from "./ingest";
import { connectInspector, type Inspector } from "./inspector";
import type { ScenarioResult } from "./results";

/**
 * Soak: a steady rate for the duration; RSS of the API and each worker and Redis used_memory
 * sampled every 5 s. Growth per minute is the least-squares slope after the first third (warm-up).
 * Every 30 s (every 10 s in a quick run) the API and the workers are also asked, through their
 * V8 inspectors, for a full collection, and their RSS and used heap are read after it: the plain
 * samples land anywhere on V8's collection cycle (the API's swings by ~40 MiB over ~2 minutes, as
 * long as a third of the fitted window), the ones after a collection show what the process keeps,
 * which is what grows when something leaks.
 * Job records live for queue.retention_hours, so Redis grows by design during a soak shorter than
 * that; its figure is reported with that in mind.
 */
export async function soakScenario(opts: {
  redisUrl: string;
  durationS: number;
  ratePerSec: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const stack = await startBenchStack({
    redisUrl: opts.redisUrl,
    workers: 2,
    mockLatencyMs: 50,
    nodeArgs: ["--inspect=127.0.0.1:0"],
  });
  const redis = new Redis(opts.redisUrl);
  const samples: { t: number; api: number | null; workers: (number | null)[]; redis: number }[] = [];
  // After a full collection: RSS and used heap of the API ([0]) and each worker, MiB.
  const collected: { t: number; rss: (number | null)[]; heap: number[] }[] = [];
  const procs = [stack.api, ...stack.workers];
  const inspectors: Inspector[] = [];
  // A collection every 6th sample (30 s) in a full run, more often in a short one so that a quick
  // run fits more than one point after its warm-up: about 20 collections per run, every 10 s at most.
  const collectEvery = Math.max(2, Math.min(6, Math.round(opts.durationS / 20 / 5)));
  try {
    for (const p of procs) inspectors.push(await connectInspector(p));
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
        if (samples.length % collectEvery === 1) {
          const heap: number[] = [];
          const rss: (number | null)[] = [];
          for (const [i, ins] of inspectors.entries()) {
            await ins.collectGarbage();
            heap.push(await ins.heapUsedMiB());
            rss.push(rssMiB(procs[i]?.child.pid));
          }
          collected.push({ t: (Date.now() - start) / 60_000, rss, heap });
        }
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
    const warmCollected = collected.filter((s) => s.t >= opts.durationS / 60 / 3);
    const collectedGrowth = (pick: (s: (typeof collected)[number]) => number | null) =>
      slope(warmCollected.flatMap((s) => (pick(s) === null ? [] : [{ x: s.t, y: pick(s) as number }])));
    const firstC = collected[0];
    const lastC = collected[collected.length - 1];
    const afterCollection = procs.flatMap((_, i) => {
      const label = i === 0 ? "api" : `worker ${i}`;
      return [
        {
          name: `${label} RSS growth after a full collection`,
          value: collectedGrowth((s) => s.rss[i] ?? null),
          unit: "MiB/min",
          goal: "< 1 MiB/min",
          note: `${firstC?.rss[i]?.toFixed(0)} -> ${lastC?.rss[i]?.toFixed(0)} MiB, ${warmCollected.length} collections fitted`,
        },
        {
          name: `${label} used heap growth after a full collection`,
          value: collectedGrowth((s) => s.heap[i] ?? null),
          unit: "MiB/min",
          note: `${firstC?.heap[i]?.toFixed(1)} -> ${lastC?.heap[i]?.toFixed(1)} MiB`,
        },
      ];
    });
    const first = samples[0];
    const last = samples[samples.length - 1];
    return {
      scenario: "soak",
      description: `${opts.ratePerSec} jobs/s for ${opts.durationS} s (mock latency 50 ms, 2 workers). Memory sampled every 5 s; every ${collectEvery * 5} s also RSS and V8's used heap right after a full collection asked for through each process's inspector. Growth = least-squares slope after the first third of the run.`,
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
        ...afterCollection,
        { name: "jobs accepted", value: load.statuses[202] ?? 0, unit: "" },
      ],
      details: { samples, collected },
    };
  } finally {
    for (const ins of inspectors) ins.close();
    await redis.quit();
    await stack.stop();
  }
}
