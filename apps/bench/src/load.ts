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

/**
 * Starts `total` tasks on a fixed schedule of `ratePerSec` whatever they do (every task whose
 * time has come, then a millisecond's sleep); resolves once all of them have ended.
 */
export async function paced(
  ratePerSec: number,
  total: number,
  start: (i: number) => Promise<unknown>,
): Promise<void> {
  const t0 = performance.now();
  const pending: Promise<unknown>[] = [];
  let i = 0;
  while (i < total) {
    const due = Math.min(total, Math.floor(((performance.now() - t0) * ratePerSec) / 1000) + 1);
    while (i < due) pending.push(start(i++));
    await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(pending);
}
