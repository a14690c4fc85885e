import { setTimeout as sleep } from "node:timers/promises";
import {
  commandsPerJob,
  cpuPerJob,
  cpuSnapshot,
  ratio,
  redisCommandStats,
  startBenchStack,
  succeededRuns,
  waitSucceeded,
} from "./harness";
import { closedLoop } from "./load";
import { submitRequest } from "./ingest";
import type { ScenarioResult } from "./results";

/**
 * End to end: jobs per second from POST to succeeded with the mock answering at once. Clients
 * keep submitting for the duration while the workers run; the rate is the succeeded jobs over
 * the time from the first submission to the last success.
 */
export async function e2eScenario(opts: {
  redisUrl: string;
  durationS: number;
  workers: number;
  rawProcessPerSec: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const stack = await startBenchStack({ redisUrl: opts.redisUrl, workers: opts.workers, mockLatencyMs: 0 });
  try {
    // A short warm-up (JIT, connection pools, scripts loaded), as ingest has, then until it drained.
    const warm = await closedLoop(stack.apiUrl, submitRequest, { inFlight: 20, durationMs: 2_000 });
    const warmed = await waitSucceeded(stack.workerPorts, warm.statuses[202] ?? 0, 120_000);
    const cpu0 = await cpuSnapshot(stack, opts.redisUrl);
    const cmd0 = await redisCommandStats(opts.redisUrl);
    const t0 = performance.now();
    const load = await closedLoop(stack.apiUrl, submitRequest, {
      inFlight: 100,
      durationMs: opts.durationS * 1000,
    });
    const accepted = load.statuses[202] ?? 0;
    opts.log(
      `e2e: ${accepted} submitted in ${(load.elapsedMs / 1000).toFixed(1)} s; waiting for the workers`,
    );
    let done = 0;
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      done = (await succeededRuns(stack.workerPorts)) - warmed;
      if (done >= accepted) break;
      await sleep(250);
    }
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = cpuPerJob(cpu0, await cpuSnapshot(stack, opts.redisUrl), done);
    const commands = commandsPerJob(cmd0, await redisCommandStats(opts.redisUrl), done);
    const scripts = commands.filter((c) => c.command === "evalsha" || c.command === "eval");
    opts.log(`e2e: Redis per job: ${JSON.stringify(commands.slice(0, 12))}`);
    const perSec = done / elapsed;
    opts.log(`e2e: ${done} of ${accepted} succeeded, ${Math.round(perSec)} jobs/s`);
    return {
      scenario: "e2e",
      description: `POST to succeeded with the mock at 0 ms latency, ${opts.workers} worker processes (concurrency 256 each) and the API on one machine; after a 2 s warm-up, 100 submissions in flight for ${opts.durationS} s, then until the last job succeeds.`,
      params: { duration_s: opts.durationS, workers: opts.workers, submit_in_flight: 100 },
      details: { redis_commands_per_job: commands.slice(0, 25) },
      figures: [
        {
          name: "jobs succeeded end to end",
          value: perSec,
          unit: "jobs/s",
          goal: ">= 3000/s",
          note: `${done} of ${accepted} in ${elapsed.toFixed(1)} s`,
        },
        { name: "ratio to raw Worker", value: ratio(perSec, opts.rawProcessPerSec), unit: "x" },
        {
          name: "CPU per job: API",
          value: cpu.api,
          unit: "ms",
          note: "user + system time over the run / jobs",
        },
        { name: "CPU per job: workers", value: cpu.workers, unit: "ms" },
        { name: "CPU per job: Redis", value: cpu.redis, unit: "ms" },
        {
          name: "CPU per job: all three",
          value:
            cpu.api === null || cpu.workers === null || cpu.redis === null
              ? null
              : cpu.api + cpu.workers + cpu.redis,
          unit: "ms",
          goal: "<= 1.0 ms",
        },
        {
          name: "Redis script calls per job",
          value: scripts.reduce((n, c) => n + c.calls_per_job, 0),
          unit: "calls",
          note: "EVALSHA/EVAL, each one round trip",
        },
        {
          name: "submissions accepted while workers ran",
          value: accepted / (load.elapsedMs / 1000),
          unit: "jobs/s",
        },
      ],
    };
  } finally {
    await stack.stop();
  }
}
