import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { stringify } from "yaml";
import {
  freePort,
  startApp,
  testConfig,
  uniquePrefix,
  type AppProcess,
  type ConfigDoc,
} from "@switchyard/testing";

/**
 * A Switchyard stack for one scenario, as real processes on the run's Redis: mock provider,
 * API and N workers (each serving /metrics). Logs at warn so logging does not dominate.
 */
/** What a throughput scenario, read against raw BullMQ's Worker, is given. */
export interface ThroughputOpts {
  redisUrl: string;
  durationS: number;
  rawProcessPerSec: number;
  /** Raw BullMQ's CPU ms per job (add + process, client + Redis) from the same run. */
  rawCpuPerJobMs?: number;
  log: (s: string) => void;
  /** Empties Redis between the scenario's runs: each starts on an empty one. */
  flush: () => Promise<void>;
}

export interface BenchStack {
  apiUrl: string;
  mockUrl: string;
  workerPorts: number[];
  api: AppProcess;
  workers: AppProcess[];
  prefix: string;
  stop(): Promise<void>;
}

export async function startBenchStack(opts: {
  redisUrl: string;
  workers: number;
  mockLatencyMs: number;
  mockEnv?: Record<string, string>;
  config?: (cfg: ConfigDoc) => void;
  workerConcurrency?: number;
  /** Node flags for the API and the workers, after BENCH_NODE_ARGS's. */
  nodeArgs?: string[];
  /** Where the API and the workers are built (another checkout's root); this one by default. */
  appsRoot?: string;
  /** Environment variables for the API and the workers, on top of the stack's own. */
  env?: Record<string, string>;
}): Promise<BenchStack> {
  const dir = mkdtempSync(join(tmpdir(), "switchyard-bench-"));
  const procs: AppProcess[] = [];
  const stop = async () => {
    await Promise.allSettled(procs.map((p) => p.stop("SIGTERM", 10_000)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [mockPort, apiPort] = [await freePort(), await freePort()];
    const workerPorts: number[] = [];
    for (let i = 0; i < opts.workers; i++) workerPorts.push(await freePort());
    const mockUrl = `http://127.0.0.1:${mockPort}`;
    const prefix = uniquePrefix();
    const cfg = testConfig(mockUrl, prefix, {
      worker: { concurrency: opts.workerConcurrency ?? 256 },
      server: { max_wait_seconds: 60 },
    });
    // The whole run goes through one provider; no upstream limits unless a scenario sets them.
    for (const p of cfg.providers as Record<string, unknown>[]) p.timeout_ms = 30_000;
    opts.config?.(cfg);
    const configPath = join(dir, "config.yaml");
    writeFileSync(configPath, stringify(cfg));
    // BENCH_PROFILE_DIR=/some/dir writes a V8 CPU profile of the API and each worker there.
    // BENCH_NODE_ARGS="--flag ..." passes V8/Node flags to the API and the workers (to try them).
    const nodeArgs = [
      ...(process.env.BENCH_PROFILE_DIR
        ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
        : []),
      ...(process.env.BENCH_NODE_ARGS ?? "").split(/\s+/).filter(Boolean),
      ...(opts.nodeArgs ?? []),
    ];
    // BENCH_LOG_LEVEL (default info, as shipped): the API writes one access-log line per request.
    const level = process.env.BENCH_LOG_LEVEL ?? "info";
    const common = { ...opts.env, REDIS_URL: opts.redisUrl, SWITCHYARD_CONFIG: configPath, LOG_LEVEL: level };
    const mock = startApp(
      "mock-provider",
      {
        PORT: String(mockPort),
        MOCK_LATENCY_MS: String(opts.mockLatencyMs),
        LOG_LEVEL: "info",
        // The mock's default per-key limit (10,000 rpm) is learned from its headers by the key
        // pool and would cap a throughput run at ~166 jobs/s once a minute's window fills: the
        // upstream is not what these scenarios measure. Scenarios that test limits set their own.
        MOCK_LIMITS: JSON.stringify({ "sk-upstream-1": { rpm: 100_000_000, tpm: 100_000_000_000 } }),
        ...opts.mockEnv,
      },
      "mock",
    );
    const api = startApp(
      "api",
      { ...common, PORT: String(apiPort), HOST: "127.0.0.1" },
      "api",
      nodeArgs,
      opts.appsRoot,
    );
    procs.push(mock, api);
    await Promise.all([
      mock.waitForOutput(/mock provider listening/),
      waitHttp(`http://127.0.0.1:${apiPort}/healthz`),
    ]);
    const workers: AppProcess[] = [];
    for (const [i, port] of workerPorts.entries()) {
      const w = startApp(
        "worker",
        { ...common, METRICS_PORT: String(port) },
        `worker${i + 1}`,
        nodeArgs,
        opts.appsRoot,
      );
      procs.push(w);
      workers.push(w);
      await waitHttp(`http://127.0.0.1:${port}/healthz`);
    }
    return { apiUrl: `http://127.0.0.1:${apiPort}`, mockUrl, workerPorts, api, workers, prefix, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Waits until a URL answers 200 (start-up logs may be off at the chosen log level). */
async function waitHttp(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Job runs by outcome, summed over the workers' own metrics. */
export async function scrapeRuns(
  ports: number[],
): Promise<{ runs: number; succeeded: number; byOutcome: Record<string, number> }> {
  const byOutcome: Record<string, number> = {};
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const m of text.matchAll(/^switchyard_worker_jobs_total\{[^}]*outcome="([^"]+)"[^}]*\} (\d+)/gm))
      byOutcome[m[1] ?? "?"] = (byOutcome[m[1] ?? "?"] ?? 0) + Number(m[2]);
  }
  const runs = Object.values(byOutcome).reduce((a, b) => a + b, 0);
  return { runs, succeeded: byOutcome.succeeded ?? 0, byOutcome };
}

/** Succeeded job runs counted by the workers' own metrics. */
export const succeededRuns = async (ports: number[]): Promise<number> => (await scrapeRuns(ports)).succeeded;

/** Waits until the workers have `target` succeeded runs, or the time is up; answers the count. */
export async function waitSucceeded(ports: number[], target: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const done = await succeededRuns(ports);
    if (done >= target || Date.now() >= deadline) return done;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resident memory of a process in MiB (Linux /proc). */
export function rssMiB(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far (Linux /proc). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** CPU seconds Redis has used so far (INFO cpu). */
export async function redisCpuSeconds(url: string): Promise<number> {
  const c = new Redis(url);
  try {
    const info = await c.info("cpu");
    const user = Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0);
    const sys = Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
    return user + sys;
  } finally {
    c.disconnect();
  }
}

/** CPU used by each part of a stack, read before and after a measured stretch. */
export async function cpuSnapshot(stack: BenchStack, redisUrl: string) {
  return {
    api: cpuSeconds(stack.api.child.pid),
    workers: stack.workers.reduce((n, w) => n + cpuSeconds(w.child.pid), 0),
    redis: await redisCpuSeconds(redisUrl),
  };
}

/** CPU milliseconds per job of each part between two snapshots. */
export function cpuPerJob(
  before: Awaited<ReturnType<typeof cpuSnapshot>>,
  after: Awaited<ReturnType<typeof cpuSnapshot>>,
  jobs: number,
) {
  const per = (a: number, b: number) => (jobs > 0 ? ((b - a) * 1000) / jobs : null);
  return {
    api: per(before.api, after.api),
    workers: per(before.workers, after.workers),
    redis: per(before.redis, after.redis),
  };
}

/** p-th percentile (0..100) of unsorted values; null when there are none. */
export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? null;
}

/** Least-squares slope of y over x. */
export function slope(points: { x: number; y: number }[]): number | null {
  if (points.length < 2) return null;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  const den = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  return den === 0 ? null : points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0) / den;
}

export const ratio = (a: number | null, b: number | null): number | null =>
  a === null || b === null || b === 0 ? null : a / b;

/** The mean of the values measured (nulls left out); null when there are none. */
export const meanOf = (xs: (number | null)[]): number | null => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length === 0 ? null : v.reduce((a, b) => a + b, 0) / v.length;
};

/** The commands that run a Lua script, each one round trip: EVALSHA/EVAL, and FCALL (a function library's). */
export const SCRIPT_COMMANDS: ReadonlySet<string> = new Set(["evalsha", "eval", "fcall"]);

/** INFO commandstats: calls and microseconds per command (commands run inside scripts included). */
export async function redisCommandStats(url: string): Promise<Map<string, { calls: number; usec: number }>> {
  const c = new Redis(url);
  try {
    const out = new Map<string, { calls: number; usec: number }>();
    for (const m of (await c.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
      out.set(m[1] ?? "?", { calls: Number(m[2]), usec: Number(m[3]) });
    return out;
  } finally {
    c.disconnect();
  }
}

/**
 * Commands per job between two commandstats readings, busiest first: how often each ran and the
 * Redis time it took per job (scripts' time includes the commands they ran).
 */
export function commandsPerJob(
  before: Map<string, { calls: number; usec: number }>,
  after: Map<string, { calls: number; usec: number }>,
  jobs: number,
): { command: string; calls_per_job: number; usec_per_job: number }[] {
  const rows: { command: string; calls_per_job: number; usec_per_job: number }[] = [];
  if (jobs <= 0) return rows;
  for (const [command, a] of after) {
    const b = before.get(command) ?? { calls: 0, usec: 0 };
    const calls = a.calls - b.calls;
    if (calls <= 0) continue;
    rows.push({
      command,
      calls_per_job: Math.round((calls / jobs) * 100) / 100,
      usec_per_job: Math.round(((a.usec - b.usec) / jobs) * 10) / 10,
    });
  }
  return rows.sort((x, y) => y.usec_per_job - x.usec_per_job);
}

/** A process's GC pauses of one kind, from its own metrics (prom-client's nodejs_gc_duration_seconds). */
export interface GcPauses {
  count: number;
  sumMs: number;
  /** Pauses longer than 10 ms (the histogram's bucket edge). */
  over10ms: number;
}

/** No pauses: a kind a process has not reported yet. */
export const noPauses = (): GcPauses => ({ count: 0, sumMs: 0, over10ms: 0 });

/** GC pauses by kind (minor, major, incremental, weakcb) since the process started. */
export async function gcPauses(metricsUrl: string): Promise<Map<string, GcPauses>> {
  const text = await (await fetch(metricsUrl)).text();
  const out = new Map<string, GcPauses>();
  const of = (kind: string): GcPauses => {
    let p = out.get(kind);
    if (!p) out.set(kind, (p = noPauses()));
    return p;
  };
  const under10 = new Map<string, number>();
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/gm)) {
    const labels = m[2] ?? "";
    const kind = /kind="(\w+)"/.exec(labels)?.[1];
    const value = Number(m[3]);
    if (!kind || !Number.isFinite(value)) continue;
    if (m[1] === "count") of(kind).count = value;
    else if (m[1] === "sum") of(kind).sumMs = value * 1000;
    else if (/le="0\.01"/.test(labels)) under10.set(kind, value);
  }
  for (const [kind, p] of out) p.over10ms = p.count - (under10.get(kind) ?? p.count);
  return out;
}

/** The pauses between two readings of the same process. */
export function gcPausesBetween(
  before: Map<string, GcPauses>,
  after: Map<string, GcPauses>,
): Map<string, GcPauses> {
  const d = new Map<string, GcPauses>();
  for (const [kind, a] of after) {
    const b = before.get(kind) ?? noPauses();
    d.set(kind, { count: a.count - b.count, sumMs: a.sumMs - b.sumMs, over10ms: a.over10ms - b.over10ms });
  }
  return d;
}

/**
 * A span the API gives in seconds (whole milliseconds, as a float) back in whole ms: 1025 ms read
 * as 1025.0000953 would miss a goal of 25 ms over a 1 s call that it meets.
 */
export const wholeMs = (seconds: number): number => Math.round(seconds * 1000);
