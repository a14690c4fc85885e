import { setTimeout as sleep } from "node:timers/promises";
import { PAID_KEY } from "@switchyard/testing";
import { scrapeRuns, startBenchStack } from "./harness";
import type { ScenarioResult } from "./results";

/**
 * The limiter scenario: three keys with different limits, three worker processes, a backlog
 * of five times what the keys allow per minute, prompts of mixed sizes. The mock enforces the
 * same limits on a rolling 60 s window and answers 429 past them. Figures: share of upstream
 * calls answered 429, use of the keys' combined TPM after the first minute, the worst 60 s
 * window any key was offered against its limit, and job fetches per completed job.
 */
const KEYS = [
  { id: "k1", secret: "sk-bench-1", rpm: 300, tpm: 40_000 },
  { id: "k2", secret: "sk-bench-2", rpm: 200, tpm: 25_000 },
  { id: "k3", secret: "sk-bench-3", rpm: 500, tpm: 60_000 },
];
const MODEL = "claude-sonnet-4-6";
const MAX_TOKENS = 64;
const WORDS =
  "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches far away".split(
    " ",
  );

/** Deterministic prompts: half short, 30% medium, 20% long. */
function prompt(i: number): string {
  const size = i % 10 < 5 ? 15 : i % 10 < 8 ? 200 : 700;
  const out: string[] = [];
  for (let w = 0; w < size; w++) out.push(WORDS[(i * 7 + w * 13) % WORDS.length] ?? "x");
  return out.join(" ");
}
/** What the mock charges for a prompt (4 chars a token, 4 per message) plus its completion. */
const mockCost = (text: string) =>
  4 + Math.ceil(text.length / 4) + Math.min(MAX_TOKENS, text.split(" ").length + 1);

interface KeyStats {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  rate_limited: number;
  window_max: {
    offered: { requests: number; tokens: number };
    accepted: { requests: number; tokens: number };
  };
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  return (await res.json()) as T;
}

