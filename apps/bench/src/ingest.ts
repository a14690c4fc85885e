import { PAID_KEY } from "@switchyard/testing";
import { cpuPerJob, cpuSnapshot, percentile, ratio, startBenchStack } from "./harness";
import { closedLoop } from "./load";
import type { ScenarioResult } from "./results";

export const chatBody = (i: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: "gpt-4o-mini",
    max_tokens: 16,
    messages: [{ role: "user", content: `say hello to the benchmark, request ${i}` }],
    ...extra,
  });

export const submitRequest = (i: number) => ({
  path: "/v1/jobs",
  method: "POST" as const,
  headers: { authorization: `Bearer ${PAID_KEY}`, "content-type": "application/json" },
  body: chatBody(i),
});

/**
 * Ingest: accepted POST /v1/jobs per second with `inFlight` requests kept going, API alone (no
 * worker competes for the CPU), against raw Queue.add measured in the same run.
 */
export async function ingestScenario(opts: {
  redisUrl: string;
  durationS: number;
  inFlight: number;
  rawAddPerSec: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const stack = await startBenchStack({ redisUrl: opts.redisUrl, workers: 0, mockLatencyMs: 0 });
  try {
    // A short warm-up: JIT, connection pools, Redis scripts loaded.
    await closedLoop(stack.apiUrl, submitRequest, { inFlight: 20, durationMs: 2_000 });
    const cpu0 = await cpuSnapshot(stack, opts.redisUrl);
    const r = await closedLoop(stack.apiUrl, submitRequest, {
      inFlight: opts.inFlight,
      durationMs: opts.durationS * 1000,
    });
    const accepted = r.statuses[202] ?? 0;
    const cpu = cpuPerJob(cpu0, await cpuSnapshot(stack, opts.redisUrl), accepted);
    const perSec = accepted / (r.elapsedMs / 1000);
    opts.log(
      `ingest: ${Math.round(perSec)} accepted/s, statuses ${JSON.stringify(r.statuses)}, errors ${r.errors}`,
    );
    return {
      scenario: "ingest",
      description: `POST /v1/jobs with ${opts.inFlight} requests in flight for ${opts.durationS} s against the API process alone (no worker running), after a 2 s warm-up.`,
      params: { duration_s: opts.durationS, in_flight: opts.inFlight },
      figures: [
        {
          name: "accepted submissions",
          value: perSec,
          unit: "jobs/s",
          goal: ">= 5000/s",
          note: `${accepted} answered 202`,
        },
        { name: "ratio to raw Queue.add", value: ratio(perSec, opts.rawAddPerSec), unit: "x" },
        { name: "CPU per submission: API", value: cpu.api, unit: "ms" },
        { name: "CPU per submission: Redis", value: cpu.redis, unit: "ms" },
        { name: "latency p50", value: percentile(r.latencies, 50), unit: "ms" },
        { name: "latency p95", value: percentile(r.latencies, 95), unit: "ms" },
        { name: "latency p99", value: percentile(r.latencies, 99), unit: "ms", goal: "<= 20 ms" },
      ],
      details: { statuses: r.statuses, errors: r.errors },
    };
  } finally {
    await stack.stop();
  }
}
