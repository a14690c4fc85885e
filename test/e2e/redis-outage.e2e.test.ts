import { eventually, http, PAID_KEY, Stack, startRedis, type RedisHandle } from "@switchyard/testing";
import type { JobView } from "@switchyard/core";
import { chat, getJob, submit, waitFinal } from "./helpers";

/**
 * Redis dies (SIGKILL) under a running API and worker: every route that needs Redis answers
 * 503 with Retry-After within 2 s, /metrics and /healthz keep answering, /readyz says 503 within
 * a probe's second, and when Redis is back (its append-only file kept every acknowledged write)
 * the API and the worker carry on without a restart: the job accepted before the outage and a
 * new one both succeed.
 */
const BOUND_MS = 2_000;

interface Timed {
  status: number;
  ms: number;
  retryAfter: string | null;
  body: unknown;
}

describe("Redis outage", () => {
  let redis: RedisHandle;
  let stack: Stack;
  let dir: string;

  beforeAll(async () => {
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    dir = mkdtempSync(join(tmpdir(), "switchyard-outage-"));
    redis = await startRedis({ persist: true, dir });
    stack = await Stack.start({ workers: 1, redisUrl: redis.url, adminToken: "admin-token-123" });
  });
  afterAll(async () => {
    await stack?.stop();
    await redis?.stop();
  });

  const timed = async (
    method: string,
    path: string,
    opts: Parameters<typeof http>[2] = {},
  ): Promise<Timed> => {
    const t0 = performance.now();
    const res = await http<unknown>(method, `${stack.apiUrl}${path}`, opts);
    return {
      status: res.status,
      ms: performance.now() - t0,
      retryAfter: res.headers.get("retry-after"),
      body: res.body,
    };
  };

  it("answers 503 fast on every route while Redis is down, and recovers when it returns", async () => {
    const done = await submit(stack.apiUrl, PAID_KEY, chat("before the outage"));
    expect(done.status).toBe(202);
    expect((await waitFinal(stack.apiUrl, PAID_KEY, done.body.id)).status).toBe("succeeded");
    // A job still waiting when Redis dies: it must survive the outage and finish afterwards.
    const pending = await submit(stack.apiUrl, PAID_KEY, chat("[[mock:delay=1500]] across the outage"));
    expect(pending.status).toBe(202);

    await redis.kill();
    const id = done.body.id;
    const job = { key: PAID_KEY };
    const routes: [string, string, Parameters<typeof http>[2]][] = [
      ["GET", `/v1/jobs/${id}`, job],
      ["GET", `/v1/jobs/${id}?wait=5`, job],
      ["GET", `/v1/jobs/${id}/events`, job],
      ["GET", `/v1/jobs/${id}/deliveries`, job],
      ["DELETE", `/v1/jobs/${id}`, job],
      ["POST", "/v1/jobs", { key: PAID_KEY, json: chat("during") }],
      [
        "POST",
        "/v1/jobs",
        { key: PAID_KEY, json: chat("during"), headers: { "idempotency-key": "outage-1" } },
      ],
      ["GET", "/v1/webhook-endpoints", job],
      ["POST", "/v1/webhook-endpoints", { key: PAID_KEY, json: { url: "https://93.184.216.34/x" } }],
      ["GET", "/v1/webhook-endpoints/ep_00000000000000000000", job],
      ["GET", "/v1/webhook-endpoints/ep_00000000000000000000/deliveries", job],
      ["GET", `/v1/webhook-deliveries/dlv_${id.replace(/^job_/, "")}_succeeded_url`, job],
      ["GET", "/v1/webhook-secret", job],
      ["POST", "/v1/webhook-secret", job],
      ["GET", "/admin/keys", { headers: { authorization: "Bearer admin-token-123" } }],
      ["GET", "/readyz", {}],
    ];
    const answers: string[] = [];
    for (const [method, path, opts] of routes) {
      const r = await timed(method, path, opts);
      answers.push(`${method} ${path}: ${r.status} in ${Math.round(r.ms)} ms`);
      // A route that needs Redis to say "not found" may say so only if it can tell: it cannot.
      expect({ route: `${method} ${path}`, status: r.status }).toEqual({
        route: `${method} ${path}`,
        status: 503,
      });
      expect(r.retryAfter).toMatch(/^\d+$/);
      expect(r.ms).toBeLessThan(BOUND_MS);
    }
    const metrics = await timed("GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(String(metrics.body)).toMatch(/switchyard_metrics_redis_skipped_total\S* [1-9]/);
    expect(String(metrics.body)).toMatch(/process_cpu_user_seconds_total/);
    expect((await timed("GET", "/healthz")).status).toBe(200);
    expect(String(metrics.body)).toMatch(/switchyard_http_requests_total\{[^}]*status="503"/);
    console.info(`Redis down:\n  ${answers.join("\n  ")}`);

    const restartAt = performance.now();
    redis = await startRedis({ persist: true, dir, port: redis.port });
    await eventually(
      () => timed("GET", "/readyz"),
      (r) => r.status === 200,
      15_000,
      "the API to be ready again",
    );
    const apiBackMs = performance.now() - restartAt;
    const after = await submit(stack.apiUrl, PAID_KEY, chat("after the outage"));
    expect(after.status).toBe(202);
    const finished = await waitFinal(stack.apiUrl, PAID_KEY, after.body.id, 30);
    expect(finished.status).toBe("succeeded");
    const survivor: JobView = await waitFinal(stack.apiUrl, PAID_KEY, pending.body.id, 30);
    expect(survivor.status).toBe("succeeded");
    expect(survivor.result?.output_text).toBe("Echo: across the outage");
    expect((await getJob(stack.apiUrl, PAID_KEY, id)).body.status).toBe("succeeded");
    console.info(
      `Redis back: API ready after ${Math.round(apiBackMs)} ms; a new job succeeded ${Math.round(performance.now() - restartAt)} ms after the restart`,
    );
  });

  it("answers 503 within the bound when Redis hangs (connections open, no answers)", async () => {
    const job = await submit(stack.apiUrl, PAID_KEY, chat("before the hang"));
    expect(job.status).toBe(202);
    redis.pause();
    try {
      const read = await timed("GET", `/v1/jobs/${job.body.id}`, { key: PAID_KEY });
      const post = await timed("POST", "/v1/jobs", { key: PAID_KEY, json: chat("during the hang") });
      const ready = await timed("GET", "/readyz");
      for (const r of [read, post, ready]) {
        expect(r.status).toBe(503);
        expect(r.ms).toBeLessThan(BOUND_MS);
      }
      expect(ready.ms).toBeLessThan(1_000);
      console.info(
        `Redis hung: GET ${Math.round(read.ms)} ms, POST ${Math.round(post.ms)} ms, /readyz ${Math.round(ready.ms)} ms (all 503)`,
      );
    } finally {
      redis.resume();
    }
    await eventually(
      () => timed("GET", "/readyz"),
      (r) => r.status === 200,
      15_000,
      "ready after the hang",
    );
    expect((await waitFinal(stack.apiUrl, PAID_KEY, job.body.id, 30)).status).toBe("succeeded");
  });
});