export async function limiterScenario(opts: {
  redisUrl: string;
  durationS: number;
  latencyMs: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const { log } = opts;
  const mockLimits = Object.fromEntries(KEYS.map((k) => [k.secret, { rpm: k.rpm, tpm: k.tpm }]));
  const stack = await startBenchStack({
    redisUrl: opts.redisUrl,
    workers: 3,
    workerConcurrency: 128,
    mockLatencyMs: opts.latencyMs,
    mockEnv: { MOCK_LIMITS: JSON.stringify(mockLimits) },
    config: (cfg) => {
      const anthropic = (cfg.providers as Record<string, unknown>[]).find((p) => p.id === "anthropic");
      if (!anthropic) throw new Error("test config has no anthropic provider");
      Object.assign(anthropic, {
        keys: KEYS.map(({ id, secret, rpm, tpm }) => ({ id, secret, rpm, tpm })),
        timeout_ms: 10_000,
      });
    },
  });
  const { apiUrl, mockUrl, workerPorts } = stack;
  try {
    const tpm = KEYS.reduce((n, k) => n + k.tpm, 0);
    const rpm = KEYS.reduce((n, k) => n + k.rpm, 0);
    const sample = Array.from({ length: 1000 }, (_, i) => mockCost(prompt(i)));
    const avgCost = sample.reduce((a, b) => a + b, 0) / sample.length;
    const perMinute = Math.min(rpm, tpm / avgCost);
    const backlog = Math.ceil(perMinute * 5);
    log(
      `limiter: ${KEYS.length} keys (${rpm} rpm, ${tpm} tpm together), ~${Math.round(avgCost)} tokens a job, ~${Math.round(perMinute)} jobs a minute; submitting ${backlog} jobs`,
    );

    let next = 0;
    const submitOne = async (): Promise<void> => {
      while (next < backlog) {
        const i = next++;
        const res = await fetch(`${apiUrl}/v1/jobs`, {
          method: "POST",
          headers: { authorization: `Bearer ${PAID_KEY}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: MODEL,
            max_tokens: MAX_TOKENS,
            messages: [{ role: "user", content: prompt(i) }],
          }),
        });
        if (res.status !== 202) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
      }
    };
    const start = Date.now();
    await Promise.all(Array.from({ length: 32 }, submitOne));
    log(
      `limiter: backlog of ${backlog} submitted in ${((Date.now() - start) / 1000).toFixed(1)} s; running ${opts.durationS} s`,
    );

    const tokensAt: { t: number; tokens: number; requests: number; limited: number }[] = [];
    const runsAt: ({ t: number } & Awaited<ReturnType<typeof scrapeRuns>>)[] = [];
    const end = start + opts.durationS * 1000;
    while (Date.now() < end) {
      const s = await getJson<{ keys: Record<string, KeyStats> }>(`${mockUrl}/_stats`);
      const ks = KEYS.map((k) => s.keys[k.secret]);
      tokensAt.push({
        t: Date.now() - start,
        tokens: ks.reduce((n, k) => n + (k ? k.input_tokens + k.output_tokens : 0), 0),
        requests: ks.reduce((n, k) => n + (k?.requests ?? 0), 0),
        limited: ks.reduce((n, k) => n + (k?.rate_limited ?? 0), 0),
      });
      if (tokensAt.length % 10 === 0)
        runsAt.push({ t: Date.now() - start, ...(await scrapeRuns(workerPorts)) });
      const last = tokensAt[tokensAt.length - 1];
      if (tokensAt.length % 15 === 0 && last)
        log(
          `  ${Math.round(last.t / 1000)} s: ${last.requests} upstream calls, ${last.tokens} tokens, ${last.limited} answered 429`,
        );
      await sleep(1_000);
    }
    const stats = await getJson<{ keys: Record<string, KeyStats> }>(`${mockUrl}/_stats`);
    const runs = await scrapeRuns(workerPorts);

    // Steady state: the last full 60 s of the run (the first minute is the initial burst).
    const last = tokensAt[tokensAt.length - 1];
    const warm = last && last.t >= 120_000 ? tokensAt.find((x) => x.t >= last.t - 60_000) : undefined;
    const runsWarm = runsAt.find((x) => warm !== undefined && x.t >= warm.t);
    const steadyUse =
      warm && last && last.t > warm.t
        ? (last.tokens - warm.tokens) / ((tpm * (last.t - warm.t)) / 60_000)
        : null;
    const perKey = KEYS.map((k) => {
      const s = stats.keys[k.secret];
      return {
        key: k.id,
        rpm: k.rpm,
        tpm: k.tpm,
        requests: s?.requests ?? 0,
        answered_429: s?.rate_limited ?? 0,
        tokens: (s?.input_tokens ?? 0) + (s?.output_tokens ?? 0),
        worst_window_offered: s?.window_max.offered,
        worst_window_share: Math.max(
          (s?.window_max.offered.tokens ?? 0) / k.tpm,
          (s?.window_max.offered.requests ?? 0) / k.rpm,
        ),
      };
    });
    const calls = perKey.reduce((n, k) => n + k.requests, 0);
    const limited = perKey.reduce((n, k) => n + k.answered_429, 0);
    return {
      scenario: "limiter",
      description:
        "Three Anthropic-format keys with different rpm/tpm, three worker processes, a backlog of 5x what the keys allow per minute, prompts of 15/200/700 words (50/30/20%), max_tokens 64. The mock enforces the same limits on a rolling 60 s window.",
      params: {
        duration_s: opts.durationS,
        mock_latency_ms: opts.latencyMs,
        backlog,
        keys: KEYS.map(({ secret: _s, ...k }) => k),
        workers: 3,
      },
      figures: [
        {
          name: "upstream calls answered 429",
          value: calls ? (100 * limited) / calls : null,
          unit: "%",
          goal: "< 0.1 %",
          note: `${limited} of ${calls}`,
        },
        {
          name: "combined TPM used in the last full minute",
          value: steadyUse === null ? null : 100 * steadyUse,
          unit: "%",
          goal: ">= 95 %",
          note:
            warm && last
              ? `tokens the mock accepted from ${Math.round(warm.t / 1000)} s to ${Math.round(last.t / 1000)} s, backlog still waiting`
              : "run shorter than 120 s",
        },
        {
          name: "worst 60 s window offered to any key",
          value: 100 * Math.max(...perKey.map((k) => k.worst_window_share)),
          unit: "% of its limit",
          goal: "<= 100 %",
        },
        {
          name: "job fetches per completed job, last full minute",
          value:
            runsWarm && runs.succeeded > runsWarm.succeeded
              ? (runs.runs - runsWarm.runs) / (runs.succeeded - runsWarm.succeeded)
              : null,
          unit: "",
          note: `whole run: ${runs.runs} fetches for ${runs.succeeded} completed jobs (the first fetch of every waiting job included)`,
        },
      ],
      details: {
        per_key: perKey,
        runs_by_outcome: runs.byOutcome,
        series: tokensAt.filter((_, i) => i % 5 === 0),
      },
    };
  } finally {
    await stack.stop();
  }
}
