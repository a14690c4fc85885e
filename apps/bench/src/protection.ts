import { setTimeout as sleep } from "node:timers/promises";
import { PAID_KEY } from "@switchyard/testing";
import type { ConfigDoc } from "@switchyard/testing";
import { percentile, ratio, startBenchStack } from "./harness";
import { measureIngest, submitRequest } from "./ingest";
import { openLoop } from "./load";
import type { ScenarioResult } from "./results";

/**
 * Protection: (1) the CPU the admission bounds, the quota check and the ingress limits add to a
 * submission when no bound is near: ingest with them configured (far away) against ingest
 * without, alternated; (2) how well `estimated_start_seconds` on the 202 predicts the real wait:
 * an open loop above the workers' capacity builds a backlog, and every job's estimate is
 * compared with its real start.
 *
 * The estimated-wait bound (max_wait_seconds) is left out of the far configuration: with no
 * worker running nothing starts, so the estimated wait grows without limit and any bound is
 * reached within seconds (at ~3,000 submissions/s, 30 days' worth within a 30 s run); its check
 * is one comparison on the estimate every submission computes anyway. Every round reports the
 * answers it got, so a bound that fires shows.
 */
const FAR = (cfg: ConfigDoc) => {
  cfg.admission = { paid: { max_waiting: 100_000_000 } };
  cfg.server = {
    ...(cfg.server as Record<string, unknown>),
    rate_limit: {
      per_ip: { rps: 1_000_000, burst: 10_000_000 },
      per_tenant: { rps: 1_000_000, burst: 10_000_000 },
    },
  };
  for (const t of cfg.tenants as Record<string, unknown>[])
    t.quota = { requests_per_day: 1_000_000_000, tokens_per_day: 1e12, usd_per_day: 1e6, usd_per_month: 1e7 };
};

async function ingestCpu(redisUrl: string, durationS: number, checks: boolean) {
  const stack = await startBenchStack({
    redisUrl,
    workers: 0,
    mockLatencyMs: 0,
    ...(checks ? { config: FAR } : {}),
  });
  try {
    const m = await measureIngest(stack.apiUrl, stack.api.child.pid, redisUrl, 64, durationS * 1000, 1_500);
    return {
      accepted: m.accepted,
      statuses: m.r.statuses,
      perSec: m.perSec,
      api: m.cpu.server ?? 0,
      redis: m.cpu.redis ?? 0,
    };
  } finally {
    await stack.stop();
  }
}

interface Accepted {
  id: string;
  estimated_start_seconds: number | null;
  created_at: number;
}

async function estimateAccuracy(redisUrl: string, durationS: number, log: (s: string) => void) {
  // One worker of 8 slots on a 100 ms upstream: about 80 starts/s; 120/s offered.
  const stack = await startBenchStack({ redisUrl, workers: 1, mockLatencyMs: 100, workerConcurrency: 8 });
  try {
    const load = await openLoop(stack.apiUrl, submitRequest, {
      ratePerSec: 120,
      durationMs: durationS * 1000,
      connections: 32,
      keepBodies: true,
    });
    const jobs = load.bodies.map((b) => JSON.parse(b) as Accepted);
    const started = new Map<string, number>();
    const deadline = Date.now() + 180_000;
    while (started.size < jobs.length && Date.now() < deadline) {
      for (const j of jobs) {
        if (started.has(j.id)) continue;
        const res = await fetch(`${stack.apiUrl}/v1/jobs/${j.id}`, {
          headers: { authorization: `Bearer ${PAID_KEY}` },
        });
        const view = (await res.json()) as { started_at?: number };
        if (view.started_at !== undefined) started.set(j.id, view.started_at - j.created_at);
      }
      if (started.size < jobs.length) await sleep(500);
    }
    const errors: number[] = [];
    const ratios: number[] = [];
    let unknown = 0;
    for (const j of jobs) {
      const actual = started.get(j.id);
      if (actual === undefined) continue;
      if (j.estimated_start_seconds === null) {
        unknown += 1;
        continue;
      }
      errors.push(Math.abs(j.estimated_start_seconds - actual));
      if (actual >= 0.5) ratios.push(j.estimated_start_seconds / actual);
    }
    const maxWait = Math.max(0, ...started.values());
    log(
      `estimates: ${jobs.length} jobs, longest wait ${maxWait.toFixed(1)} s, |error| p50 ${percentile(errors, 50)?.toFixed(2)} s p90 ${percentile(errors, 90)?.toFixed(2)} s, estimate/actual p50 ${percentile(ratios, 50)?.toFixed(2)}, unknown ${unknown}`,
    );
    return { jobs: jobs.length, errors, ratios, unknown, maxWait };
  } finally {
    await stack.stop();
  }
}

