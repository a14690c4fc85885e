import { startRedis } from "@switchyard/testing";
import { Redis } from "ioredis";
import { baselineScenario } from "./baseline";
import { ISSUE_18_START, beforeAfterScenario, prepareBefore, type BeforeTree } from "./before-after";
import { cacheScenario } from "./cache";
import { e2eScenario } from "./e2e";
import { fairnessScenario } from "./fairness";
import { INGEST_P99_GOAL_MS, ingestScenario, ingestSweep } from "./ingest";
import { limiterScenario } from "./limiter";
import { OVERHEAD_P99_GOAL_MS, overheadScenario, overheadSweep } from "./overhead";
import { dropinScenario } from "./dropin";
import { protectionScenario } from "./protection";
import { redisCostScenario } from "./redis-cost";
import { figureValue, machineFacts, writeResults, type ScenarioResult } from "./results";
import { soakScenario } from "./soak";
import { webhooksScenario } from "./webhooks";

/**
 * `pnpm bench [--quick] [--scenario name] [--duration seconds] [--rate n] [--no-sweep] [--soak-rate n]
 * [--against rev] [--rounds n]`: runs the benchmark scenarios on this machine, starting everything
 * they need, and writes bench/results/<time>-<name>.json/.md. Raw BullMQ (baseline) runs first in
 * every run, on the same Redis, so each figure has a ratio. `before-after` (not part of "all": it
 * exports and builds another commit) compares this checkout with `--against`; so does `webhooks`
 * when run alone with `--against` (in "all" it measures this checkout only).
 */
