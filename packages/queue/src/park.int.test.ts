import { Queue, Worker, type Job } from "bullmq";
import { BullMQOtel } from "bullmq-otel";
import { Redis } from "ioredis";
import type { JobPayload } from "@switchyard/core";
import { deleteKeysUnder, minimalConfig, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { admitAlways, JobStore, type ParkedJob } from "./job-store";
import { Keys } from "./keys";
import { JobProducer } from "./producer";
import { LISTED_MARKER } from "./queues";

/**
 * create-job.lua parks a new job's BullMQ job itself, writing what BullMQ 6.7.0's addDelayedJob
 * writes (pinned exactly: see managed-worker.int.test.ts). This compares the two key by key, on
 * two prefixes of one Redis, and runs a parked job through a BullMQ Worker: a BullMQ version
 * that stores a job differently fails here before any job is lost to it.
 */
describe("a job parked by the submission's script, against one parked by BullMQ's add", () => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const config = minimalConfig();
  const queueName = "jobs-paid";
  const prefixes: string[] = [];
  afterAll(async () => {
    await deleteKeysUnder(redis, prefixes);
    redis.disconnect();
  });

  const payload = (id: string, deadline: number): JobPayload => ({
    v: 1,
    job_id: id,
    tenant_id: "t",
    tier: "paid",
    model: "m",
    request: { messages: [{ role: "user", content: "hi" }] },
    priority: "normal",
    start_deadline: deadline,
    trace_id: "tr",
  });

  /** Parks `ids` through the script (create-job.lua) on a fresh prefix; answers its keys. */
  const viaScript = async (ids: string[], now: number, deadline: number) => {
    const keys = new Keys(uniquePrefix());
    prefixes.push(keys.prefix);
    const store = new JobStore(redis, keys);
    const producer = new JobProducer(redis, { ...config, queue: { ...config.queue, prefix: keys.prefix } });
    const parks: ParkedJob[] = [];
    for (const id of ids) {
      const park = producer.parkable(config, payload(id, deadline), now);
      if (!park) throw new Error("no telemetry: the script should park");
      parks.push(park);
      const out = await store.create(
        {
          id,
          tenantId: "t",
          queue: queueName,
          model: "m",
          priority: "normal",
          createdAt: now,
          traceId: "tr",
        },
        3_600_000,
        undefined,
        admitAlways("t", "paid", now),
        now,
        { bullPrefix: keys.prefix, cost: 1, tierWeight: 1, park },
      );
      expect(out).toMatchObject({ kind: "created", listed: true });
    }
    await producer.close();
    return { prefix: keys.prefix, parks };
  };

  /** Parks `ids` with BullMQ's own add, as JobProducer.enqueue does, on a fresh prefix. */
  const viaBullmq = async (ids: string[], now: number, deadline: number) => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const producer = new JobProducer(redis, { ...config, queue: { ...config.queue, prefix } });
    for (const id of ids) await producer.enqueue(config, queueName, payload(id, deadline), now);
    await producer.close();
    return prefix;
  };

  const q = (prefix: string) => `${prefix}:${queueName}:`;
  const stream = async (key: string) => (await redis.xrange(key, "-", "+")).map(([, fields]) => fields);

  it("writes the same job hash, delayed entry, events, id counter and meta, and its own marker", async () => {
    const now = Date.now();
    const deadline = now + 60_000;
    const ids = ["job_p1", "job_p2"];
    const ours = await viaScript(ids, now, deadline);
    const theirs = await viaBullmq(ids, now, deadline);
    const a = q(ours.prefix);
    const b = q(theirs);

    for (const id of ids) {
      const mine = await redis.hgetall(a + id);
      const bull = await redis.hgetall(b + id);
      expect(Object.keys(mine).sort()).toEqual(Object.keys(bull).sort());
      expect(JSON.parse(mine.opts ?? "")).toEqual(JSON.parse(bull.opts ?? ""));
      expect(JSON.parse(mine.data ?? "")).toEqual(JSON.parse(bull.data ?? ""));
      expect(mine).toMatchObject({ name: bull.name, delay: bull.delay, priority: bull.priority });
      // BullMQ stamps the job with its own clock at the add; the script with the submission's.
      expect(mine.timestamp).toBe(String(now));
      expect(Math.abs(Number(bull.timestamp) - now)).toBeLessThan(5_000);
    }

    // The score: the due time in the upper bits, a counter within the millisecond below (BullMQ
    // counts from its own clock, so its two jobs may fall in two milliseconds).
    const scores = async (prefix: string) =>
      (await redis.zrange(`${q(prefix)}delayed`, 0, -1, "WITHSCORES"))
        .filter((_, i) => i % 2 === 1)
        .map(Number);
    const expected = async (prefix: string) => {
      const out: number[] = [];
      for (const id of ids) {
        const h = await redis.hmget(q(prefix) + id, "timestamp", "delay");
        const at = (Number(h[0]) + Number(h[1])) * 4096;
        out.push(out.includes(at) ? at + 1 : at);
      }
      return out;
    };
    const due = deadline;
    expect(await scores(ours.prefix)).toEqual([due * 4096, due * 4096 + 1]);
    expect(await scores(theirs)).toEqual(await expected(theirs));
    const bullDue = Math.floor((await scores(theirs))[0] ?? 0) / 4096;

    const events = await stream(`${a}events`);
    const bullEvents = await stream(`${b}events`);
    expect(events.map((e) => e.filter((_, i) => i % 2 === 0))).toEqual(
      bullEvents.map((e) => e.filter((_, i) => i % 2 === 0)),
    );
    expect(events).toEqual([
      ["event", "added", "jobId", "job_p1", "name", "chat"],
      ["event", "delayed", "jobId", "job_p1", "delay", String(due)],
      ["event", "added", "jobId", "job_p2", "name", "chat"],
      ["event", "delayed", "jobId", "job_p2", "delay", String(due)],
    ]);

    expect(await redis.get(`${a}id`)).toBe(await redis.get(`${b}id`));
    expect(await redis.hget(`${a}meta`, "opts.maxLenEvents")).toBe(
      await redis.hget(`${b}meta`, "opts.maxLenEvents"),
    );
    // BullMQ's delay marker says when its first delayed job is due; the script writes none (it
    // would wake a worker per submission for a due time that is only a safety net). The listing
    // adds its own wake-up, below BullMQ's members (a worker's blocker tells it apart: a picker
    // picks), and nothing else.
    expect(Number(await redis.zscore(`${b}marker`, "1"))).toBe(bullDue);
    expect(await redis.zrange(`${a}marker`, 0, -1, "WITHSCORES")).toEqual([
      LISTED_MARKER.member,
      String(LISTED_MARKER.score),
    ]);
  });

  it("parks a job a BullMQ Worker runs at its due time with its data and options", async () => {
    const now = Date.now();
    const { prefix } = await viaScript(["job_run"], now, now + 200);
    const seen: Job<JobPayload>[] = [];
    const connection = redis.duplicate();
    const worker = new Worker<JobPayload>(
      queueName,
      async (job) => {
        seen.push(job);
        return "ok";
      },
      { connection, prefix, drainDelay: 1 },
    );
    const queue = new Queue(queueName, { connection: redis, prefix });
    try {
      // The listing's marker wakes the worker, but the job stays parked until it is due (or the
      // fair queue picks it, which this test does not do).
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(seen).toHaveLength(1);
      const job = seen[0] as Job<JobPayload>;
      expect(Date.now()).toBeGreaterThanOrEqual(now + 200);
      expect(job.id).toBe("job_run");
      expect(job.data).toEqual(payload("job_run", now + 200));
      expect(job.opts).toMatchObject({ attempts: expect.any(Number), backoff: { type: "switchyard" } });
      expect(job.timestamp).toBe(now);
      for (let i = 0; i < 50 && (await queue.getJobState("job_run")) !== "completed"; i++)
        await new Promise((r) => setTimeout(r, 20));
      expect(await queue.getJobState("job_run")).toBe("completed");
    } finally {
      await worker.close();
      await queue.close();
      connection.disconnect();
    }
  });

  it("parks nothing when BullMQ's telemetry is on: BullMQ's add does it, with its span", async () => {
    const producer = new JobProducer(redis, config, new BullMQOtel({ tracerName: "test" }));
    expect(producer.parkable(config, payload("job_t", Date.now() + 1000))).toBeUndefined();
    await producer.close();
  });
});
