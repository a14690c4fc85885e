import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { startRedis, type RedisHandle } from "@switchyard/testing";
import { PAYLOAD, processRaw } from "./baseline";
import { ratio, startBenchStack, waitSucceeded } from "./harness";
import { submitRequest } from "./ingest";
import { closedLoop } from "./load";
import type { Figure, ScenarioResult } from "./results";

/**
 * Redis's work per job counted in instructions, not seconds: redis-server runs under valgrind's
 * callgrind, which counts the instructions it executes whatever else the machine is doing, so two
 * runs of the same code give nearly the same figure where CPU seconds on this shared machine
 * differ by a third. Slow (valgrind runs Redis ~50x slower), so the load is small; Redis's own
 * periodic work and the stack's (stall checks, gauges) are measured idle and taken off.
 */
const TOOLS = ["valgrind", "callgrind_control", "callgrind_annotate"];

/** Functions of redis-server (and libc) whose inclusive share of the instructions is reported. */
/** A script call: EVALSHA/EVAL, or FCALL (a function library's function, Redis 7). Never nested. */
const SCRIPT_CALLS = ["evalGenericCommand", "fcallCommand"];
const PARTS: { name: string; fns: string[]; note: string }[] = [
  { name: "in Lua scripts (EVALSHA, FCALL)", fns: SCRIPT_CALLS, note: "everything a script call does" },
  {
    name: "Redis commands called by scripts",
    fns: ["scriptCall"],
    note: "redis.call: argument conversion, the command itself, its reply back to Lua",
  },
  { name: "listpack scans", fns: ["lpFind"], note: "field lookups in small hashes and sorted sets" },
  { name: "number formatting", fns: ["__printf_fp"], note: "Lua numbers turned into text (%.17g)" },
  { name: "number parsing", fns: ["strtod"], note: "text turned into Lua numbers (tonumber)" },
];

function missingTool(): string | undefined {
  return TOOLS.find((tool) => {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
      return false;
    } catch {
      return true;
    }
  });
}

/** Counts the instructions redis-server runs during `work`, from a callgrind dump. */
class Counter {
  private dumps = 0;

  constructor(
    private readonly redis: RedisHandle,
    private readonly dir: string,
  ) {}

  private control(flag: "-z" | "-d"): void {
    execFileSync("callgrind_control", [flag, String(this.redis.pid)], { stdio: "ignore" });
  }

  /**
   * Zeroes the counters, runs `work`, dumps them: the instructions and the dump's file. With
   * BENCH_CALLGRIND_DIR set, the dump is also copied there as <label>.callgrind (for
   * callgrind_annotate: which functions of Redis and Lua the work spent its instructions in).
   */
  async count(label: string, work: () => Promise<void>): Promise<{ instructions: number; file: string }> {
    this.control("-z");
    await work();
    this.control("-d");
    this.dumps += 1;
    const file = join(this.dir, `cg.${String(this.redis.pid)}.${this.dumps}`);
    // callgrind_control returns once the dump is asked for; the file follows shortly.
    for (let i = 0; i < 100; i++) {
      if (readdirSync(this.dir).includes(`cg.${String(this.redis.pid)}.${this.dumps}`)) break;
      await sleep(100);
    }
    const keep = process.env.BENCH_CALLGRIND_DIR;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(file, join(keep, `${label}.callgrind`));
    }
    const summary = /^summary:\s+(\d+)/m.exec(readFileSync(file, "utf8"));
    if (!summary?.[1]) throw new Error(`no instruction count in ${file}`);
    return { instructions: Number(summary[1]), file };
  }
}

/** Inclusive instruction counts per function name, from callgrind_annotate. */
function inclusive(file: string): Map<string, number> {
  const text = execFileSync("callgrind_annotate", ["--inclusive=yes", "--threshold=100", file], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\S*:([A-Za-z_][\w]*)\s/gm)) {
    const [, count, fn] = m;
    if (count && fn && !out.has(fn)) out.set(fn, Number(count.replaceAll(",", "")));
  }
  return out;
}