export async function protectionScenario(opts: {
  redisUrl: string;
  durationS: number;
  rawAddPerSec: number;
  log: (s: string) => void;
  flush: () => Promise<void>;
}): Promise<ScenarioResult> {
  const rounds: { off: Awaited<ReturnType<typeof ingestCpu>>; on: Awaited<ReturnType<typeof ingestCpu>> }[] =
    [];
  for (let i = 0; i < 2; i++) {
    const off = await ingestCpu(opts.redisUrl, opts.durationS, false);
    await opts.flush();
    const on = await ingestCpu(opts.redisUrl, opts.durationS, true);
    await opts.flush();
    opts.log(
      `round ${i + 1}: without checks ${Math.round(off.perSec)}/s, API ${off.api.toFixed(3)} + Redis ${off.redis.toFixed(3)} ms; with checks ${Math.round(on.perSec)}/s, API ${on.api.toFixed(3)} + Redis ${on.redis.toFixed(3)} ms; answers ${JSON.stringify(off.statuses)} / ${JSON.stringify(on.statuses)}`,
    );
    rounds.push({ off, on });
  }
  const mean = (f: (r: (typeof rounds)[number]) => number) =>
    rounds.reduce((a, r) => a + f(r), 0) / rounds.length;
  const offApi = mean((r) => r.off.api);
  const onApi = mean((r) => r.on.api);
  const offRedis = mean((r) => r.off.redis);
  const onRedis = mean((r) => r.on.redis);
  const onRate = mean((r) => r.on.perSec);
  const acc = await estimateAccuracy(opts.redisUrl, Math.max(8, opts.durationS), opts.log);
  return {
    scenario: "protection",
    description: `Ingest (64 in flight, ${opts.durationS} s, API alone) without and with the admission bound on waiting jobs, quotas and ingress limits configured far from reach (the estimated-wait bound left out: without workers it is always reached), alternated twice; then ${Math.max(8, opts.durationS)} s of 120 jobs/s offered to one worker of 8 slots on a 100 ms upstream (about 80/s), comparing each 202's estimated_start_seconds with the job's real wait.`,
    params: { duration_s: opts.durationS },
    figures: [
      {
        name: "added CPU per submission (API + Redis)",
        value: onApi + onRedis - (offApi + offRedis),
        unit: "ms",
        goal: "< 0.05 ms",
      },
      { name: "added CPU per submission: API", value: onApi - offApi, unit: "ms" },
      { name: "added CPU per submission: Redis", value: onRedis - offRedis, unit: "ms" },
      {
        name: "accepted with checks",
        value: onRate,
        unit: "jobs/s",
        note: `answers per round: ${rounds.map((r) => JSON.stringify(r.on.statuses)).join(", ")}`,
      },
      { name: "ratio to raw Queue.add", value: ratio(onRate, opts.rawAddPerSec), unit: "x" },
      { name: "estimate abs. error p50", value: percentile(acc.errors, 50), unit: "s" },
      { name: "estimate abs. error p90", value: percentile(acc.errors, 90), unit: "s" },
      {
        name: "estimate / real wait p50",
        value: percentile(acc.ratios, 50),
        unit: "x",
        note: "jobs that waited 0.5 s or more",
      },
      { name: "estimate / real wait p10", value: percentile(acc.ratios, 10), unit: "x" },
      { name: "estimate / real wait p90", value: percentile(acc.ratios, 90), unit: "x" },
      { name: "longest real wait", value: acc.maxWait, unit: "s" },
      { name: "estimates not yet measured (null)", value: acc.unknown, unit: "jobs", note: `of ${acc.jobs}` },
    ],
    details: { rounds },
  };
}