const SCENARIOS = [
  "baseline",
  "ingest",
  "e2e",
  "overhead",
  "limiter",
  "fairness",
  "cache",
  "protection",
  "dropin",
  "webhooks",
  "redis-cost",
  "soak",
  "before-after",
] as const;
type Scenario = (typeof SCENARIOS)[number];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** A flag that counts something, 1 or more: anything else is a usage error (exit 2). */
function countArg(name: string, fallback: number, what: string): number {
  const n = Number(arg(name) ?? fallback);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a whole number of ${what}, 1 or more (got '${arg(name)}')`);
    process.exit(2);
  }
  return n;
}

/** Whether a scenario's sweep runs: its p99 figure missed the goal, and --no-sweep was not given. */
function sweepAfter(result: ScenarioResult, p99Figure: string, goalMs: number): boolean {
  const p99 = figureValue(result, p99Figure);
  return p99 !== null && p99 > goalMs && !process.argv.includes("--no-sweep");
}

async function main(): Promise<void> {
  const quick = process.argv.includes("--quick");
  const wanted = arg("scenario") ?? "all";
  if (wanted !== "all" && !(SCENARIOS as readonly string[]).includes(wanted)) {
    console.error(`unknown scenario '${wanted}'; choose one of: ${SCENARIOS.join(", ")}, all`);
    process.exit(2);
  }
  const run = (s: Scenario) => (wanted === "all" && s !== "before-after") || wanted === s;
  const given = arg("duration");
  const seconds = (quickS: number, fullS: number) => Number(given ?? (quick ? quickS : fullS));
  // Raw BullMQ's adds measured right before and after each ingest and e2e run, in seconds.
  const rawDurationS = quick ? 3 : 5;
  const log = (s: string) => console.log(s);
  const facts = machineFacts();
  log(
    `bench on ${String(facts.cores)} cores, Node ${String(facts.node)}, commit ${String(facts.commit)}${quick ? " (quick)" : ""}`,
  );
  const rev = arg("against") ?? ISSUE_18_START;
  const rounds = countArg("rounds", quick ? 2 : 3, "rounds");
  // Worker processes in the overhead scenario (and its sweep).
  const overheadWorkers = countArg("workers", 2, "worker processes");
  const redis = await startRedis();
  const flush = async () => {
    const c = new Redis(redis.url);
    await c.flushall();
    await c.quit();
  };
  const results: ScenarioResult[] = [];
  let before: BeforeTree | undefined;
  try {
    // Exported and built first: a failure there (an unknown commit, no pnpm) ends the run at once.
    if (run("before-after") || (wanted === "webhooks" && arg("against") !== undefined))
      before = prepareBefore(rev, log);
    const base = await baselineScenario({ redisUrl: redis.url, durationS: quick ? 5 : 10, log });
    results.push(base.result);
    await flush();
    if (run("ingest")) {
      log("\n== ingest");
      const inFlight = 200;
      const ingest = await ingestScenario({
        redisUrl: redis.url,
        durationS: seconds(10, 30),
        inFlight,
        rawAddPerSec: base.addPerSec,
        rawDurationS,
        log,
        flush,
      });
      results.push(ingest);
      await flush();
      // Missed at 200 in flight: the most in flight this machine holds it at, next to the floor's.
      if (sweepAfter(ingest, "latency p99", INGEST_P99_GOAL_MS)) {
        log("\n== ingest sweep");
        results.push(
          await ingestSweep({
            redisUrl: redis.url,
            durationS: seconds(5, 10),
            missedAt: inFlight,
            log,
            flush,
          }),
        );
      }
    }
    if (run("e2e")) {
      log("\n== e2e");
      results.push(
        await e2eScenario({
          redisUrl: redis.url,
          durationS: seconds(10, 30),
          rawProcessPerSec: base.processPerSec,
          rawCpuPerJobMs: base.cpuPerJobMs,
          rawDurationS,
          log,
          flush,
        }),
      );
      await flush();
    }
    if (run("overhead")) {
      log("\n== overhead");
      const rate = Number(arg("rate") ?? 1000);
      const overhead = await overheadScenario({
        redisUrl: redis.url,
        durationS: seconds(15, 60),
        ratePerSec: rate,
        latencyMs: 1000,
        workers: overheadWorkers,
        log,
      });
      results.push(overhead);
      await flush();
      // Missed at the offered rate: the highest rate this machine holds (issue 18 asks for it).
      if (sweepAfter(overhead, "overhead p99", OVERHEAD_P99_GOAL_MS)) {
        log("\n== overhead sweep");
        results.push(
          await overheadSweep({
            redisUrl: redis.url,
            // Each rate tried costs a run and its raw floor: the quick duration, at most 30 s.
            durationS: Math.min(seconds(15, 30), 30),
            missedAt: rate,
            latencyMs: 1000,
            workers: overheadWorkers,
            log,
            flush,
          }),
        );
        await flush();
      }
    }
    if (run("limiter")) {
      log("\n== limiter");
      results.push(
        await limiterScenario({ redisUrl: redis.url, durationS: seconds(150, 240), latencyMs: 200, log }),
      );
      await flush();
    }
    if (run("fairness")) {
      log("\n== fairness");
      results.push(await fairnessScenario({ redisUrl: redis.url, durationS: seconds(15, 30), log }));
      await flush();
    }
    if (run("cache")) {
      log("\n== cache");
      results.push(
        await cacheScenario({
          redisUrl: redis.url,
          durationS: seconds(10, 30),
          rawProcessPerSec: base.processPerSec,
          rawCpuPerJobMs: base.cpuPerJobMs,
          log,
          flush,
        }),
      );
      await flush();
    }
    if (run("protection")) {
      log("\n== protection");
      results.push(
        await protectionScenario({
          redisUrl: redis.url,
          durationS: seconds(5, 15),
          rawAddPerSec: base.addPerSec,
          log,
          flush,
        }),
      );
      await flush();
    }
    if (run("dropin")) {
      log("\n== dropin");
      results.push(
        await dropinScenario({ redisUrl: redis.url, durationS: seconds(5, 15), inFlight: 100, log }),
      );
      await flush();
    }
    if (run("webhooks")) {
      log("\n== webhooks");
      results.push(
        await webhooksScenario({
          redisUrl: redis.url,
          durationS: seconds(10, 20),
          // --rate is the overhead scenario's in "all"; run alone, this one takes it.
          ratePerSec: Number((wanted === "webhooks" ? arg("rate") : undefined) ?? 200),
          rounds: wanted === "webhooks" ? rounds : 1,
          ...(wanted === "webhooks" && before ? { before, rev } : {}),
          log,
          flush,
        }),
      );
      await flush();
    }
    if (run("redis-cost")) {
      log("\n== redis-cost");
      // Its own redis-server, under callgrind (slow): a small load.
      results.push(await redisCostScenario({ durationS: seconds(8, 15), log }));
    }
    if (run("soak")) {
      log("\n== soak");
      results.push(
        await soakScenario({
          redisUrl: redis.url,
          durationS: seconds(60, 600),
          ratePerSec: Number(arg("soak-rate") ?? 200),
          log,
        }),
      );
    }
    if (before && run("before-after")) {
      log("\n== before-after");
      results.push(
        await beforeAfterScenario({
          redisUrl: redis.url,
          durationS: seconds(10, 20),
          rawDurationS,
          rounds,
          before,
          rev,
          log,
          flush,
        }),
      );
    }
  } finally {
    // The export first: it is synchronous and must go even when stopping Redis fails.
    before?.cleanup();
    await redis.stop();
  }
  const md = writeResults(wanted === "all" ? "all" : wanted, results, facts);
  log(`\n${md}`);
}

main().catch((err: Error) => {
  console.error(`bench failed: ${err.message}`);
  process.exit(1);
});
