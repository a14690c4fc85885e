import { spawn } from "node:child_process";
import { join } from "node:path";
import { PAID_KEY, freePort } from "@switchyard/testing";
import { cpuSeconds, percentile, ratio, redisCpuSeconds, startBenchStack } from "./harness";
import { closedLoop } from "./load";
import type { ScenarioResult } from "./results";
import { describeRaw, rawAround, rawNextTo } from "./baseline";

/** Issue 18's goal for the ingest's p99 latency with 200 submissions in flight. */
export const INGEST_P99_GOAL_MS = 20;
/** Submissions in flight the sweep tries, most first, when the goal is missed at 200. */
const SWEEP_IN_FLIGHT = [150, 100, 50, 25];

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

/** The ingest floor (raw-http.ts) as its own process; stop() ends it. */
async function startRawHttp(
  redisUrl: string,
): Promise<{ url: string; pid: number | undefined; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(__dirname, "raw-http.js")], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), REDIS_URL: redisUrl },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("raw-http did not start within 20 s")), 20_000);
    child.stdout.on("data", (d: Buffer) => {
      if (d.toString().includes("raw-http listening")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`raw-http exited with code ${code} before listening`));
    });
  });
  try {
    await listening;
  } catch (err) {
    child.kill("SIGKILL"); // it did not start: leave no process behind
    throw err;
  }
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    stop: async () => {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * A closed loop of submissions with the CPU per accepted submission of the server process, Redis
 * and this load generator, after a short warm-up (JIT, connection pools, Redis scripts loaded).
 */
export async function measureIngest(
  url: string,
  serverPid: number | undefined,
  redisUrl: string,
  inFlight: number,
  durationMs: number,
  warmupMs = 2_000,
) {
  await closedLoop(url, submitRequest, { inFlight: 20, durationMs: warmupMs });
  const server0 = cpuSeconds(serverPid);
  const redis0 = await redisCpuSeconds(redisUrl);
  const load0 = process.cpuUsage();
  const r = await closedLoop(url, submitRequest, { inFlight, durationMs });
  const load = process.cpuUsage(load0);
  const accepted = r.statuses[202] ?? 0;
  const per = (seconds: number) => (accepted > 0 ? (seconds * 1000) / accepted : null);
  return {
    r,
    accepted,
    perSec: accepted / (r.elapsedMs / 1000),
    cpu: {
      server: per(cpuSeconds(serverPid) - server0),
      redis: per((await redisCpuSeconds(redisUrl)) - redis0),
      load: per((load.user + load.system) / 1e6),
    },
  };
}

type IngestRun = Awaited<ReturnType<typeof measureIngest>>;

/** The ingest load against Switchyard's API alone (no worker), on a stack of its own. */
async function ingestSwitchyard(redisUrl: string, inFlight: number, durationMs: number): Promise<IngestRun> {
  const stack = await startBenchStack({ redisUrl, workers: 0, mockLatencyMs: 0 });
  try {
    return await measureIngest(stack.apiUrl, stack.api.child.pid, redisUrl, inFlight, durationMs);
  } finally {
    await stack.stop();
  }
}

/** The ingest load against the floor: raw BullMQ behind Node's bare HTTP server (raw-http.ts). */
async function ingestFloor(redisUrl: string, inFlight: number, durationMs: number): Promise<IngestRun> {
  const raw = await startRawHttp(redisUrl);
  try {
    return await measureIngest(raw.url, raw.pid, redisUrl, inFlight, durationMs);
  } finally {
    await raw.stop();
  }
}

/**
 * One measured run as figures: accepted per second, CPU per submission of the server process,
 * Redis and the load generator, latencies. `prefix` tells the floor's apart ("" for Switchyard's,
 * whose names are those of earlier result files).
 */
const runFigures = (
  m: IngestRun,
  names: { accepted: string; prefix: string; server: string },
  goals: { accepted?: string; p99?: string } = {},
): ScenarioResult["figures"] => [
  {
    name: names.accepted,
    value: m.perSec,
    unit: "jobs/s",
    ...(goals.accepted ? { goal: goals.accepted } : {}),
    note: `${m.accepted} answered 202`,
  },
  { name: `${names.prefix}CPU per submission: ${names.server}`, value: m.cpu.server, unit: "ms" },
  { name: `${names.prefix}CPU per submission: Redis`, value: m.cpu.redis, unit: "ms" },
  { name: `${names.prefix}CPU per submission: load generator`, value: m.cpu.load, unit: "ms" },
  { name: `${names.prefix}latency p50`, value: percentile(m.r.latencies, 50), unit: "ms" },
  { name: `${names.prefix}latency p95`, value: percentile(m.r.latencies, 95), unit: "ms" },
  {
    name: `${names.prefix}latency p99`,
    value: percentile(m.r.latencies, 99),
    unit: "ms",
    ...(goals.p99 ? { goal: goals.p99 } : {}),
  },
];

/**
 * Ingest: accepted POST /v1/jobs per second with `inFlight` requests kept going, API alone (no
 * worker competes for the CPU), against raw Queue.add measured in the same run; then the same
 * load against raw BullMQ behind Node's bare HTTP server (raw-http.ts), the floor of this stack
 * on this machine: what any Node service that stores each submission with BullMQ can reach here.
 */
export async function ingestScenario(opts: {
  redisUrl: string;
  durationS: number;
  inFlight: number;
  /** Raw Queue.add at the run's start (the baseline). */
  rawAddPerSec: number;
  /** Seconds of raw adds measured right before and right after the API's run. */
  rawDurationS: number;
  log: (s: string) => void;
  flush: () => Promise<void>;
}): Promise<ScenarioResult> {
  const before = await rawNextTo(opts, "ingest, raw BullMQ before the API's run");
  const sy = await ingestSwitchyard(opts.redisUrl, opts.inFlight, opts.durationS * 1000);
  opts.log(
    `ingest: ${Math.round(sy.perSec)} accepted/s, statuses ${JSON.stringify(sy.r.statuses)}, errors ${sy.r.errors}`,
  );
  await opts.flush();
  const after = await rawNextTo(opts, "ingest, raw BullMQ after the API's run");
  const around = rawAround(before, after);
  const floor = await ingestFloor(opts.redisUrl, opts.inFlight, opts.durationS * 1000);
  opts.log(
    `ingest floor (raw BullMQ behind node:http): ${Math.round(floor.perSec)} accepted/s, p99 ${percentile(floor.r.latencies, 99)?.toFixed(1)} ms`,
  );
  return {
    scenario: "ingest",
    description: `POST /v1/jobs with ${opts.inFlight} requests in flight for ${opts.durationS} s against the API process alone (no worker running), after a 2 s warm-up, with raw BullMQ (${opts.rawDurationS} s of Queue.add) measured right before and right after it: the ratio divides by their mean; then the same load against the floor: raw BullMQ Queue.add behind Node's bare HTTP server in its own process (no authentication, validation, idempotency, quotas, logging or metrics). The load generator runs in the bench process on the same two cores; its CPU per submission is shown for both.`,
    params: { duration_s: opts.durationS, in_flight: opts.inFlight, raw_duration_s: opts.rawDurationS },
    figures: [
      ...runFigures(
        sy,
        { accepted: "accepted submissions", prefix: "", server: "API" },
        { accepted: ">= 5000/s", p99: `<= ${INGEST_P99_GOAL_MS} ms` },
      ),
      {
        name: "ratio to raw Queue.add",
        value: ratio(sy.perSec, around.mean.addPerSec),
        unit: "x",
        goal: ">= 0.20 x",
        note: `${describeRaw(around, "add")}; to the run's start baseline (${Math.round(opts.rawAddPerSec)}/s): ${ratio(sy.perSec, opts.rawAddPerSec)?.toFixed(3) ?? "n/a"}x`,
      },
      ...runFigures(floor, {
        accepted: "floor: raw BullMQ behind node:http",
        prefix: "floor ",
        server: "server",
      }),
      { name: "ratio to the floor", value: ratio(sy.perSec, floor.perSec), unit: "x" },
    ],
    details: {
      statuses: sy.r.statuses,
      errors: sy.r.errors,
      floor: { statuses: floor.r.statuses, errors: floor.r.errors },
      raw_next_to_run: [before, after],
    },
  };
}

const ms = (v: number | null | undefined) => (v === null || v === undefined ? "n/a" : `${v.toFixed(1)} ms`);

/**
 * The ingest's p99 goal missed at `missedAt` in flight: the same load again with fewer
 * submissions in flight, most first, until the API's p99 holds the goal; the floor under the same
 * load at each step, so what this machine's bare Node and BullMQ reach at that concurrency stands
 * next to it. Redis is emptied before each run.
 */
export async function ingestSweep(opts: {
  redisUrl: string;
  durationS: number;
  missedAt: number;
  log: (s: string) => void;
  flush: () => Promise<void>;
}): Promise<ScenarioResult> {
  const steps = SWEEP_IN_FLIGHT.filter((n) => n < opts.missedAt);
  const tried: ScenarioResult["figures"] = [];
  const answers: Record<string, unknown>[] = [];
  let held: number | null = null;
  for (const n of steps) {
    await opts.flush();
    const sy = await ingestSwitchyard(opts.redisUrl, n, opts.durationS * 1000);
    await opts.flush();
    const floor = await ingestFloor(opts.redisUrl, n, opts.durationS * 1000);
    const p99 = percentile(sy.r.latencies, 99);
    const floorP99 = percentile(floor.r.latencies, 99);
    answers.push({
      in_flight: n,
      statuses: sy.r.statuses,
      errors: sy.r.errors,
      floor: { statuses: floor.r.statuses, errors: floor.r.errors },
    });
    tried.push({
      name: `latency p99 at ${n} in flight`,
      value: p99,
      unit: "ms",
      goal: `<= ${INGEST_P99_GOAL_MS} ms`,
      note: `${Math.round(sy.perSec)} accepted/s, p50 ${ms(percentile(sy.r.latencies, 50))}; the floor at the same load: ${Math.round(floor.perSec)}/s, p99 ${ms(floorP99)}`,
    });
    opts.log(
      `ingest sweep: ${n} in flight -> ${Math.round(sy.perSec)}/s, p99 ${ms(p99)} (the floor ${Math.round(floor.perSec)}/s, p99 ${ms(floorP99)})`,
    );
    if (p99 !== null && p99 <= INGEST_P99_GOAL_MS) {
      held = n;
      break;
    }
  }
  await opts.flush();
  return {
    scenario: "ingest-sweep",
    description: `The ingest's p99 goal (<= ${INGEST_P99_GOAL_MS} ms) was missed with ${opts.missedAt} submissions in flight; the same load again with ${steps.join(", ")} in flight (most first, ${opts.durationS} s each after a 2 s warm-up, the API alone) until one holds it, each followed by the floor (raw BullMQ Queue.add behind Node's bare HTTP server) under the same load.`,
    params: { missed_at: opts.missedAt, duration_s: opts.durationS, in_flight: SWEEP_IN_FLIGHT },
    figures: [
      {
        name: `most submissions in flight held with p99 <= ${INGEST_P99_GOAL_MS} ms`,
        value: held,
        unit: "in flight",
        note:
          held === null
            ? "none of the loads tried held it"
            : `of the loads tried; ${opts.missedAt} in flight did not`,
      },
      ...tried,
    ],
    details: { answers },
  };
}
