import { Redis } from "ioredis";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { JobEvents } from "./job-events";
import { admitAlways, JobStore } from "./job-store";
import { Keys } from "./keys";

/** Job records on a real Redis: transitions, final states that never change, events, TTLs. */
describe("JobStore", () => {
  const redis = new Redis(testRedisUrl());
  const sub = new Redis(testRedisUrl());
  const keys = new Keys(uniquePrefix());
  const store = new JobStore(redis, keys);
  const events = new JobEvents(sub, (jobId) => keys.jobEvents(jobId));
  afterAll(async () => {
    const found = await redis.keys(`${keys.prefix}*`);
    if (found.length) await redis.del(...found);
    redis.disconnect();
    sub.disconnect();
  });
  const open = admitAlways("t1");
  const created = { kind: "created", estimatedWaitMs: 0, degraded: false, listed: false };
  const create = (id: string) =>
    store.create(
      {
        id,
        tenantId: "t1",
        queue: "jobs-paid",
        model: "m",
        priority: "high",
        createdAt: 1_700_000_000_000,
        traceId: "tr",
        metadata: { a: 1 },
      },
      60_000,
      undefined,
      open,
    );

  it("creates a queued record with a TTL and reads it back", async () => {
    await create("job_a");
    const rec = await store.get("job_a");
    expect(rec).toMatchObject({ tenantId: "t1", queue: "jobs-paid", cancelRequested: false });
    expect(rec?.view).toEqual({
      id: "job_a",
      object: "job",
      status: "queued",
      model: "m",
      priority: "high",
      attempts: 0,
      created_at: 1_700_000_000,
      metadata: { a: 1 },
    });
    const ttl = await redis.pttl(keys.job("job_a"));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it("moves through running to succeeded, publishing each change, and then never changes again", async () => {
    await create("job_b");
    const heard: string[] = [];
    const { stop, ready } = events.listen("job_b", (_id, s) => heard.push(s));
    await ready;
    expect(
      await store.transition("job_b", "running", { started_at: 1_700_000_001_000, attempts: 1 }),
    ).toMatchObject({ applied: true, status: "running" });
    const done = await store.transition(
      "job_b",
      "succeeded",
      {
        finished_at: 1_700_000_002_000,
        result: { output_text: "x", finish_reason: "stop", provider: "p", model: "m" },
        usage: { input_tokens: 1, output_tokens: 2 },
      },
      5_000,
    );
    expect(done.applied).toBe(true);
    const late = await store.transition("job_b", "failed", { error: { type: "x", message: "late" } });
    expect(late).toEqual({
      applied: false,
      exists: true,
      status: "succeeded",
      cancelRequested: false,
      attemptLog: [],
    });
    const rec = await store.get("job_b");
    expect(rec?.view).toMatchObject({
      status: "succeeded",
      started_at: 1_700_000_001,
      finished_at: 1_700_000_002,
      usage: { input_tokens: 1, output_tokens: 2 },
    });
    expect(rec?.view.error).toBeUndefined();
    expect(await redis.pttl(keys.job("job_b"))).toBeLessThanOrEqual(5_000);
    await redis.ping(); // let the subscriber catch up: pub/sub delivery precedes this reply on the server
    await new Promise((r) => setImmediate(r));
    stop();
    expect(heard).toEqual(["running", "succeeded"]);
  });

  it("keeps the attempt history: hands it to the next run and shows it under error, then result", async () => {
    await create("job_h");
    const failed = {
      provider: "openai",
      model: "gpt-4o",
      outcome: "failed" as const,
      error_type: "server",
      status: 503,
      duration_ms: 12,
      started_at: 1_700_000_001.5,
    };
    await store.transition("job_h", "running", {});
    await store.transition("job_h", "queued", {
      attempts: 1,
      error: { type: "server", message: "down", provider: "openai" },
      attempt_log: [failed],
    });
    expect((await store.get("job_h"))?.view.error?.attempts).toEqual([failed]);
    const again = await store.transition("job_h", "running", {});
    expect(again.attemptLog).toEqual([failed]);
    const ok = { ...failed, provider: "anthropic", model: "claude", outcome: "succeeded" as const };
    delete (ok as Partial<typeof ok>).error_type;
    delete (ok as Partial<typeof ok>).status;
    await store.transition("job_h", "succeeded", {
      result: { output_text: "x", finish_reason: "stop", provider: "anthropic", model: "claude" },
      error: null,
      attempt_log: [failed, ok],
    });
    const view = (await store.get("job_h"))?.view;
    expect(view?.result?.attempts).toEqual([failed, ok]);
    expect(view?.error).toBeUndefined();
  });

  it("records a cancel request and reports it on the next transition", async () => {
    await create("job_c");
    expect(await store.requestCancel("job_c")).toEqual({ exists: true, applied: true, status: "queued" });
    expect((await store.get("job_c"))?.view.cancel_requested).toBe(true);
    expect(await store.transition("job_c", "running", {})).toMatchObject({
      applied: true,
      cancelRequested: true,
    });
    await store.transition("job_c", "cancelled", {});
    expect(await store.requestCancel("job_c")).toEqual({ exists: true, applied: false, status: "cancelled" });
  });

  it("does not resurrect missing records", async () => {
    expect(await store.transition("job_missing", "running", {})).toMatchObject({
      exists: false,
      applied: false,
    });
    expect(await redis.exists(keys.job("job_missing"))).toBe(0);
    expect(await store.get("job_missing")).toBeUndefined();
  });

  it("claims an Idempotency-Key in the same step as the record, or writes nothing", async () => {
    const claim = {
      key: keys.idempotency("t1", "abc"),
      value: '{"fp":"f","job_id":"job_i1"}',
      ttlMs: 60_000,
    };
    const rec = (id: string) => ({
      id,
      tenantId: "t1",
      queue: "jobs-paid",
      model: "m",
      priority: "normal" as const,
      createdAt: 1_700_000_000_000,
      traceId: "tr",
    });
    expect(await store.create(rec("job_i1"), 60_000, claim, open)).toEqual(created);
    expect(await redis.get(claim.key)).toBe(claim.value);
    expect(await redis.pttl(claim.key)).toBeGreaterThan(0);
    const second = await store.create(
      rec("job_i2"),
      60_000,
      { ...claim, value: '{"fp":"f","job_id":"job_i2"}' },
      open,
    );
    expect(second).toEqual({ kind: "claimed", claimedBy: claim.value });
    expect(await redis.exists(keys.job("job_i2"))).toBe(0);
    // A claim is released only while it still holds what the caller saw.
    expect(await store.releaseClaim(claim.key, "something else")).toBe(false);
    expect(await store.releaseClaim(claim.key, claim.value)).toBe(true);
    expect(await redis.exists(claim.key)).toBe(0);
  });

  it("reports a record field we never write instead of misreading it", async () => {
    await create("job_corrupt");
    await redis.hset(keys.job("job_corrupt"), "status", "exploded");
    await expect(store.get("job_corrupt")).rejects.toThrow(/invalid 'status'/);
    await redis.hset(keys.job("job_corrupt"), "status", "queued", "priority", "urgent");
    await expect(store.get("job_corrupt")).rejects.toThrow(/invalid 'priority'/);
    await redis.hset(keys.job("job_corrupt"), "priority", "low", "attempts", "many");
    await expect(store.get("job_corrupt")).rejects.toThrow(/invalid 'attempts'/);
  });
});
