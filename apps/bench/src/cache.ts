import { setTimeout as sleep } from "node:timers/promises";
import { PAID_KEY } from "@switchyard/testing";
import { cpuPerJob, cpuSnapshot, ratio, startBenchStack, succeededRuns } from "./harness";
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

export async function cacheScenario(opts: {
  redisUrl: string;
  durationS: number;
  rawProcessPerSec: number;
  log: (s: string) => void;
  flush: () => Promise<void>;
}): Promise<ScenarioResult> {
  const half = await run(opts.redisUrl, "cached", 0.5, opts.durationS);
  await opts.flush();
  const hitRate = half.done > 0 ? 1 - half.upstream / half.done : null;
  opts.log(
    `cache: ${half.done} jobs, ${half.upstream} upstream calls: hit rate ${((hitRate ?? 0) * 100).toFixed(1)}%`,
  );
  const misses = await run(opts.redisUrl, "cached", 0, opts.durationS);
  await opts.flush();
  const plain = await run(opts.redisUrl, "uncached", 0, opts.durationS);
  const total = (c: typeof plain.cpu) => (c.api ?? 0) + (c.workers ?? 0) + (c.redis ?? 0);
  const missCost = total(misses.cpu) - total(plain.cpu);
  opts.log(
    `cache: CPU per job ${total(misses.cpu).toFixed(3)} ms on a cached route (all misses), ${total(plain.cpu).toFixed(3)} ms uncached`,
  );
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
      name: "cache CPU per miss",
      value: missCost,
      unit: "ms",
      goal: "<= 0.1 ms",
      note: `all-unique load: ${total(misses.cpu).toFixed(3)} ms per job on a cached route against ${total(plain.cpu).toFixed(3)} ms uncached (API + workers + Redis); within run-to-run noise when small`,
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
