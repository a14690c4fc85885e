import { Pool } from "undici";
import { PAID_KEY } from "@switchyard/testing";
import { percentile, startBenchStack } from "./harness";
import type { ScenarioResult } from "./results";

/**
 * The drop-in endpoints' added latency: POST /v1/chat/completions with `inFlight` calls kept
 * going, against the same calls made to the mock directly (same latency, same answers), for a
 * whole answer and for the first piece of a streamed one (time to first token). Two workers,
 * the mock at 100 ms before its answer and 20 ms between streamed pieces.
 */
const body = (i: number, stream: boolean) =>
  JSON.stringify({
    model: "gpt-4o-mini",
    max_tokens: 16,
    messages: [{ role: "user", content: `a drop-in call number ${i} with a few words` }],
    ...(stream ? { stream: true } : {}),
  });

interface Timing {
  whole: number;
  /** Time to the first content piece of a streamed answer. */
  first?: number;
}

async function loop(
  origin: string,
  path: string,
  key: string,
  stream: boolean,
  inFlight: number,
  durationMs: number,
) {
  const pool = new Pool(origin, { connections: inFlight, pipelining: 1 });
  const out: Timing[] = [];
  let errors = 0;
  let i = 0;
  const end = performance.now() + durationMs;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          const res = await pool.request({
            path,
            method: "POST",
            headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
            body: body(i++, stream),
          });
          let first: number | undefined;
          for await (const chunk of res.body) {
            if (first === undefined && stream && String(chunk).includes('"content":"')) {
              const text = String(chunk);
              // The role chunk carries content "" first; a piece has some text in it.
              if (/"content":"[^"]/.test(text)) first = performance.now() - t0;
            }
          }
          if (res.statusCode !== 200) errors += 1;
          else out.push({ whole: performance.now() - t0, ...(first !== undefined ? { first } : {}) });
        } catch {
          errors += 1;
        }
      }
    }),
  );
  await pool.close();
  return { timings: out, errors };
}

export async function dropinScenario(opts: {
  redisUrl: string;
  durationS: number;
  inFlight: number;
  log: (s: string) => void;
}): Promise<ScenarioResult> {
  const stack = await startBenchStack({
    redisUrl: opts.redisUrl,
    workers: 2,
    mockLatencyMs: 100,
    mockEnv: { MOCK_STREAM_CHUNK_MS: "20" },
  });
  try {
    const ms = opts.durationS * 1000;
    const p = (xs: number[], q: number) => percentile(xs, q);
    // Warm-up, then each of the four loads in turn.
    await loop(stack.apiUrl, "/v1/chat/completions", PAID_KEY, false, 20, 1_500);
    const directWhole = await loop(
      stack.mockUrl,
      "/v1/chat/completions",
      "sk-upstream-1",
      false,
      opts.inFlight,
      ms,
    );
    const viaWhole = await loop(stack.apiUrl, "/v1/chat/completions", PAID_KEY, false, opts.inFlight, ms);
    const directStream = await loop(
      stack.mockUrl,
      "/v1/chat/completions",
      "sk-upstream-1",
      true,
      opts.inFlight,
      ms,
    );
    const viaStream = await loop(stack.apiUrl, "/v1/chat/completions", PAID_KEY, true, opts.inFlight, ms);
    const whole = (r: typeof viaWhole) => r.timings.map((t) => t.whole);
    const first = (r: typeof viaWhole) => r.timings.flatMap((t) => (t.first !== undefined ? [t.first] : []));
    const added = (q: number, a: number[], b: number[]) => {
      const x = p(a, q);
      const y = p(b, q);
      return x === null || y === null ? null : x - y;
    };
    opts.log(
      `drop-in: whole answer p50 ${p(whole(viaWhole), 50)?.toFixed(1)} ms via Switchyard vs ${p(whole(directWhole), 50)?.toFixed(1)} ms direct; first token p50 ${p(first(viaStream), 50)?.toFixed(1)} vs ${p(first(directStream), 50)?.toFixed(1)} ms; errors ${viaWhole.errors + viaStream.errors}`,
    );
    return {
      scenario: "dropin",
      description: `POST /v1/chat/completions with ${opts.inFlight} calls in flight for ${opts.durationS} s each: through Switchyard (API, queue, two workers) and straight to the mock (100 ms to answer, 20 ms between streamed pieces), whole answers and streamed ones.`,
      params: { duration_s: opts.durationS, in_flight: opts.inFlight, mock_latency_ms: 100, chunk_ms: 20 },
      figures: [
        {
          name: "added latency, whole answer p50",
          value: added(50, whole(viaWhole), whole(directWhole)),
          unit: "ms",
        },
        {
          name: "added latency, whole answer p99",
          value: added(99, whole(viaWhole), whole(directWhole)),
          unit: "ms",
        },
        {
          name: "added time to first token p50",
          value: added(50, first(viaStream), first(directStream)),
          unit: "ms",
        },
        {
          name: "added time to first token p99",
          value: added(99, first(viaStream), first(directStream)),
          unit: "ms",
        },
        { name: "time to first token p50 via Switchyard", value: p(first(viaStream), 50), unit: "ms" },
        { name: "whole answer p50 via Switchyard", value: p(whole(viaWhole), 50), unit: "ms" },
        {
          name: "calls via Switchyard",
          value: viaWhole.timings.length + viaStream.timings.length,
          unit: "calls",
          note: `${viaWhole.errors + viaStream.errors} errors`,
        },
      ],
    };
  } finally {
    await stack.stop();
  }
}
