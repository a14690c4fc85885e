import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { Pool } from "undici";
import type { ConfigDoc } from "@switchyard/testing";
import { percentile, SCRIPT_COMMANDS, startBenchStack, wholeMs, type BenchStack } from "./harness";
import type { Figure, ScenarioResult } from "./results";

/**
 * Fair scheduling, measured:
 *  1. a light tenant's wait behind a 10,000-job backlog of another tenant of its tier (slots the
 *     bottleneck: 2 workers x 4 slots, the mock at 100 ms);
 *  2. four backlogged tenants (paid-a weight 2, paid-b 1, free-a 1, free-b 1; tiers 4:1): each
 *     one's share of starts against what its weights give it, the worst of those ratios and the
 *     weighted Jain index, and Redis commands per started job;
 *  3. the same light tenant behind a 600-job backlog when one upstream key at 120 rpm is the
 *     bottleneck;
 *  4. makespan of 4 x 200 jobs against the ideal (jobs x service time / slots).
 */
const SERVICE_MS = 100;
const KEYS = {
  heavy: "sk-bench-heavy-01",
  light: "sk-bench-light-01",
  paidA: "sk-bench-paid-a-1",
  paidB: "sk-bench-paid-b-1",
  freeA: "sk-bench-free-a-1",
  freeB: "sk-bench-free-b-1",
};
const EXPECTED_SHARE: Record<string, number> = {
  "paid-a": 0.8 * (2 / 3),
  "paid-b": 0.8 / 3,
  "free-a": 0.1,
  "free-b": 0.1,
};

function tenantsConfig(cfg: ConfigDoc): void {
  cfg.tenants = [
    { id: "heavy", tier: "free", api_keys: [KEYS.heavy] },
    { id: "light", tier: "free", api_keys: [KEYS.light] },
    { id: "paid-a", tier: "paid", api_keys: [KEYS.paidA], weight: 2 },
    { id: "paid-b", tier: "paid", api_keys: [KEYS.paidB] },
    { id: "free-a", tier: "free", api_keys: [KEYS.freeA] },
    { id: "free-b", tier: "free", api_keys: [KEYS.freeB] },
  ];
  (cfg.worker as Record<string, unknown>).tier_weights = { paid: 4, free: 1 };
  (cfg.server as Record<string, unknown>).max_body_bytes = 65_536;
}

const body = (text: string) =>
  JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: text }], max_tokens: 16 });

/** Submits `count` jobs for a tenant, `inFlight` at a time; returns their ids. */
async function backlog(pool: Pool, key: string, count: number, inFlight = 64): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < count) {
        const i = next++;
        const res = await pool.request({
          path: "/v1/jobs",
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: body(`backlog job ${String(i).padStart(6, "0")}`),
        });
        const j = (await res.body.json()) as { id?: string };
        if (j.id) ids.push(j.id);
      }
    }),
  );
  return ids;
}

async function jobTimes(pool: Pool, key: string, id: string, waitS = 60) {
  const res = await pool.request({
    path: `/v1/jobs/${id}?wait=${waitS}`,
    method: "GET",
    headers: { authorization: `Bearer ${key}` },
  });
  const j = (await res.body.json()) as {
    status: string;
    created_at: number;
    started_at?: number;
    finished_at?: number;
  };
  return j;
}

/** A light tenant submits one job every `everyMs` for `durationS` and records each one's wait. */
async function lightWaits(
  stack: BenchStack,
  durationS: number,
  everyMs: number,
): Promise<{ startMs: number[]; finishMs: number[] }> {
  const pool = new Pool(stack.apiUrl, { connections: 16 });
  const ids: string[] = [];
  const end = Date.now() + durationS * 1000;
  while (Date.now() < end) {
    const res = await pool.request({
      path: "/v1/jobs",
      method: "POST",
      headers: { authorization: `Bearer ${KEYS.light}`, "content-type": "application/json" },
      body: body("light job"),
    });
    const j = (await res.body.json()) as { id?: string };
    if (j.id) ids.push(j.id);
    await sleep(everyMs);
  }
  const times = await Promise.all(ids.map((id) => jobTimes(pool, KEYS.light, id)));
  await pool.close();
  const done = times.filter((t) => t.started_at !== undefined);
  return {
    startMs: done.map((t) => wholeMs((t.started_at ?? 0) - t.created_at)),
    finishMs: times
      .filter((t) => t.finished_at !== undefined)
      .map((t) => wholeMs((t.finished_at ?? 0) - t.created_at)),
  };
}

