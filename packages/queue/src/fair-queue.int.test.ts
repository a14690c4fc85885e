import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import type { Priority } from "@switchyard/core";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { FairQueue, type FairEntry } from "./fair-queue";
import { Keys } from "./keys";

/**
 * The fair order on a real Redis with an explicit clock: exact start sequences for given
 * weights, costs and priorities; no starvation; no banked credit; jobs parked in BullMQ come
 * out in that order through a worker's getNextJob.
 */
// Every test runs twice: the fair queue loaded as a function library (Redis 7), and as an EVAL
// script (Redis before 7, or FUNCTION not allowed): the same program (lua-library.ts).
describe.each(["function", "script"] as const)("FairQueue (as a %s)", (mode) => {
  const redis = new Redis(testRedisUrl(), { maxRetriesPerRequest: null });
  let keys: Keys;
  let fq: FairQueue;
  let queues: Map<string, Queue>;
  const T0 = 1_800_000_000_000;

  beforeEach(() => {
    keys = new Keys(uniquePrefix());
    fq = new FairQueue(redis, keys, mode);
    queues = new Map(
      ["jobs-paid", "jobs-free"].map((n) => [n, new Queue(n, { connection: redis, prefix: keys.prefix })]),
    );
  });
  afterEach(async () => {
    expect(fq.luaMode).toBe(mode);
    await Promise.all([...queues.values()].map((q) => q.close()));
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
  });
  afterAll(() => redis.disconnect());

  let n = 0;
  /** Parks a BullMQ job (as the API does) and lists it. */
  const list = async (
    tenantId: string,
    opts: Partial<Omit<FairEntry, "jobId" | "tenantId">> & { id?: string } = {},
    now = T0,
  ): Promise<string> => {
    const tier = opts.tier ?? "paid";
    const queue = opts.queue ?? `jobs-${tier}`;
    const jobId = opts.id ?? `job_${tenantId}_${++n}`;
    await queues.get(queue)?.add("chat", { tenantId }, { jobId, delay: 3_600_000 });
    await fq.enqueue(
      {
        jobId,
        tier,
        tenantId,
        queue,
        cost: opts.cost ?? 1,
        priority: opts.priority ?? ("normal" as Priority),
        tierWeight: opts.tierWeight ?? (tier === "paid" ? 4 : 1),
        tenantWeight: opts.tenantWeight ?? 1,
        ...(opts.delayMs !== undefined ? { delayMs: opts.delayMs } : {}),
      },
      now,
    );
    return jobId;
  };
  /** Picks `count` starts at `now`, naming each by its tenant (or job id). */
  const starts = async (count: number, now = T0, by: "tenant" | "job" = "tenant"): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < count; i++) {
      const p = await fq.pick(now);
      if (!p.picked) break;
      out.push(by === "tenant" ? p.tenantId : p.jobId);
    }
    return out;
  };

  it("alternates two equal tenants, whoever listed first, and runs the rest when one is done", async () => {
    for (let i = 0; i < 6; i++) await list("a");
    for (let i = 0; i < 2; i++) await list("b");
    expect(await starts(10)).toEqual(["a", "b", "a", "b", "a", "a", "a", "a"]);
    expect(await fq.pick(T0)).toEqual({ picked: false, nextAt: 0, now: T0 });
  });

  it("gives a tenant of weight 2 two starts for each start of a tenant of weight 1", async () => {
    for (let i = 0; i < 6; i++) await list("a", { tenantWeight: 2 });
    for (let i = 0; i < 6; i++) await list("b", { tenantWeight: 1 });
    // passes: a 0 -> .5 -> 1 -> 1.5 ..., b 0 -> 1 -> 2; ties go to the smaller id.
    expect(await starts(9)).toEqual(["a", "b", "a", "a", "b", "a", "a", "b", "a"]);
  });

  it("splits starts 4:1 between the paid and the free tier, and never starves free work", async () => {
    for (let i = 0; i < 20; i++) await list("p1", { tier: "paid" });
    for (let i = 0; i < 20; i++) await list("f1", { tier: "free" });
    const seq = await starts(15);
    expect(seq).toEqual([
      "f1",
      "p1",
      "p1",
      "p1",
      "p1",
      "f1",
      "p1",
      "p1",
      "p1",
      "p1",
      "f1",
      "p1",
      "p1",
      "p1",
      "p1",
    ]);
  });

  it("shares a tier between its tenants and the tiers by their weights at once", async () => {
    for (const t of ["pa", "pb"]) for (let i = 0; i < 40; i++) await list(t, { tier: "paid" });
    for (const t of ["fa", "fb"]) for (let i = 0; i < 40; i++) await list(t, { tier: "free" });
    const seq = await starts(50);
    const count = (t: string) => seq.filter((s) => s === t).length;
    expect([count("pa"), count("pb"), count("fa"), count("fb")]).toEqual([20, 20, 5, 5]);
  });

  it("charges by cost: a tenant of 8,000-token jobs starts one for every 80 of a 100-token tenant", async () => {
    for (let i = 0; i < 3; i++) await list("big", { cost: 8_000 });
    for (let i = 0; i < 200; i++) await list("small", { cost: 100 });
    const seq = await starts(163);
    expect(seq.filter((s) => s === "big")).toHaveLength(3);
    const bigAt = seq.flatMap((s, i) => (s === "big" ? [i] : []));
    expect(bigAt).toEqual([0, 81, 162]);
  });

  it("does not bank credit: a tenant back from idle starts at the current virtual time", async () => {
    for (let i = 0; i < 10; i++) await list("a");
    expect(await starts(6)).toEqual(["a", "a", "a", "a", "a", "a"]);
    for (let i = 0; i < 4; i++) await list("b");
    // b was idle while a ran six jobs: it gets its turn at once, then an equal share, no catch-up run.
    expect(await starts(8)).toEqual(["b", "a", "b", "a", "b", "a", "b", "a"]);
  });

  it("orders a tenant's own jobs by priority then age, without taking another tenant's turns", async () => {
    const a1 = await list("a", { priority: "normal" });
    const a2 = await list("a", { priority: "low" });
    const b1 = await list("b");
    const a3 = await list("a", { priority: "high" });
    const b2 = await list("b");
    const a4 = await list("a", { priority: "normal" });
    expect(await starts(6, T0, "job")).toEqual([a3, b1, a1, b2, a4, a2]);
  });

  it("lists a handed-back job only when it is due, and says when that is", async () => {
    const later = await list("a", { delayMs: 1_000 });
    expect(await fq.pick(T0)).toEqual({ picked: false, nextAt: T0 + 1_000, now: T0 });
    expect(await fq.pick(T0 + 999)).toMatchObject({ picked: false });
    expect(await fq.pick(T0 + 1_000)).toMatchObject({ picked: true, jobId: later, tenantId: "a" });
  });

  it("skips jobs removed from BullMQ meanwhile (cancelled) without charging their tenant", async () => {
    const gone = await list("a");
    const kept = await list("a");
    await list("b");
    await queues.get("jobs-paid")?.remove(gone);
    expect(await starts(3, T0, "job")).toEqual([kept, expect.stringMatching(/^job_b_/)]);
  });

  it("starts several jobs in one pick in exactly the order as many single picks would", async () => {
    // The same listings twice (two prefixes): tiers 4:1, weights 2:1, a cost, a priority and a
    // job gone from BullMQ meanwhile; one side picks one at a time, the other 5 per call.
    const listAll = async (): Promise<string> => {
      for (let i = 0; i < 6; i++) await list("a", { tenantWeight: 2 });
      for (let i = 0; i < 4; i++) await list("b", { cost: i === 0 ? 3 : 1 });
      await list("b", { priority: "high" });
      const gone = await list("c");
      for (let i = 0; i < 3; i++) await list("f", { tier: "free" });
      await queues.get("jobs-paid")?.remove(gone);
      return gone;
    };
    await listAll();
    const one = await starts(20, T0, "job");
    const rename = (ids: string[]) => ids.map((id) => id.replace(/_\d+$/, ""));
    keys = new Keys(uniquePrefix());
    fq = new FairQueue(redis, keys, mode);
    for (const q of queues.values()) await q.close();
    queues = new Map(
      ["jobs-paid", "jobs-free"].map((q) => [q, new Queue(q, { connection: redis, prefix: keys.prefix })]),
    );
    const gone = await listAll();
    const batched: string[] = [];
    const sizes: number[] = [];
    for (;;) {
      const p = await fq.pickMany(5, T0);
      if (p.starts.length === 0) {
        expect(p).toEqual({ starts: [], more: false, nextAt: 0, now: T0 });
        break;
      }
      sizes.push(p.starts.length);
      expect(p.more).toBe(batched.length + p.starts.length < one.length);
      batched.push(...p.starts.map((s) => s.jobId));
      for (const s of p.starts) expect(await queues.get(s.queue)?.getJobState(s.jobId)).toBe("waiting");
    }
    expect(one).toHaveLength(14);
    expect(rename(batched)).toEqual(rename(one));
    expect(batched).not.toContain(gone);
    expect(sizes).toEqual([5, 5, 4]);
  });

  it("moves the picked job into BullMQ's wait list, where a worker's getNextJob takes it", async () => {
    const free = await list("f1", { tier: "free" });
    const paid = await list("p1", { tier: "paid" });
    const worker = new Worker("jobs-paid", null, { connection: redis, prefix: keys.prefix, autorun: false });
    try {
      const first = await fq.pick(T0);
      expect(first).toMatchObject({ picked: true, queue: "jobs-free", jobId: free, tier: "free" });
      const second = await fq.pick(T0);
      expect(second).toMatchObject({ picked: true, queue: "jobs-paid", jobId: paid });
      expect(await queues.get("jobs-paid")?.getJobState(paid)).toBe("waiting");
      const job = await worker.getNextJob("tok", { block: false });
      expect(job?.id).toBe(paid);
      expect(await queues.get("jobs-free")?.getJobState(free)).toBe("waiting");
    } finally {
      await worker.close();
    }
  });

  describe("waiting rooms (a resource with no capacity)", () => {
    const R = "openai/gpt-4o-mini";
    /** A job that started, found no capacity on R and was parked: it waits in R's room with a ticket. */
    const waitFor = async (tenantId: string, ticketInMs: number, now = T0): Promise<string> => {
      const jobId = `job_${tenantId}_${++n}`;
      await queues.get("jobs-paid")?.add("chat", { tenantId }, { jobId, delay: 3_600_000 });
      const at = await fq.wait(
        {
          jobId,
          tier: "paid",
          tenantId,
          queue: "jobs-paid",
          cost: 1,
          priority: "normal",
          tierWeight: 4,
          tenantWeight: 1,
        },
        R,
        ticketInMs,
        now,
      );
      expect(at).toBe(now + ticketInMs);
      return jobId;
    };

    it("gives each ticket to the room's fairest job, not to the one the appointment was for", async () => {
      const heavy: string[] = [];
      for (let i = 1; i <= 5; i++) heavy.push(await waitFor("heavy", i * 100));
      // The light tenant's appointment is the sixth, but it is second in the fair order.
      const light = await waitFor("light", 600);
      expect(await fq.pick(T0 + 50)).toEqual({ picked: false, nextAt: T0 + 100, now: T0 + 50 });
      expect(await fq.pick(T0 + 100)).toMatchObject({ picked: true, jobId: heavy[0] });
      expect(await fq.pick(T0 + 150)).toMatchObject({ picked: false, nextAt: T0 + 200 });
      expect(await fq.pick(T0 + 200)).toMatchObject({ picked: true, jobId: light });
      const rest: string[] = [];
      for (const t of [300, 400, 500, 600]) {
        const p = await fq.pick(T0 + t);
        if (p.picked) rest.push(p.jobId);
      }
      expect(rest).toEqual(heavy.slice(1, 5));
      expect(await fq.pick(T0 + 700)).toEqual({ picked: false, nextAt: 0, now: T0 + 700 });
    });

    it("starts a job freed by a ticket before any other, and charges its tenant's start order nothing", async () => {
      const waiting = await waitFor("a", 100);
      for (let i = 0; i < 3; i++) await list("b");
      expect(await fq.pick(T0 + 100)).toMatchObject({ picked: true, jobId: waiting, tenantId: "a" });
      // a's pass in the start order is untouched: its next new job is next.
      await list("a", {}, T0 + 100);
      expect(await starts(3, T0 + 100)).toEqual(["a", "b", "b"]);
    });

    it("starts the jobs freed by tickets first in a pick of several, then the start order", async () => {
      const first = await waitFor("a", 100);
      const second = await waitFor("c", 100);
      const later = await waitFor("d", 900);
      for (let i = 0; i < 3; i++) await list("b");
      const p = await fq.pickMany(4, T0 + 100);
      expect(p.starts.map((s) => s.jobId)).toEqual([
        first,
        second,
        expect.stringMatching(/^job_b_/),
        expect.stringMatching(/^job_b_/),
      ]);
      expect(p.more).toBe(true);
      expect(p.starts.map((s) => s.jobId)).not.toContain(later);
    });

    it("keeps every ticket when a job waits again before its own earlier ticket is due", async () => {
      // a's appointment is later than b's, but a is first in the room's fair order: b's ticket frees a.
      const a = await waitFor("a", 500);
      const b = await waitFor("b", 100);
      expect(await fq.pick(T0 + 100)).toMatchObject({ picked: true, jobId: a });
      // a finds no capacity again and waits with a new appointment, its first ticket still pending.
      await queues.get("jobs-paid")?.remove(a);
      await queues.get("jobs-paid")?.add("chat", { tenantId: "a" }, { jobId: a, delay: 3_600_000 });
      const entry = {
        jobId: a,
        tier: "paid",
        tenantId: "a",
        queue: "jobs-paid",
        cost: 1,
        priority: "normal" as const,
        tierWeight: 4,
        tenantWeight: 1,
      };
      await fq.wait(entry, R, 1000, T0 + 100);
      // Two jobs in the room, two tickets: one frees b, the other a; nobody is left behind.
      expect(await fq.pick(T0 + 500)).toMatchObject({ picked: true, jobId: b });
      expect(await fq.pick(T0 + 1100)).toMatchObject({ picked: true, jobId: a });
      expect(await fq.pick(T0 + 2000)).toEqual({ picked: false, nextAt: 0, now: T0 + 2000 });
    });

    it("frees every job of a room at once when its limits change (wake), in the room's fair order", async () => {
      const jobs: string[] = [];
      for (let i = 1; i <= 3; i++) jobs.push(await waitFor("heavy", i * 60_000));
      const light = await waitFor("light", 240_000);
      // Appointments a minute apart; after the wake all four are due now.
      expect(await fq.wake(R, 10_000, T0 + 10)).toBe(4);
      const picked: string[] = [];
      for (let i = 0; i < 4; i++) {
        const p = await fq.pick(T0 + 10);
        if (p.picked) picked.push(p.jobId);
      }
      expect(picked).toEqual([jobs[0], light, jobs[1], jobs[2]]);
      // The old tickets come due later on an empty room: they free nothing.
      expect(await fq.pick(T0 + 300_000)).toEqual({ picked: false, nextAt: 0, now: T0 + 300_000 });
      // Another room, or an empty one, gets no tickets; the bound caps how many.
      expect(await fq.wake("anthropic/claude", 10_000, T0)).toBe(0);
      for (let i = 0; i < 3; i++) await waitFor("a", 60_000, T0 + 400_000);
      expect(await fq.wake(R, 2, T0 + 400_000)).toBe(2);
    });

    it("passes over a room's job that BullMQ released meanwhile, and gives the ticket to the next", async () => {
      const gone = await waitFor("a", 100);
      const next = await waitFor("b", 200);
      await queues.get("jobs-paid")?.remove(gone);
      expect(await fq.pick(T0 + 100)).toMatchObject({ picked: true, jobId: next });
      expect(await fq.pick(T0 + 200)).toMatchObject({ picked: false });
    });
  });
});
