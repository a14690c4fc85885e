import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { parseConfig } from "@switchyard/core";
import { CircuitBreakers, KeyPool } from "@switchyard/limiter";
import { createLogger, createRegistry } from "@switchyard/observability";
import { AnswerCache, directQueues, FairQueue, JobStore, JobStreams, Keys } from "@switchyard/queue";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { Bulkheads } from "./bulkhead";
import { JobRunner } from "./job-runner";
import { KeyedCaller } from "./keyed-call";
import { ManagedWorker } from "./managed-worker";
import { chatPayload, parkAndList } from "./parked-job.test-util";
import { WorkerMetrics } from "./metrics";
import { breakerSettings, Runtimes } from "./runtime";

/**
 * The runner with a job its pick marked running (fair-queue.lua, "Running mark"): a cancel asked
 * between the pick's mark and the run reached this process while no run of the job was there to
 * abort (the dispatcher hands it to JobRunner.cancelHeard); the run must still end cancelled,
 * without calling the provider. The provider's address answers nothing: a call would fail the
 * test's expectations, not hang it (the connection is refused at once).
 */
describe("JobRunner, for a job its pick marked running", () => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const name = "jobs-paid";
  const keys = new Keys(uniquePrefix());
  const config = parseConfig(
    `
queue: { prefix: "${keys.prefix}" }
providers:
  - { id: mock, type: openai-compatible, base_url: "http://127.0.0.1:9/v1", keys: [{ id: k1, secret: none }] }
models:
  m: { provider: mock }
tenants:
  - { id: t, tier: paid, api_keys: [sk-t-1234567890] }
`,
    {},
  );
  const log = createLogger("test", "silent");
  const metrics = new WorkerMetrics(createRegistry("worker-test"));
  const fair = new FairQueue(redis, keys);
  const store = new JobStore(redis, keys);
  const runtimes = new Runtimes(config, {
    keyed: new KeyedCaller(new KeyPool(redis, keys), metrics),
    breakers: new CircuitBreakers(redis, keys, breakerSettings(config)),
    bulkheads: new Bulkheads(config.providers),
    metrics,
    cache: (c) => new AnswerCache(redis, keys, c.cache),
    fair,
    log,
  });
  const runner = new JobRunner(runtimes, store, metrics, log, fair, new JobStreams(redis, keys, 60_000));
  const queue = new Queue(name, { connection: redis, prefix: keys.prefix });
  const worker = new ManagedWorker(name, (job, token, signal) => runner.run(job, token, signal), {
    connection: redis,
    prefix: keys.prefix,
    drainDelay: 1,
  });

  beforeAll(() => worker.startManaged());
  afterAll(async () => {
    await worker.close();
    await queue.close();
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
    redis.disconnect();
  });

  /** A job parked and listed as a submission leaves it, with its record queued. */
  const submit = async (jobId: string) => {
    await redis.hset(keys.job(jobId), { id: jobId, status: "queued", tenant: "t", queue: name });
    await parkAndList(queue, fair, jobId, chatPayload(jobId));
  };

  /** The dispatcher's steps for a pick that marked its job running. */
  const pickMarked = async () => {
    const pick = await fair.pickMany(1, undefined, {
      queues: directQueues([name]),
      lockMs: 30_000,
      token: "tok",
      runningTtlMs: 600_000,
    });
    const s = pick.starts[0];
    if (!s?.job?.running) throw new Error("the pick did not mark its job running");
    const job = await worker.adopt(s.job.hash, s.jobId, s.job.token);
    if (!job) throw new Error("the adopted job is missing");
    runner.markedRunning(job, s.job.running);
    return { job, running: s.job.running };
  };

  it("ends cancelled when the cancel came between the pick's mark and the run", async () => {
    await submit("job_c");
    const { job, running } = await pickMarked();
    expect(running).toMatchObject({ applied: true, status: "running", cancelRequested: false });
    expect(await redis.hget(keys.job("job_c"), "status")).toBe("running");
    // The API's cancel: the flag on the running record, and the message every worker hears.
    await store.requestCancel("job_c");
    runner.cancelHeard("job_c");

    await worker.processJob(job, job.token ?? "", () => false);
    const record = await redis.hgetall(keys.job("job_c"));
    expect(record.status).toBe("cancelled");
    expect(JSON.parse(record.error ?? "{}")).toMatchObject({ type: "cancelled" });
    expect(await queue.getJobState("job_c")).toBe("completed");
  });

  it("ends cancelled when the mark itself read the cancel flag", async () => {
    await submit("job_f");
    // Asked while the job was still queued, and not removed (as when a worker held it).
    await store.requestCancel("job_f");
    const { job, running } = await pickMarked();
    expect(running).toMatchObject({ applied: true, status: "running", cancelRequested: true });
    await worker.processJob(job, job.token ?? "", () => false);
    expect(await redis.hget(keys.job("job_f"), "status")).toBe("cancelled");
  });
});