async function tenantStarts(ports: number[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const m of text.matchAll(/^switchyard_tenant_starts_total\{[^}]*tenant="([^"]+)"[^}]*\} (\d+)/gm))
      out[m[1] ?? "?"] = (out[m[1] ?? "?"] ?? 0) + Number(m[2]);
  }
  return out;
}

/** Script calls (EVALSHA/EVAL/FCALL, one round trip each) and all commands, those run inside scripts included. */
async function commandsProcessed(url: string): Promise<{ scripts: number; all: number }> {
  const c = new Redis(url);
  try {
    const stats = await c.info("commandstats");
    let scripts = 0;
    let all = 0;
    for (const m of stats.matchAll(/^cmdstat_([a-z|]+):calls=(\d+)/gm)) {
      all += Number(m[2]);
      if (m[1] && SCRIPT_COMMANDS.has(m[1])) scripts += Number(m[2]);
    }
    return { scripts, all };
  } finally {
    c.disconnect();
  }
}

export async function fairnessScenario(opts: {
  redisUrl: string;
  durationS: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const figures: Figure[] = [];
  const details: Record<string, unknown> = {};
  const slots = { workers: 2, workerConcurrency: 4 };
  /** Slots as the bottleneck: 2 workers x 4 slots, the mock at the service time. */
  const slotStack = () =>
    startBenchStack({ redisUrl: opts.redisUrl, ...slots, mockLatencyMs: SERVICE_MS, config: tenantsConfig });

  // 1. A light tenant behind a 10,000-job backlog of another tenant of its tier.
  {
    const stack = await slotStack();
    try {
      const pool = new Pool(stack.apiUrl, { connections: 64 });
      const t0 = Date.now();
      const ids = await backlog(pool, KEYS.heavy, 10_000);
      await pool.close();
      opts.log(
        `fairness: backlog of ${ids.length} jobs submitted in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      );
      const w = await lightWaits(stack, opts.durationS, 250);
      const p50 = percentile(w.startMs, 50);
      const p99 = percentile(w.startMs, 99);
      opts.log(
        `fairness: light tenant's wait to start p50 ${p50?.toFixed(0)} ms, p99 ${p99?.toFixed(0)} ms (${w.startMs.length} jobs)`,
      );
      figures.push(
        {
          name: "light tenant behind 10,000: wait to start p50",
          value: p50,
          unit: "ms",
          goal: `<= 2 service times (${2 * SERVICE_MS} ms)`,
          note: `${w.startMs.length} light jobs, 2 workers x 4 slots, mock ${SERVICE_MS} ms`,
        },
        { name: "light tenant behind 10,000: wait to start p99", value: p99, unit: "ms", goal: "<= 1000 ms" },
      );
    } finally {
      await stack.stop();
    }
  }

  // 2. Four backlogged tenants with different weights.
  {
    const stack = await slotStack();
    try {
      const pool = new Pool(stack.apiUrl, { connections: 64 });
      const perTenant = Math.max(1_000, opts.durationS * 80);
      for (const key of [KEYS.paidA, KEYS.paidB, KEYS.freeA, KEYS.freeB])
        await backlog(pool, key, perTenant, 16);
      await pool.close();
      await sleep(3_000); // past the first picks
      const before = await tenantStarts(stack.workerPorts);
      const cmd0 = await commandsProcessed(opts.redisUrl);
      await sleep(opts.durationS * 1000);
      const after = await tenantStarts(stack.workerPorts);
      const cmd1 = await commandsProcessed(opts.redisUrl);
      const starts = Object.fromEntries(
        Object.keys(EXPECTED_SHARE).map((t) => [t, (after[t] ?? 0) - (before[t] ?? 0)]),
      );
      const total = Object.values(starts).reduce((a, b) => a + b, 0);
      const ratios = Object.entries(EXPECTED_SHARE).map(([t, e]) =>
        total > 0 ? (starts[t] ?? 0) / total / e : 0,
      );
      const worst = Math.min(...ratios);
      const jain =
        ratios.reduce((a, b) => a + b, 0) ** 2 / (ratios.length * ratios.reduce((a, b) => a + b * b, 0));
      details.four_tenants = { starts, expected_share: EXPECTED_SHARE, share_over_weight: ratios };
      opts.log(
        `fairness: starts ${JSON.stringify(starts)}; worst share/weight ${worst.toFixed(3)}, weighted Jain ${jain.toFixed(3)}`,
      );
      figures.push(
        {
          name: "four tenants: worst share / weight",
          value: worst,
          unit: "x",
          goal: ">= 0.95",
          note: `starts ${JSON.stringify(starts)} over ${opts.durationS} s`,
        },
        { name: "four tenants: weighted Jain index", value: jain, unit: "", goal: ">= 0.95" },
        {
          name: "Redis script calls per started job",
          value: total > 0 ? (cmd1.scripts - cmd0.scripts) / total : null,
          unit: "calls",
          note: "EVALSHA/EVAL/FCALL round trips of the API and workers while the backlog drained (pick, fetch, status, key pool, completion)",
        },
        {
          name: "Redis commands per started job",
          value: total > 0 ? (cmd1.all - cmd0.all) / total : null,
          unit: "commands",
          note: "every command, those run inside the scripts included (INFO commandstats)",
        },
      );
    } finally {
      await stack.stop();
    }
  }

  // 3. A rate-limited key as the bottleneck.
  {
    const secret = "sk-upstream-1";
    const stack = await startBenchStack({
      redisUrl: opts.redisUrl,
      workers: 2,
      workerConcurrency: 256,
      mockLatencyMs: SERVICE_MS,
      mockEnv: { MOCK_LIMITS: JSON.stringify({ [secret]: { rpm: 120 } }) },
      config: (cfg) => {
        tenantsConfig(cfg);
        const [openai] = cfg.providers as Record<string, unknown>[];
        if (openai) openai.keys = [{ id: "k1", secret, rpm: 120 }];
      },
    });
    try {
      const pool = new Pool(stack.apiUrl, { connections: 64 });
      await backlog(pool, KEYS.heavy, 600);
      await pool.close();
      // The first 120 calls go at once; after that the rolling minute frees one call every
      // 0.5 s. Measure in that steady state: before it, nobody can start, fair or not.
      opts.log("fairness (rate-limited): waiting 62 s for the key's rolling minute to turn over");
      await sleep(62_000);
      const w = await lightWaits(stack, Math.min(opts.durationS, 15), 1_000);
      const p50 = percentile(w.finishMs, 50);
      opts.log(
        `fairness (rate-limited): light tenant's time to finish p50 ${p50?.toFixed(0)} ms (${w.finishMs.length} finished)`,
      );
      figures.push({
        name: "rate-limited key: light tenant's time to finish p50",
        value: p50,
        unit: "ms",
        goal: "<= 2000 ms",
        note: `one key at 120 rpm, 600-job backlog of another tenant, light jobs sent once a second from 62 s on (the key's steady state); ${w.finishMs.length} light jobs finished within 60 s of submission`,
      });
    } finally {
      await stack.stop();
    }
  }

  // 4. Makespan against the ideal.
  {
    const stack = await slotStack();
    try {
      const pool = new Pool(stack.apiUrl, { connections: 64 });
      const t0 = performance.now();
      const all = await Promise.all(
        [KEYS.paidA, KEYS.paidB, KEYS.freeA, KEYS.freeB].map(async (key) => ({
          key,
          ids: await backlog(pool, key, 200, 8),
        })),
      );
      for (const { key, ids } of all) for (const id of ids) await jobTimes(pool, key, id);
      const makespan = performance.now() - t0;
      await pool.close();
      const ideal = (800 * SERVICE_MS) / (slots.workers * slots.workerConcurrency);
      opts.log(
        `fairness: makespan of 800 jobs ${(makespan / 1000).toFixed(1)} s (ideal ${(ideal / 1000).toFixed(1)} s)`,
      );
      figures.push({
        name: "makespan over the ideal (work conservation)",
        value: makespan / ideal,
        unit: "x",
        goal: "within 5% of FIFO",
        note: `4 tenants x 200 jobs, 8 slots, mock ${SERVICE_MS} ms: ${(makespan / 1000).toFixed(1)} s against ${(ideal / 1000).toFixed(1)} s of pure service time`,
      });
    } finally {
      await stack.stop();
    }
  }

  return {
    scenario: "fairness",
    description:
      "Fair scheduling across tenants: a light tenant behind another's backlog (slots and then a rate-limited key as the bottleneck), shares of four backlogged tenants against their weights, and makespan against the ideal.",
    params: { duration_s: opts.durationS, service_ms: SERVICE_MS, ...slots },
    figures,
    details,
  };
}
