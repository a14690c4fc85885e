import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import type { JobView } from "@switchyard/core";
import { freePort, http, PAID_KEY, Stack, testConfig } from "@switchyard/testing";
import { chat, clearFaults, mockStats, standingFault, submit, trail, waitFinal } from "./helpers";

/**
 * The circuit breaker is shared by worker processes through Redis: worker A's failures open
 * it, worker B (started afterwards) skips the provider without calling it, a failed half-open
 * probe re-opens it, a good probe closes it. Jobs are sent one at a time so counts are exact.
 */
const jobTrail = (j: JobView) => trail((j.result ?? j.error)?.attempts);

describe("circuit breaker across worker processes", () => {
  let stack: Stack;
  let redis: Redis;
  // openai stays open for a minute, so worker B's start-up can never outlast it; gemini
  // reopens quickly, for the half-open probes.
  const SHORT_OPEN_MS = 500;
  beforeAll(async () => {
    stack = await Stack.start({
      workers: 0,
      config: (mockUrl, prefix) => {
        const cfg = testConfig(mockUrl, prefix, { queue: { attempts: 1 } });
        const [openai, , gemini] = cfg.providers as Record<string, unknown>[];
        const breaker = { min_calls: 3, failure_rate: 0.5, window_ms: 60_000 };
        openai!.breaker = { ...breaker, open_ms: 60_000 };
        gemini!.breaker = { ...breaker, open_ms: SHORT_OPEN_MS, max_open_ms: SHORT_OPEN_MS };
        Object.assign(cfg.models as Record<string, unknown>, {
          "gemini-first": {
            chain: [
              { provider: "gemini", model: "gemini-2.5-flash" },
              { provider: "anthropic", model: "claude-sonnet-4-6" },
            ],
          },
        });
        return cfg;
      },
    });
    redis = new Redis(stack.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await stack?.stop();
  });

  const breaker = (provider: string) => redis.hgetall(`${stack.prefix}:cb:${provider}`);
  const run = async (text: string, model = "smart") => {
    const res = await submit(stack.apiUrl, PAID_KEY, { ...chat(text), model });
    return waitFinal(stack.apiUrl, PAID_KEY, res.body.id);
  };
  const calls = async (format: string) => (await mockStats(stack.mockUrl)).formats[format] ?? 0;
  const untilReopen = async (provider: string) => {
    const until = Number((await breaker(provider)).open_until);
    await sleep(Math.max(0, until - Date.now()) + 50);
  };

  it("opens on worker A's failures and worker B, started later, skips the provider", async () => {
    const metricsPort = await freePort();
    const a = await stack.addWorker();
    await standingFault(stack.mockUrl, { format: "openai", fault: "status=500" });
    for (let i = 0; i < 3; i++) {
      const done = await run(`a${i}`);
      expect(jobTrail(done)).toEqual(["openai:failed:server", "anthropic:succeeded"]);
    }
    expect(await breaker("openai")).toMatchObject({ state: "open" });
    expect(await calls("openai")).toBe(3);

    await stack.addWorker({ METRICS_PORT: String(metricsPort) });
    await a.stop("SIGTERM");
    const skipped = await run("b0");
    expect(jobTrail(skipped)).toEqual(["openai:skipped:circuit_open", "anthropic:succeeded"]);
    expect(skipped.attempts).toBe(1); // a skipped link is not an attempt
    expect(await calls("openai")).toBe(3);
    const metrics = await http<string>("GET", `http://127.0.0.1:${metricsPort}/metrics`);
    expect(metrics.body).toMatch(/switchyard_circuit_state\{provider="openai",scope="openai"[^}]*\} 2/);
    await clearFaults(stack.mockUrl);
  });

  it("lets one probe through when the open period ends: a failure re-opens it, a success closes it", async () => {
    await standingFault(stack.mockUrl, { format: "gemini", fault: "status=500" });
    for (let i = 0; i < 3; i++)
      expect(jobTrail(await run(`g${i}`, "gemini-first"))).toEqual([
        "gemini:failed:server",
        "anthropic:succeeded",
      ]);
    expect(await breaker("gemini")).toMatchObject({ state: "open", opens: "1" });
    const before = await calls("gemini");

    await untilReopen("gemini");
    const failedProbe = await run("g3", "gemini-first");
    expect(jobTrail(failedProbe)).toEqual(["gemini:failed:server", "anthropic:succeeded"]);
    expect(await breaker("gemini")).toMatchObject({ state: "open", opens: "2" });
    expect(await calls("gemini")).toBe(before + 1);

    await clearFaults(stack.mockUrl);
    await untilReopen("gemini");
    expect(jobTrail(await run("g4", "gemini-first"))).toEqual(["gemini:succeeded"]);
    expect(await breaker("gemini")).toMatchObject({ state: "closed" });
    expect(jobTrail(await run("g5", "gemini-first"))).toEqual(["gemini:succeeded"]);
    expect(await calls("gemini")).toBe(before + 3);
  });
});
