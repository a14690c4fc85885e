import { Pool } from "undici";

/**
 * Load generators on undici's Pool (keep-alive connections, no pipelining). A closed loop keeps
 * `inFlight` requests going for `durationMs`; an open loop starts requests on a fixed schedule
 * whatever the answers do, so a slow server shows as latency instead of a lower offered rate.
 */
export interface LoadRequest {
  path: string;
  method: "POST" | "GET";
  headers: Record<string, string>;
  body?: string;
}

export interface LoadResult {
  sent: number;
  /** Answers by status. */
  statuses: Record<number, number>;
  errors: number;
  /** Latency of every answered request, ms. */
  latencies: number[];
  elapsedMs: number;
  /** Bodies of 2xx answers, when asked for. */
  bodies: string[];
}

async function one(pool: Pool, req: LoadRequest, out: LoadResult, keepBody: boolean): Promise<void> {
  const t0 = performance.now();
  out.sent += 1;
  try {
    const res = await pool.request({
      path: req.path,
      method: req.method,
      headers: req.headers,
      ...(req.body !== undefined ? { body: req.body } : {}),
    });
    const text = await res.body.text();
    out.latencies.push(performance.now() - t0);
    out.statuses[res.statusCode] = (out.statuses[res.statusCode] ?? 0) + 1;
    if (keepBody && res.statusCode < 300) out.bodies.push(text);
  } catch {
    out.errors += 1;
  }
}

const empty = (): LoadResult => ({
  sent: 0,
  statuses: {},
  errors: 0,
  latencies: [],
  elapsedMs: 0,
  bodies: [],
});

export async function closedLoop(
  origin: string,
  make: (i: number) => LoadRequest,
  opts: { inFlight: number; durationMs: number; keepBodies?: boolean },
): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: opts.inFlight, pipelining: 1 });
  const out = empty();
  const start = performance.now();
  const end = start + opts.durationMs;
  let i = 0;
  await Promise.all(
    Array.from({ length: opts.inFlight }, async () => {
      while (performance.now() < end) await one(pool, make(i++), out, opts.keepBodies ?? false);
    }),
  );
  out.elapsedMs = performance.now() - start;
  await pool.close();
  return out;
}

export async function openLoop(
  origin: string,
  make: (i: number) => LoadRequest,
  opts: { ratePerSec: number; durationMs: number; connections: number; keepBodies?: boolean },
): Promise<LoadResult> {
  const pool = new Pool(origin, { connections: opts.connections, pipelining: 1 });
  const out = empty();
  const start = performance.now();
  const total = Math.round((opts.ratePerSec * opts.durationMs) / 1000);
  await paced(opts.ratePerSec, total, (i) => one(pool, make(i), out, opts.keepBodies ?? false));
  out.elapsedMs = performance.now() - start;
  await pool.close();
  return out;
}

/** Time for paced(): the real clock, or an explicit one in tests. */
export interface PaceClock {
  /** Milliseconds from any fixed origin. */
  now(): number;
  sleep(ms: number): Promise<unknown>;
}

const realClock: PaceClock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
};

/**
 * Starts `total` tasks on a fixed schedule of `ratePerSec` whatever they do (task i is due
 * i / ratePerSec seconds after the start; every task whose time has come starts, then the loop
 * sleeps until the next one is due); resolves once all of them have ended.
 *
 * It sleeps until the next due time rather than polling every millisecond, which woke the load
 * generator ~1,000 times a second at any rate: on this benchmark's 2-core VM a timer wake-up costs
 * ~70-200 us of CPU (an empty 20 ms timer, process.cpuUsage). At 200 jobs/s the bench process
 * took 125-138 ms/s of CPU this way against 145-148 with the poll.
 */
export async function paced(
  ratePerSec: number,
  total: number,
  start: (i: number) => Promise<unknown>,
  clock: PaceClock = realClock,
): Promise<void> {
  const t0 = clock.now();
  const pending: Promise<unknown>[] = [];
  const dueAt = (i: number) => (i * 1000) / ratePerSec;
  let i = 0;
  while (i < total) {
    const now = clock.now() - t0;
    while (i < total && dueAt(i) <= now) pending.push(start(i++));
    if (i < total) await clock.sleep(Math.max(1, Math.ceil(dueAt(i) - (clock.now() - t0))));
  }
  await Promise.all(pending);
}