const sumOf = (parts: Map<string, number>, fns: readonly string[]): number =>
  fns.reduce((sum, fn) => sum + (parts.get(fn) ?? 0), 0);

export async function redisCostScenario(opts: {
  durationS: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const description =
    "Instructions redis-server executes per job, counted by valgrind's callgrind (repeatable on a shared machine, unlike CPU seconds): Switchyard end to end (API, one worker, mock at 0 ms, 20 submissions in flight) and raw BullMQ (Queue.add, then a no-op Worker) on the same server; then submissions alone (the API with no worker, 20 in flight) against raw Queue.add alone. Redis's idle work over the same time is taken off.";
  const params = { duration_s: opts.durationS, workers: 1, submit_in_flight: 20 };
  const missing = missingTool();
  if (missing) {
    opts.log(`redis-cost: ${missing} is not installed (apt-get install valgrind); skipped`);
    return {
      scenario: "redis-cost",
      description,
      params,
      figures: [
        {
          name: "Redis instructions per job",
          value: null,
          unit: "instructions",
          note: `not measured: ${missing} is not installed (apt-get install valgrind)`,
        },
      ],
    };
  }
  const dir = mkdtempSync(join(tmpdir(), "switchyard-callgrind-"));
  opts.log("redis-cost: starting redis-server under callgrind");
  const redis = await startRedis({
    wrapper: ["valgrind", "--tool=callgrind", `--callgrind-out-file=${join(dir, "cg.%p")}`],
  });
  const counter = new Counter(redis, dir);
  try {
    // Redis's own periodic work per second, idle (taken off both measurements below).
    const idleMs = 3_000;
    const idle = await counter.count("idle", () => sleep(idleMs));
    const idlePerMs = idle.instructions / idleMs;

    // Raw BullMQ: add N jobs, then a no-op Worker completes them.
    const rawJobs = 2_000;
    const connection = new Redis(redis.url, { maxRetriesPerRequest: null });
    const prefix = `{bench-raw-${Date.now()}}`;
    const queue = new Queue("raw", { connection, prefix });
    let t0 = performance.now();
    const rawAdd = await counter.count("raw-add", async () => {
      let added = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (added < rawJobs) {
            added += 1;
            await queue.add("chat", PAYLOAD, {
              removeOnComplete: { count: 5_000 },
              removeOnFail: { count: 5_000 },
            });
          }
        }),
      );
    });
    const rawAddMs = performance.now() - t0;
    t0 = performance.now();
    const rawProcess = await counter.count("raw-process", () => processRaw(redis.url, prefix, rawJobs));
    const rawProcessMs = performance.now() - t0;
    await queue.close();
    await connection.quit();
    const rawAddPerJob = (rawAdd.instructions - idlePerMs * rawAddMs) / rawJobs;
    const rawPerJob = rawAddPerJob + (rawProcess.instructions - idlePerMs * rawProcessMs) / rawJobs;
    opts.log(
      `redis-cost: raw BullMQ ${Math.round(rawPerJob)} instructions per job (add + process), ${Math.round(rawAddPerJob)} per add`,
    );

    // Ingest alone: the API with no worker, so every instruction counted is a submission's (its
    // admission, record, parked BullMQ job and fair-queue listing, into a growing backlog).
    const perSubmission = await countSubmissions(counter, redis.url, idleMs, opts);

    // Switchyard end to end: the stack idle (its periodic work), then under load.
    const stack = await startBenchStack({ redisUrl: redis.url, workers: 1, mockLatencyMs: 0 });
    try {
      const warm = await closedLoop(stack.apiUrl, submitRequest, { inFlight: 10, durationMs: 3_000 });
      const warmed = await waitSucceeded(stack.workerPorts, warm.statuses[202] ?? 0, 120_000);
      const stackIdle = await counter.count("stack-idle", () => sleep(idleMs));
      const stackIdlePerMs = stackIdle.instructions / idleMs;
      let done = 0;
      t0 = performance.now();
      const load = await counter.count("end-to-end", async () => {
        const r = await closedLoop(stack.apiUrl, submitRequest, {
          inFlight: 20,
          durationMs: opts.durationS * 1000,
        });
        const target = warmed + (r.statuses[202] ?? 0);
        opts.log(`redis-cost: ${r.statuses[202] ?? 0} submitted; waiting for the worker`);
        done = (await waitSucceeded(stack.workerPorts, target, 300_000)) - warmed;
      });
      const loadMs = performance.now() - t0;
      const perJob = done > 0 ? (load.instructions - stackIdlePerMs * loadMs) / done : null;
      opts.log(
        `redis-cost: ${done} jobs, ${perJob === null ? "-" : Math.round(perJob)} instructions per job`,
      );
      const parts = inclusive(load.file);
      const figures: Figure[] = [
        {
          name: "Redis instructions per job",
          value: perJob,
          unit: "instructions",
          note: `${done} jobs; the idle stack's ${Math.round(stackIdlePerMs * 1000)} per second taken off`,
        },
        {
          name: "raw BullMQ per job (add + process)",
          value: rawPerJob,
          unit: "instructions",
          note: `${rawJobs} jobs; idle Redis ${Math.round(idlePerMs * 1000)} per second taken off`,
        },
        { name: "ratio to raw BullMQ", value: ratio(perJob, rawPerJob), unit: "x" },
        {
          name: "Redis instructions per submission (API alone)",
          value: perSubmission.value,
          unit: "instructions",
          note: perSubmission.note,
        },
        {
          name: "raw BullMQ per Queue.add",
          value: rawAddPerJob,
          unit: "instructions",
          note: `the add phase of the ${rawJobs} jobs above`,
        },
        {
          name: "submission's ratio to raw Queue.add",
          value: ratio(perSubmission.value, rawAddPerJob),
          unit: "x",
        },
        {
          name: "share: Lua interpreter",
          value: ((sumOf(parts, SCRIPT_CALLS) - sumOf(parts, ["scriptCall"])) / load.instructions) * 100,
          unit: "%",
          note: "script calls minus the Redis commands they call: the Lua code itself, its tables, strings and GC",
        },
        ...PARTS.map((p): Figure => ({
          name: `share: ${p.name}`,
          value: (sumOf(parts, p.fns) / load.instructions) * 100,
          unit: "%",
          note: p.note,
        })),
      ];
      return { scenario: "redis-cost", description, params, figures };
    } finally {
      await stack.stop();
    }
  } finally {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Redis's instructions per accepted submission with the API alone (no worker), idle work taken off. */
async function countSubmissions(
  counter: Counter,
  redisUrl: string,
  idleMs: number,
  opts: { durationS: number; log: (s: string) => void },
): Promise<{ value: number | null; note: string }> {
  const stack = await startBenchStack({ redisUrl, workers: 0, mockLatencyMs: 0 });
  try {
    await closedLoop(stack.apiUrl, submitRequest, { inFlight: 10, durationMs: 2_000 });
    const idle = await counter.count("api-idle", () => sleep(idleMs));
    const idlePerMs = idle.instructions / idleMs;
    let accepted = 0;
    const t0 = performance.now();
    const load = await counter.count("submissions", async () => {
      const r = await closedLoop(stack.apiUrl, submitRequest, {
        inFlight: 20,
        durationMs: (opts.durationS * 1000) / 2,
      });
      accepted = r.statuses[202] ?? 0;
    });
    const ms = performance.now() - t0;
    const value = accepted > 0 ? (load.instructions - idlePerMs * ms) / accepted : null;
    opts.log(
      `redis-cost: ${accepted} submissions, ${value === null ? "-" : Math.round(value)} instructions each`,
    );
    return {
      value,
      note: `${accepted} accepted; the idle API's ${Math.round(idlePerMs * 1000)} per second taken off`,
    };
  } finally {
    await stack.stop();
  }
}
