import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SingleBar, Presets } from "cli-progress";
import { Redis } from "ioredis";
import type { JobView } from "@switchyard/core";
// The testing package already knows how to start redis-server and the apps as processes.
import {
  freePort,
  REPO_ROOT,
  startApp,
  startRedis,
  type AppProcess,
  type RedisHandle,
} from "@switchyard/testing";

export interface DemoOptions {
  once: boolean;
  jobs: number;
}

const TENANTS = [
  { key: "sk-demo-paid", name: "demo-paid" },
  { key: "sk-demo-free", name: "demo-free" },
];

async function redisAnswers(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return (await client.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

async function portOr(preferred: number): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((done) => {
    const srv = createServer();
    srv.once("error", () => void freePort().then(done));
    srv.listen(preferred, "127.0.0.1", () => srv.close(() => done(preferred)));
  });
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

/**
 * Keeps what each process printed (the API's access log, the workers' and the mock's lines) in a
 * new folder under the system's temp directory: a demo that failed or ran slow is explained there.
 */
function keepLogs(procs: AppProcess[]): string | undefined {
  if (procs.length === 0) return undefined;
  try {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-demo-"));
    for (const p of procs) writeFileSync(join(dir, `${p.name}.log`), p.output());
    return dir;
  } catch {
    return undefined;
  }
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const procs: AppProcess[] = [];
  let redis: RedisHandle | undefined;
  const cleanup = async () => {
    await Promise.all(procs.map((p) => p.stop("SIGTERM")));
    const logs = keepLogs(procs);
    if (logs) console.log(`the processes' logs of this run: ${logs}`);
    await redis?.stop();
  };
  try {
    let redisUrl = process.env.REDIS_URL;
    if (redisUrl && (await redisAnswers(redisUrl))) {
      console.log(`using Redis at ${redisUrl}`);
    } else {
      if (redisUrl)
        console.log(`REDIS_URL ${redisUrl} does not answer; starting a local redis-server instead`);
      redis = await startRedis();
      redisUrl = redis.url;
      console.log(`started redis-server on ${redisUrl}`);
    }
    const mockPort = await portOr(4010);
    const apiPort = await portOr(8080);
    const adminToken = process.env.SWITCHYARD_ADMIN_TOKEN ?? "demo-admin-token";
    const mockUrl = `http://127.0.0.1:${mockPort}`;
    const common = {
      REDIS_URL: redisUrl,
      SWITCHYARD_CONFIG: resolve(REPO_ROOT, "config/demo.yaml"),
      MOCK_PROVIDER_URL: mockUrl,
      LOG_LEVEL: "warn",
    };
    const mock = startApp(
      "mock-provider",
      { PORT: String(mockPort), MOCK_LATENCY_MS: process.env.MOCK_LATENCY_MS ?? "200", LOG_LEVEL: "info" },
      "mock",
    );
    procs.push(mock);
    await mock.waitForOutput(/mock provider listening/);
    const api = startApp(
      "api",
      {
        ...common,
        PORT: String(apiPort),
        HOST: "127.0.0.1",
        SWITCHYARD_ADMIN_TOKEN: adminToken,
        LOG_LEVEL: "info",
      },
      "api",
    );
    procs.push(api);
    await api.waitForOutput(/api listening/);
    const worker = startApp("worker", { ...common, LOG_LEVEL: "info" }, "worker");
    procs.push(worker);
    await worker.waitForOutput(/worker ready/);
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    console.log(`mock provider ${mockUrl} · api ${apiUrl} · 1 worker\n`);

    console.log(`submitting ${opts.jobs} jobs for demo-paid and demo-free…`);
    const bar = new SingleBar(
      {
        format: " {bar} {value}/{total} jobs finished · {succeeded} succeeded · {failed} failed",
        hideCursor: true,
      },
      Presets.shades_classic,
    );
    let succeeded = 0;
    let failed = 0;
    bar.start(opts.jobs, 0, { succeeded, failed });
    const latencies: number[] = [];
    const priorities = ["high", "normal", "low"] as const;
    // One provider model of each wire format, a three-provider fallback chain and a rules alias.
    const models = ["gpt-4o-mini", "claude-sonnet-4-6", "gemini-2.5-flash", "smart", "auto"];
    const servedBy = new Map<string, number>();
    await Promise.all(
      Array.from({ length: opts.jobs }, async (_, i) => {
        const tenant = TENANTS[i % TENANTS.length] ?? TENANTS[0]!;
        const started = Date.now();
        const post = await fetch(`${apiUrl}/v1/jobs`, {
          method: "POST",
          headers: { authorization: `Bearer ${tenant.key}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: models[i % models.length],
            priority: priorities[i % 3],
            messages: [{ role: "user", content: `Demo job ${i + 1} from ${tenant.name}` }],
            metadata: { demo: true },
          }),
        });
        const job = (await post.json()) as JobView;
        let view = job;
        while (!["succeeded", "failed", "cancelled", "expired"].includes(view.status)) {
          const res = await fetch(`${apiUrl}/v1/jobs/${job.id}?wait=30`, {
            headers: { authorization: `Bearer ${tenant.key}` },
          });
          view = (await res.json()) as JobView;
        }
        latencies.push(Date.now() - started);
        if (view.status === "succeeded") succeeded += 1;
        else failed += 1;
        const provider = view.result?.provider ?? "none";
        servedBy.set(provider, (servedBy.get(provider) ?? 0) + 1);
        bar.increment(1, { succeeded, failed });
      }),
    );
    bar.stop();
    latencies.sort((a, b) => a - b);
    console.log(
      `\nsummary: ${succeeded} succeeded, ${failed} failed; latency from submit to result p50 ${percentile(latencies, 50)} ms, p95 ${percentile(latencies, 95)} ms (mock upstream latency ${process.env.MOCK_LATENCY_MS ?? "200"} ms)`,
    );
    console.log(
      `served by: ${[...servedBy.entries()]
        .sort()
        .map(([p, n]) => `${p} ${n}`)
        .join(", ")}`,
    );
    console.log(`\n  Bull Board  ${apiUrl}/admin/queues   (user: admin, password: ${adminToken})`);
    console.log(`  metrics     ${apiUrl}/metrics`);
    console.log(
      `  try it      curl -s -X POST ${apiUrl}/v1/jobs -H 'authorization: Bearer sk-demo-paid' -H 'content-type: application/json' \\`,
    );
    console.log(`                -d '{"model":"smart","messages":[{"role":"user","content":"hello"}]}'`);
    if (opts.once) {
      await cleanup();
      return failed === 0 ? 0 : 1;
    }
    console.log("\nrunning until Ctrl-C…");
    await new Promise<void>((done) => {
      process.once("SIGINT", () => done());
      process.once("SIGTERM", () => done());
    });
    console.log("\nstopping…");
    await cleanup();
    return 0;
  } catch (err) {
    console.error(`demo failed: ${(err as Error).message}`);
    await cleanup();
    return 1;
  }
}
