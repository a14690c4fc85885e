import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { cachePlan, resolveRoute } from "@switchyard/core";
import { AnswerCache, Keys } from "@switchyard/queue";
import { minimalConfig, PAID_KEY, uniquePrefix } from "@switchyard/testing";
import {
  cpuPerJob,
  cpuSnapshot,
  ratio,
  redisCpuSeconds,
  startBenchStack,
  succeededRuns,
  type ThroughputOpts,
} from "./harness";
import { closedLoop } from "./load";
import type { Figure, ScenarioResult } from "./results";

/**
 * The answer cache end to end, mock at 0 ms, two workers: the e2e load with half of the prompts
 * drawn from 100 repeated ones (hit rate, upstream calls saved), and the CPU a miss costs: the
 * same all-unique load on a cached route and on an uncached one, per job.
 */
const ROUTES = {
  cached: { provider: "openai", model: "gpt-4o-mini", cache: { mode: "exact" } },
  uncached: { provider: "openai", model: "gpt-4o-mini" },
};

const request = (model: string, repeatShare: number) => (i: number) => {
  const repeated = Math.random() < repeatShare;
  const text = repeated
    ? `a frequent question, number ${i % 100}`
    : `a unique question ${i} ${Math.random()}`;
  return {
    path: "/v1/jobs",
    method: "POST" as const,
    headers: { authorization: `Bearer ${PAID_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ model, max_tokens: 16, messages: [{ role: "user", content: text }] }),
  };
};

async function run(redisUrl: string, model: string, repeatShare: number, durationS: number) {
  const stack = await startBenchStack({
    redisUrl,
    workers: 2,
    mockLatencyMs: 0,
    config: (cfg) => Object.assign(cfg.models as Record<string, unknown>, ROUTES),
  });
  try {
    const cpu0 = await cpuSnapshot(stack, redisUrl);
    const t0 = performance.now();
    const load = await closedLoop(stack.apiUrl, request(model, repeatShare), {
      inFlight: 64,
      durationMs: durationS * 1000,
    });
    const accepted = load.statuses[202] ?? 0;
    let done = 0;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline && (done = await succeededRuns(stack.workerPorts)) < accepted)
      await sleep(100);
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = cpuPerJob(cpu0, await cpuSnapshot(stack, redisUrl), done);
    const upstream = Number(
      ((await (await fetch(`${stack.mockUrl}/_stats`)).json()) as { requests?: number }).requests ?? 0,
    );
    return { done, elapsed, cpu, upstream };
  } finally {
    await stack.stop();
  }
}

/**
 * The cache's own work on a miss, measured apart from everything else: the key (canonical JSON
 * and SHA-256 of the request), the lookup with the single-flight claim, and the store that ends
 * the claim, as the worker does them, `n` times with 64 in flight; this process's CPU plus
 * Redis's, per miss. End-to-end CPU per job on this machine varies by more than the figure.
 */
async function missCpu(redisUrl: string, n: number): Promise<{ client: number; redis: number }> {
  const config = minimalConfig({ models: { m: { provider: "openai", cache: { mode: "exact" } } } });
  const redis = new Redis(redisUrl);
  const keys = new Keys(uniquePrefix());
  const cache = new AnswerCache(redis, keys, config.cache);
  const route = resolveRoute(config, "m", { messages: [] });
  const tenant = config.tenants[0];
  if (!route || !tenant) throw new Error("bench config has no route or tenant");
  const one = async (i: number) => {
    const p = {
      model: "m",
      request: {
        messages: [{ role: "user" as const, content: `a unique question ${i} ${Math.random()}` }],
        max_tokens: 16,
      },
    };
    const plan = cachePlan(config, tenant, route, p);
    if (!plan) throw new Error("the bench route is not cached");
    const id = `job_${i}`;
    const begun = await cache.begin(plan, id, Date.now(), 65_000);
    if (begun.kind !== "lead") throw new Error(`expected a miss, got ${begun.kind}`);
    await cache.store(
      plan,
      tenant.id,
      { output_text: "Echo: a unique question", finish_reason: "stop", provider: "openai", model: "m" },
      { input_tokens: 12, output_tokens: 5 },
      id,
    );
  };
  try {
    for (let i = 0; i < 2_000; i++) await one(-i - 1); // warm-up: JIT, scripts loaded
    const cpu0 = process.cpuUsage();
    const r0 = await redisCpuSeconds(redisUrl);
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < n) await one(next++);
      }),
    );
    const cpu = process.cpuUsage(cpu0);
    const r1 = await redisCpuSeconds(redisUrl);
    return { client: (cpu.user + cpu.system) / 1000 / n, redis: ((r1 - r0) * 1000) / n };
  } finally {
    const found = await redis.keys(`${keys.prefix}*`);
    for (let i = 0; i < found.length; i += 1000) await redis.del(...found.slice(i, i + 1000));
    redis.disconnect();
  }
}

export async function cacheScenario(opts: ThroughputOpts): Promise<ScenarioResult> {
  const half = await run(opts.redisUrl, "cached", 0.5, opts.durationS);
  await opts.flush();
  const hitRate = half.done > 0 ? 1 - half.upstream / half.done : null;
  opts.log(
    `cache: ${half.done} jobs, ${half.upstream} upstream calls: hit rate ${((hitRate ?? 0) * 100).toFixed(1)}%`,
  );
  // All-unique loads on a cached and an uncached route, alternated (this machine's noise between
  // two identical runs is of the order of the figure itself): the mean difference per job.
  type Cpu = Awaited<ReturnType<typeof run>>["cpu"];
  const total = (c: Cpu) => (c.api ?? 0) + (c.workers ?? 0) + (c.redis ?? 0);
  const missRuns: number[] = [];
  const plainRuns: number[] = [];
  for (let round = 0; round < 3; round++) {
    const misses = await run(opts.redisUrl, "cached", 0, opts.durationS);
    await opts.flush();
    const plain = await run(opts.redisUrl, "uncached", 0, opts.durationS);
    await opts.flush();
    missRuns.push(total(misses.cpu));
    plainRuns.push(total(plain.cpu));
    opts.log(
      `cache: round ${round + 1}: CPU per job ${total(misses.cpu).toFixed(3)} ms on a cached route (all misses), ${total(plain.cpu).toFixed(3)} ms uncached`,
    );
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const direct = await missCpu(opts.redisUrl, 20_000);
  opts.log(
    `cache: a miss's own work ${(direct.client + direct.redis).toFixed(3)} ms (client ${direct.client.toFixed(3)}, Redis ${direct.redis.toFixed(3)})`,
  );
  const missCost = mean(missRuns) - mean(plainRuns);
  const spread = (xs: number[]) => Math.max(...xs) - Math.min(...xs);
  const perSec = half.done / half.elapsed;
  const figures: Figure[] = [
    {
      name: "hit rate with 50% repeated prompts",
      value: hitRate,
      unit: "",
      note: `${half.done} jobs, 100 distinct repeated prompts`,
    },
    {
      name: "upstream calls saved",
      value: half.done - half.upstream,
      unit: "calls",
      note: `${half.upstream} calls for ${half.done} jobs`,
    },
    { name: "jobs succeeded end to end (50% repeated)", value: perSec, unit: "jobs/s" },
    { name: "ratio to raw Worker", value: ratio(perSec, opts.rawProcessPerSec), unit: "x" },
    {
      name: "cache CPU per miss (the cache's own work)",
      value: direct.client + direct.redis,
      unit: "ms",
      goal: "<= 0.1 ms",
      note: `key, lookup and store as the worker does them, 20,000 misses, 64 in flight: client ${direct.client.toFixed(3)} ms + Redis ${direct.redis.toFixed(3)} ms`,
    },
    {
      name: "cache CPU per miss (end to end difference)",
      value: missCost,
      unit: "ms",
      note: `all-unique load, 3 alternated rounds: ${mean(missRuns).toFixed(3)} ms per job on a cached route against ${mean(plainRuns).toFixed(3)} ms uncached (API + workers + Redis); identical runs differ by up to ${Math.max(spread(missRuns), spread(plainRuns)).toFixed(3)} ms`,
    },
  ];
  return {
    scenario: "cache",
    description:
      "The answer cache end to end (mock at 0 ms, two workers, 64 submissions in flight): hit rate and upstream calls saved with half the prompts repeated, and the CPU a miss costs.",
    params: { duration_s: opts.durationS, workers: 2, in_flight: 64 },
    figures,
  };
}
