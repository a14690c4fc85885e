import { readFileSync } from "node:fs";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { eventually, testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { LISTED_MARKER } from "@switchyard/queue";
import { ManagedWorker } from "./managed-worker";

/**
 * ManagedWorker relies on BullMQ internals (a protected method and a private member) that a
 * minor release may change. BullMQ is pinned exactly; this test fails when a version bump
 * breaks the contract, before any job is lost to it.
 */
const PINNED_BULLMQ = "6.7.0";

/** Waits and fetches as the blocker does, until a fetch takes a job (20 waits at most). */
async function fetchWhenReady(worker: ManagedWorker, token: string) {
  for (let i = 0; i < 20; i++)
    if ((await worker.waitForMarker()) === "ready") {
      const job = await worker.getNextJob(token, { block: false });
      if (job) return job;
    }
  return undefined;
}

describe("ManagedWorker's contract with BullMQ internals", () => {
  const connection = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  const prefix = uniquePrefix();
  afterAll(async () => {
    const keys = await connection.keys(`${prefix}*`);
    if (keys.length) await connection.del(...keys);
    connection.disconnect();
  });

  /**
   * Runs `body` with a queue and a started ManagedWorker on it whose jobs do nothing (1 s drain
   * delay), and closes both after it.
   */
  const withNoopWorker = async (
    name: string,
    body: (queue: Queue, worker: ManagedWorker) => Promise<void>,
  ): Promise<void> => {
    const queue = new Queue(name, { connection, prefix });
    const worker = new ManagedWorker(name, async () => "done", {
      connection,
      prefix,
      lockDuration: 6_000,
      stalledInterval: 60_000,
      drainDelay: 1,
    });
    try {
      await worker.startManaged();
      await body(queue, worker);
    } finally {
      await worker.close();
      await queue.close();
    }
  };

  it("runs on the exact BullMQ version it was written for", () => {
    const pkgPath = require.resolve("bullmq/package.json");
    const version: unknown = JSON.parse(readFileSync(pkgPath, "utf8")).version;
    expect(version).toBe(PINNED_BULLMQ);
    const own: unknown = JSON.parse(readFileSync(`${__dirname}/../package.json`, "utf8"));
    expect(own).toMatchObject({ dependencies: { bullmq: PINNED_BULLMQ } });
  });

  it("finds the protected stalled-check starter and the lock manager where it calls them", () => {
    const proto = Worker.prototype as unknown as Record<string, unknown>;
    expect(typeof proto.startStalledCheckTimer).toBe("function");
    // getNextJob without its telemetry span.
    expect(typeof proto._getNextJob).toBe("function");
    // The blocking wait on the marker, without the fetch (ManagedWorker.waitForMarker).
    expect(typeof proto.waitForJob).toBe("function");
  });

  it("starts without BullMQ's main loop, fetches and completes a job, renews its lock", async () => {
    const queue = new Queue("contract", { connection, prefix });
    const seen: string[] = [];
    const worker = new ManagedWorker(
      "contract",
      async (job) => {
        seen.push(String(job.id));
        // The lock manager must renew the lock while the job runs: wait until its TTL goes back up.
        const lockKey = `${prefix}:contract:${String(job.id)}:lock`;
        // Between renewals the TTL only falls; a renewal makes it jump back up (by seconds).
        let last = await connection.pttl(lockKey);
        expect(last).toBeGreaterThan(0);
        await eventually(
          () => connection.pttl(lockKey),
          (ttl) => {
            const renewed = ttl > last + 500;
            if (ttl > 0 && !renewed) last = Math.min(last, ttl);
            return renewed;
          },
          15_000,
          "the lock to be renewed",
        );
        return "done";
      },
      // A lock renewed every 3 s, with 3 s to spare even on a loaded machine; no stalled check
      // in the test's time (it would fail a job whose lock looked lost).
      { connection, prefix, lockDuration: 6_000, stalledInterval: 60_000 },
    );
    try {
      await worker.startManaged();
      const lockManager = (worker as unknown as { lockManager?: { start?: unknown } }).lockManager;
      expect(typeof lockManager?.start).toBe("function");
      expect(worker.isRunning()).toBe(false); // BullMQ's own loop never started
      await queue.add("chat", { v: 1 }, { jobId: "j1" });
      const job = await worker.getNextJob("token-1", { block: false });
      expect(job?.id).toBe("j1");
      if (!job) throw new Error("no job fetched");
      await worker.processJob(job, "token-1", () => false);
      expect(seen).toEqual(["j1"]);
      expect(await queue.getJobState("j1")).toBe("completed");
    } finally {
      await worker.close();
      await queue.close();
    }
  });
  it("waits on the queue's marker without fetching; a fetch then takes the job, a delayed one at its time", async () => {
    await withNoopWorker("marker", async (queue, worker) => {
      await queue.add("chat", { v: 1 }, { jobId: "m1" });
      expect(await worker.waitForMarker()).toBe("ready");
      expect(await queue.getJobState("m1")).toBe("waiting"); // the wait fetched nothing
      const first = await worker.getNextJob("token-m1", { block: false });
      expect(first?.id).toBe("m1");
      if (first) await worker.processJob(first, "token-m1", () => false);

      const added = Date.now();
      await queue.add("chat", { v: 2 }, { jobId: "m2", delay: 300 });
      // A marker may say "look" with nothing to take (BullMQ adds one after every fetch) or "not
      // before" a delayed job's time; waiting and fetching as the blocker does ends with the job.
      const second = await fetchWhenReady(worker, "token-m2");
      expect(second?.id).toBe("m2");
      expect(Date.now() - added).toBeGreaterThanOrEqual(300);
      if (second) await worker.processJob(second, "token-m2", () => false);
      expect(await queue.getJobState("m2")).toBe("completed");

      // A listing's wake-up says "listed" (a picker picks; nothing to fetch) and keeps the due
      // time of the delayed job BullMQ is waiting for: that job is still fetched at its time.
      const marker = `${prefix}:marker:marker`;
      // (BullMQ's "look now" after the fetch above is dropped: the waits below start clean.)
      await connection.del(marker);
      const third = Date.now();
      await queue.add("chat", { v: 3 }, { jobId: "m3", delay: 400 });
      // The delay marker first: "not before" its time.
      expect(await worker.waitForMarker()).toBe("none");
      await connection.zadd(marker, LISTED_MARKER.score, LISTED_MARKER.member);
      expect(await worker.waitForMarker()).toBe("listed");
      expect(await queue.getJobState("m3")).toBe("delayed");
      const late = await fetchWhenReady(worker, "token-m3");
      expect(late?.id).toBe("m3");
      expect(Date.now() - third).toBeGreaterThanOrEqual(400);
      if (late) await worker.processJob(late, "token-m3", () => false);
    });
  });

  it("tells a fetch that would find a job from BullMQ's look-now mark after a fetch", async () => {
    await withNoopWorker("work", async (queue, worker) => {
      expect(await worker.hasWork(connection)).toBe(false);
      await queue.add("chat", { v: 1 }, { jobId: "w1" });
      expect(await worker.hasWork(connection)).toBe(true);
      const job = await worker.getNextJob("token-w1", { block: false });
      expect(job?.id).toBe("w1");
      // The fetch left BullMQ's "look now" mark: the wait says ready, the check says nothing is there.
      expect(await worker.waitForMarker()).toBe("ready");
      expect(await worker.hasWork(connection)).toBe(false);
      if (job) await worker.processJob(job, "token-w1", () => false);

      await queue.add("chat", { v: 2 }, { jobId: "w2", priority: 3 });
      expect(await worker.hasWork(connection)).toBe(true); // prioritized
      const second = await worker.getNextJob("token-w2", { block: false });
      if (second) await worker.processJob(second, "token-w2", () => false);

      // A delayed job counts once its time has come (a fetch then promotes it), not before.
      const at = Date.now();
      await queue.add("chat", { v: 3 }, { jobId: "w3", delay: 60_000 });
      expect(await worker.hasWork(connection, at)).toBe(false);
      expect(await worker.hasWork(connection, at + 60_001)).toBe(true);
    });
  });
});
