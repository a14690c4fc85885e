import { Queue, type Job } from "bullmq";
import { Redis } from "ioredis";
import { deleteKeysUnder, eventually, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { directQueues, FairQueue, JobStore, Keys, type FairStart } from "@switchyard/queue";
import { ManagedWorker } from "./managed-worker";
import { parkAndList } from "./parked-job.test-util";

/**
 * A pick that starts its jobs directly (fair-queue.lua, "Direct starts") writes what BullMQ
 * 6.7.0's promote and moveToActive write for the job together, and ManagedWorker.adopt makes
 * the same Job that BullMQ's fetch makes: compared key by key and field by field with the two
 * steps BullMQ takes, on two prefixes of one Redis, and the adopted job runs to completion in a
 * BullMQ worker. BullMQ is pinned exactly (managed-worker.int.test.ts); a version that stores
 * an active job differently fails here before any job is lost to it.
 */
describe("a job started directly by the fair queue's pick, against BullMQ's promote and fetch", () => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const name = "jobs-paid";
  const LOCK_MS = 6_000;
  const prefixes: string[] = [];
  const closing: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(closing.splice(0).map((c) => c.close()));
  });
  afterAll(async () => {
    await deleteKeysUnder(redis, prefixes);
    redis.disconnect();
  });

  /**
   * A fresh prefix with a queue, a started ManagedWorker (BullMQ's lock `lockMs`, its stalled
   * check every `stalledMs`) and the fair queue; `ids` parked and listed.
   */
  const setUp = async (ids: string[], lockMs = LOCK_MS, stalledMs = 60_000) => {
    const keys = new Keys(uniquePrefix());
    prefixes.push(keys.prefix);
    const queue = new Queue(name, { connection: redis, prefix: keys.prefix });
    const done: string[] = [];
    const worker = new ManagedWorker(
      name,
      async (job) => {
        done.push(String(job.id));
        return "done";
      },
      {
        connection: redis,
        prefix: keys.prefix,
        lockDuration: lockMs,
        stalledInterval: stalledMs,
        drainDelay: 1,
      },
    );
    closing.push(worker, queue);
    await worker.startManaged();
    const fair = new FairQueue(redis, keys);
    for (const id of ids) await parkAndList(queue, fair, id, { v: 1, id });
    return { keys, prefix: keys.prefix, queue, worker, fair, done, q: `${keys.prefix}:${name}:` };
  };
  const direct = (token: string, queues = [name]) => ({
    queues: directQueues(queues),
    lockMs: LOCK_MS,
    token,
  });
  const stream = async (key: string) => (await redis.xrange(key, "-", "+")).map(([, fields]) => fields);
  /** A Job's JSON without what differs by clock or by token. */
  const comparable = (job: Job) => {
    const { processedOn, timestamp, ...rest } = job.asJSON();
    return { rest, processedOn: typeof processedOn, timestamp: typeof timestamp };
  };

  it("writes the same job hash, lock, active list and Job as promote plus BullMQ's fetch", async () => {
    const ids = ["job_d1", "job_d2"];
    const ours = await setUp(ids);
    const theirs = await setUp(ids);

    const pick = await ours.fair.pickMany(2, undefined, direct("tok"));
    expect(pick.starts.map((s) => s.jobId)).toEqual(ids);
    const adopted: Job[] = [];
    for (const s of pick.starts) {
      expect(s.job?.token).toBe(`tok:${adopted.length + 1}`);
      const job = s.job && (await ours.worker.adopt(s.job.hash, s.jobId, s.job.token));
      if (!job) throw new Error("the direct start gave no job");
      adopted.push(job);
    }

    const promoted = await theirs.fair.pickMany(2);
    expect(promoted.starts.every((s: FairStart) => s.job === undefined)).toBe(true);
    const fetched: Job[] = [];
    for (const [i] of ids.entries()) {
      const job = await theirs.worker.getNextJob(`tok:${i + 1}`, { block: false });
      if (!job) throw new Error("BullMQ's fetch found no job");
      fetched.push(job);
    }
    // BullMQ's fetch takes the wait list's oldest first, as the pick started them.
    expect(fetched.map((j) => j.id)).toEqual(ids);

    for (const [i, id] of ids.entries()) {
      const mine = adopted[i] as Job;
      const bull = fetched[i] as Job;
      expect(comparable(mine)).toEqual(comparable(bull));
      expect(mine.token).toBe(bull.token);
      expect(mine.attemptsStarted).toBe(1);
      expect(Math.abs((mine.processedOn ?? 0) - Date.now())).toBeLessThan(10_000);

      const a = await redis.hgetall(ours.q + id);
      const b = await redis.hgetall(theirs.q + id);
      expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
      const { processedOn: pa, timestamp: ta, ...restA } = a;
      const { processedOn: pb, timestamp: tb, ...restB } = b;
      expect(restA).toEqual(restB);
      for (const t of [pa, ta, pb, tb]) expect(Number(t)).toBeGreaterThan(0);

      expect(await redis.get(`${ours.q}${id}:lock`)).toBe(`tok:${i + 1}`);
      expect(await redis.get(`${theirs.q}${id}:lock`)).toBe(`tok:${i + 1}`);
      for (const q of [ours.q, theirs.q]) {
        const ttl = await redis.pttl(`${q}${id}:lock`);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(LOCK_MS);
      }
    }
    for (const q of [ours.q, theirs.q]) {
      expect(await redis.lrange(`${q}active`, 0, -1)).toEqual([...ids].reverse());
      expect(await redis.llen(`${q}wait`)).toBe(0);
      expect(await redis.zcard(`${q}delayed`)).toBe(0);
    }
    // The job never passed through the wait list: its events say so.
    const events = (await stream(`${ours.q}events`)).filter((e) => e[1] === "active");
    expect(events).toEqual(ids.map((id) => ["event", "active", "jobId", id, "prev", "delayed"]));
    const bullEvents = (await stream(`${theirs.q}events`)).filter((e) => e[1] === "active");
    expect(bullEvents).toEqual(ids.map((id) => ["event", "active", "jobId", id, "prev", "waiting"]));

    // The adopted jobs run and complete in BullMQ (its completion checks the lock's token).
    for (const job of adopted) await ours.worker.processJob(job, job.token ?? "", () => false);
    expect(ours.done).toEqual(ids);
    for (const id of ids) expect(await ours.queue.getJobState(id)).toBe("completed");
    expect(await redis.llen(`${ours.q}active`)).toBe(0);
  });

  it("leaves a job whose picker died before taking it to BullMQ's stall recovery, which hands it to a worker", async () => {
    const s = await setUp(["job_s"], 1_000, 500);
    // The picking process dies right after its pick: the job is active and locked, and no one
    // runs it or renews its lock.
    const pick = await s.fair.pickMany(1, undefined, { ...direct("gone"), lockMs: 1_000 });
    expect(pick.starts[0]?.job).toBeDefined();
    expect(await redis.lrange(`${s.q}active`, 0, -1)).toEqual(["job_s"]);
    // Once the lock has run out, BullMQ's stalled check (startManaged starts it) moves it back.
    await eventually(
      () => redis.lrange(`${s.q}wait`, 0, -1),
      (wait) => wait.includes("job_s"),
      20_000,
      "the job back in the wait list",
    );
    const job = await s.worker.getNextJob("tok-again", { block: false });
    if (!job) throw new Error("no job to fetch after the stall recovery");
    expect(job.id).toBe("job_s");
    expect(job.stalledCounter).toBe(1);
    await s.worker.processJob(job, "tok-again", () => false);
    expect(s.done).toEqual(["job_s"]);
    expect(await s.queue.getJobState("job_s")).toBe("completed");
  });

  it("marks a first start's record running as the runner's transition would, and leaves the rest to the runner", async () => {
    const RUNNING_TTL = 900_000;
    const ids = ["job_m", "job_final", "job_gone", "job_again", "job_late"];
    const s = await setUp(ids.slice(0, 4));
    // A job whose parking (its start deadline) ended a moment ago, not yet released by BullMQ.
    await parkAndList(s.queue, s.fair, "job_late", { v: 1, id: "job_late" }, 1);
    const log = JSON.stringify([
      {
        provider: "mock",
        model: "m",
        outcome: "failed",
        error_type: "server",
        status: 500,
        duration_ms: 3,
        started_at: 1,
      },
    ]);
    const record = { status: "queued", tenant: "t", attempt_log: log, cancel_requested: "1" };
    for (const id of ["job_m", "job_again", "job_late", "job_twin"]) await redis.hset(s.keys.job(id), record);
    await redis.hset(s.keys.job("job_final"), { ...record, status: "cancelled" });
    // Started before (handed back and listed again): BullMQ's attempts-started counter is 1.
    await redis.hset(`${s.q}job_again`, "ats", "1");
    await new Promise((r) => setTimeout(r, 5));

    const sub = new Redis(testRedisUrl());
    closing.push({ close: async () => void sub.disconnect() });
    const heard: string[] = [];
    await sub.psubscribe(`${s.keys.jobEventsPrefix}*`);
    // Each job's changes go to its own channel, and carry its id.
    sub.on("pmessage", (_p: string, ch: string, m: string) => {
      if (ch === s.keys.jobEvents(m.split(" ")[0] ?? "")) heard.push(m);
    });

    const pick = await s.fair.pickMany(5, undefined, { ...direct("tok"), runningTtlMs: RUNNING_TTL });
    expect(pick.starts.map((x) => x.jobId)).toEqual(ids);
    const running = new Map(pick.starts.map((x) => [x.jobId, x.job?.running]));
    // Every one was started directly; only the first starts within their deadline were marked.
    expect(pick.starts.every((x) => x.job !== undefined)).toBe(true);
    expect(running.get("job_again")).toBeUndefined();
    expect(running.get("job_late")).toBeUndefined();
    expect(running.get("job_final")).toEqual({
      applied: false,
      exists: true,
      status: "cancelled",
      cancelRequested: true,
      attemptLog: JSON.parse(log),
    });
    expect(running.get("job_gone")).toEqual({
      applied: false,
      exists: false,
      status: "",
      cancelRequested: false,
      attemptLog: [],
    });

    // The runner's own transition, on a twin record, answers and writes the same.
    const store = new JobStore(redis, s.keys);
    const twin = await store.transition("job_twin", "running", { started_at: Date.now() }, RUNNING_TTL);
    expect(running.get("job_m")).toEqual(twin);
    expect(twin).toMatchObject({ applied: true, exists: true, status: "running", cancelRequested: true });
    const mine = await redis.hgetall(s.keys.job("job_m"));
    const theirs = await redis.hgetall(s.keys.job("job_twin"));
    const { started_at: a, ...restMine } = mine;
    const { started_at: b, ...restTheirs } = theirs;
    expect(restMine).toEqual(restTheirs);
    for (const t of [a, b]) expect(Math.abs(Number(t) - Date.now())).toBeLessThan(10_000);
    for (const id of ["job_m", "job_twin"]) {
      const ttl = await redis.pttl(s.keys.job(id));
      expect(ttl).toBeGreaterThan(RUNNING_TTL - 10_000);
      expect(ttl).toBeLessThanOrEqual(RUNNING_TTL);
    }
    // Not marked: unchanged, for the runner to check and mark.
    for (const id of ["job_again", "job_late"]) expect(await redis.hgetall(s.keys.job(id))).toEqual(record);
    expect(await redis.hget(s.keys.job("job_final"), "status")).toBe("cancelled");
    expect(await redis.exists(s.keys.job("job_gone"))).toBe(0);
    await eventually(
      async () => heard,
      (h) => h.length >= 2,
      5_000,
      "both status messages",
    );
    expect(heard).toEqual(["job_m running", "job_twin running"]);
  });

  it("promotes to the wait list instead, for BullMQ's fetch, a paused queue's job or one of a queue the picker does not consume", async () => {
    const paused = await setUp(["job_p"]);
    await paused.queue.pause();
    const p = await paused.fair.pickMany(1, undefined, direct("tok"));
    expect(p.starts).toHaveLength(1);
    expect(p.starts[0]?.job).toBeUndefined();
    expect(await redis.lrange(`${paused.q}wait`, 0, -1)).toEqual(["job_p"]);
    expect(await redis.llen(`${paused.q}active`)).toBe(0);
    expect(await redis.exists(`${paused.q}job_p:lock`)).toBe(0);

    const other = await setUp(["job_o"]);
    const o = await other.fair.pickMany(1, undefined, direct("tok", ["jobs-free"]));
    expect(o.starts[0]?.job).toBeUndefined();
    expect(await redis.lrange(`${other.q}wait`, 0, -1)).toEqual(["job_o"]);
    const job = await other.worker.getNextJob("tok-o", { block: false });
    expect(job?.id).toBe("job_o");
  });
});
