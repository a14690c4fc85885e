import { setTimeout as sleep } from "node:timers/promises";
import {
  commandsPerJob,
  cpuPerJob,
  cpuSnapshot,
  ratio,
  redisCommandStats,
  SCRIPT_COMMANDS,
  startBenchStack,
  succeededRuns,
  waitSucceeded,
  type ThroughputOpts,
} from "./harness";
import { closedLoop } from "./load";
import { submitRequest } from "./ingest";
import type { ScenarioResult } from "./results";
import { describeRaw, rawAround, rawNextTo, type RawAround } from "./baseline";

/** One deployment's run: jobs per second, CPU per job and script calls per job. */
export interface E2eRun {
  workers: number;
  perSec: number;
  done: number;
  accepted: number;
  elapsed: number;
  submitSeconds: number;
  cpu: { api: number | null; workers: number | null; redis: number | null };
  scriptCalls: number;
  commands: ReturnType<typeof commandsPerJob>;
}

/** A run's CPU per job of API, workers and Redis together (null when one was not measured). */
export const cpuAll = (r: E2eRun): number | null =>
  r.cpu.api === null || r.cpu.workers === null || r.cpu.redis === null
    ? null
    : r.cpu.api + r.cpu.workers + r.cpu.redis;

/** "1 worker", "2 workers". */
export const workersText = (n: number): string => `${n} worker${n === 1 ? "" : "s"}`;

export async function e2eRun(opts: {
  redisUrl: string;
  durationS: number;
  workers: number;
  log: (s: string) => void;
  /** Another checkout's API and worker (before-after); this one's by default. */
  appsRoot?: string;
  /** Names the run in progress lines. */
  label?: string;
}): Promise<E2eRun> {
  const stack = await startBenchStack({
    redisUrl: opts.redisUrl,
    workers: opts.workers,
    mockLatencyMs: 0,
    ...(opts.appsRoot ? { appsRoot: opts.appsRoot } : {}),
  });
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
    const tag = `${opts.label ?? "e2e"}, ${workersText(opts.workers)}`;
    opts.log(
      `${tag}: ${accepted} submitted in ${(load.elapsedMs / 1000).toFixed(1)} s; waiting for the workers`,
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
    const scripts = commands.filter((c) => SCRIPT_COMMANDS.has(c.command));
    opts.log(`${tag}: Redis per job: ${JSON.stringify(commands.slice(0, 12))}`);
    const perSec = done / elapsed;
    opts.log(`${tag}: ${done} of ${accepted} succeeded, ${Math.round(perSec)} jobs/s`);
    return {
      workers: opts.workers,
      perSec,
      done,
      accepted,
      elapsed,
      submitSeconds: load.elapsedMs / 1000,
      cpu,
      scriptCalls: scripts.reduce((n, c) => n + c.calls_per_job, 0),
      commands,
    };
  } finally {
    await stack.stop();
  }
}

/**
 * A run's figures; `suffix` tells the deployments apart (none for the two-worker run, as before).
 * Ratios divide by raw BullMQ measured next to the run (`around`); the run's start baseline is in
 * their notes.
 */
function e2eFigures(
  r: E2eRun,
  around: RawAround,
  start: { processPerSec: number; cpuPerJobMs: number | undefined },
  suffix: string,
): ScenarioResult["figures"] {
  const { api, workers, redis } = r.cpu;
  const all = cpuAll(r);
  const atStart = (v: number | null) => (v === null ? "n/a" : `${v.toFixed(3)}x`);
  return [
    {
      name: `jobs succeeded end to end${suffix}`,
      value: r.perSec,
      unit: "jobs/s",
      goal: ">= 1500/s",
      note: `${r.done} of ${r.accepted} in ${r.elapsed.toFixed(1)} s`,
    },
    {
      name: `ratio to raw Worker${suffix}`,
      value: ratio(r.perSec, around.mean.processPerSec),
      unit: "x",
      goal: ">= 0.10 x",
      note: `${describeRaw(around, "process")}; to the run's start baseline (${Math.round(start.processPerSec)} jobs/s): ${atStart(ratio(r.perSec, start.processPerSec))}`,
    },
    {
      name: `CPU per job: API${suffix}`,
      value: api,
      unit: "ms",
      note: "user + system time over the run / jobs",
    },
    { name: `CPU per job: workers${suffix}`, value: workers, unit: "ms" },
    { name: `CPU per job: Redis${suffix}`, value: redis, unit: "ms" },
    {
      name: `CPU per job: all three${suffix}`,
      value: all,
      unit: "ms",
      goal: "<= 1.0 ms",
    },
    {
      name: `CPU per job over raw BullMQ's${suffix}`,
      value: ratio(all, around.mean.cpuPerJobMs),
      unit: "x",
      note: `raw add + no-op process, client + Redis: ${describeRaw(around, "cpu")}; to the run's start baseline (${start.cpuPerJobMs?.toFixed(3) ?? "n/a"} ms): ${atStart(ratio(all, start.cpuPerJobMs ?? null))}`,
    },
    {
      name: `Redis script calls per job${suffix}`,
      value: r.scriptCalls,
      unit: "calls",
      note: "EVALSHA/EVAL/FCALL, each one round trip",
    },
    {
      name: `submissions accepted while workers ran${suffix}`,
      value: r.accepted / r.submitSeconds,
      unit: "jobs/s",
    },
  ];
}

/**
 * End to end: jobs per second from POST to succeeded with the mock answering at once. Clients
 * keep submitting for the duration while the workers run; the rate is the succeeded jobs over
 * the time from the first submission to the last success. Two deployments on the same machine,
 * one after the other: one worker process (the whole worker.concurrency in one process) and two
 * (the deployment of the earlier rounds), so what a second process on two shared cores costs
 * shows in the same run.
 */
export async function e2eScenario(opts: ThroughputOpts & { rawDurationS: number }): Promise<ScenarioResult> {
  const r0 = await rawNextTo(opts, "e2e, raw BullMQ before the one-worker run");
  const one = await e2eRun({ ...opts, workers: 1 });
  await opts.flush();
  const r1 = await rawNextTo(opts, "e2e, raw BullMQ between the runs");
  const two = await e2eRun({ ...opts, workers: 2 });
  await opts.flush();
  const r2 = await rawNextTo(opts, "e2e, raw BullMQ after the two-worker run");
  const start = { processPerSec: opts.rawProcessPerSec, cpuPerJobMs: opts.rawCpuPerJobMs };
  return {
    scenario: "e2e",
    description: `POST to succeeded with the mock at 0 ms latency, the API and one worker process (concurrency 256), then the API and two worker processes (256 each), on one machine; each after a 2 s warm-up, 100 submissions in flight for ${opts.durationS} s, then until the last job succeeds. Figures without a suffix are the two-process run (as in earlier rounds). Raw BullMQ (${opts.rawDurationS} s of adds, then their processing) is measured before the first run, between the two and after the second; each run's ratios divide by the mean of the two measured next to it.`,
    params: {
      duration_s: opts.durationS,
      workers: [1, 2],
      submit_in_flight: 100,
      raw_duration_s: opts.rawDurationS,
    },
    details: {
      redis_commands_per_job: two.commands.slice(0, 25),
      redis_commands_per_job_1_worker: one.commands.slice(0, 25),
      raw_next_to_runs: [r0, r1, r2],
    },
    figures: [
      ...e2eFigures(one, rawAround(r0, r1), start, " (1 worker)"),
      ...e2eFigures(two, rawAround(r1, r2), start, ""),
    ],
  };
}
