import { Redis } from "ioredis";
import { testRedisUrl, uniquePrefix } from "@switchyard/testing";
import { JobEvents } from "./job-events";
import { streamEvents } from "./job-streams";
import { Keys } from "./keys";

/**
 * JobEvents on a real Redis: a process is subscribed to a job's channel only while something in
 * it waits for that job, hears only those jobs, and leaves no subscription behind.
 */
describe("JobEvents", () => {
  const redis = new Redis(testRedisUrl());
  const sub = new Redis(testRedisUrl());
  const keys = new Keys(uniquePrefix());
  const status = new JobEvents(sub, (jobId) => keys.jobEvents(jobId));
  const streams = streamEvents(sub, keys);
  afterAll(() => {
    redis.disconnect();
    sub.disconnect();
  });

  /** Subscribers Redis counts on each channel. */
  const subscribers = async (...channels: string[]) => {
    const reply: unknown = await redis.pubsub("NUMSUB", ...channels);
    if (!Array.isArray(reply)) throw new Error(`PUBSUB NUMSUB answered ${String(reply)}`);
    return channels.map((_, i) => Number(reply[2 * i + 1]));
  };
  /** Lets messages published before this reply reach the subscriber's handlers. */
  const settle = async () => {
    await sub.ping().catch(() => undefined);
    await redis.ping();
    await new Promise((r) => setImmediate(r));
  };

  it("subscribes to a job's channel while it is listened to, once however many listen", async () => {
    expect(await subscribers(keys.jobEvents("job_1"))).toEqual([0]);
    const heardA: string[] = [];
    const heardB: string[] = [];
    const a = status.listen("job_1", (id, s) => heardA.push(`${id} ${s}`));
    const b = status.listen("job_1", (_id, s) => heardB.push(s));
    await Promise.all([a.ready, b.ready]);
    expect(await subscribers(keys.jobEvents("job_1"))).toEqual([1]);
    expect(status.subscribedJobs).toBe(1);

    await redis.publish(keys.jobEvents("job_1"), "job_1 running");
    await settle();
    expect(heardA).toEqual(["job_1 running"]);
    expect(heardB).toEqual(["running"]);

    // One listener leaves: the other still hears, the subscription stays.
    a.stop();
    a.stop(); // twice is harmless
    await redis.publish(keys.jobEvents("job_1"), "job_1 succeeded");
    await settle();
    expect(heardA).toEqual(["job_1 running"]);
    expect(heardB).toEqual(["running", "succeeded"]);
    expect(await subscribers(keys.jobEvents("job_1"))).toEqual([1]);

    // The last one leaves: nothing stays subscribed.
    b.stop();
    await settle();
    expect(await subscribers(keys.jobEvents("job_1"))).toEqual([0]);
    expect(status.subscribedJobs).toBe(0);
  });

  it("hears only the jobs it listens to, and each JobEvents only its own channels", async () => {
    const heard: string[] = [];
    const heardStream: string[] = [];
    const s = status.listen("job_2", (id, st) => heard.push(`${id} ${st}`));
    const t = streams.listen("job_2", (id, kind) => heardStream.push(`${id} ${kind}`));
    await Promise.all([s.ready, t.ready]);
    // Another job's change has nobody subscribed: Redis delivers it to no one.
    expect(await redis.publish(keys.jobEvents("job_3"), "job_3 running")).toBe(0);
    await redis.publish(keys.jobEvents("job_2"), "job_2 running");
    await redis.publish(keys.jobStreamEvents("job_2"), "job_2 delta");
    // A message whose id is not the channel's job is not passed on as that job's.
    await redis.publish(keys.jobEvents("job_2"), "job_3 failed");
    await settle();
    expect(heard).toEqual(["job_2 running"]);
    expect(heardStream).toEqual(["job_2 delta"]);
    s.stop();
    t.stop();
    await settle();
    expect(await subscribers(keys.jobEvents("job_2"), keys.jobStreamEvents("job_2"))).toEqual([0, 0]);
  });

  it("listens again after a stop (the unsubscribe and the new subscribe stay in order)", async () => {
    const first = status.listen("job_4", () => undefined);
    await first.ready;
    first.stop();
    const heard: string[] = [];
    const again = status.listen("job_4", (_id, s) => heard.push(s));
    await again.ready;
    expect(await subscribers(keys.jobEvents("job_4"))).toEqual([1]);
    await redis.publish(keys.jobEvents("job_4"), "job_4 queued");
    await settle();
    expect(heard).toEqual(["queued"]);
    again.stop();
  });

  it("subscribes again to the jobs still listened to after the connection comes back", async () => {
    const own = new Redis(testRedisUrl());
    // Its id, asked before the connection is in subscriber mode (the kill below names it).
    const clientId = Number(await own.client("ID"));
    const events = new JobEvents(own, (jobId) => keys.jobEvents(jobId));
    const heard: string[] = [];
    const l = events.listen("job_5", (_id, s) => heard.push(s));
    await l.ready;
    // The server drops the connection; ioredis reconnects.
    const back = new Promise<void>((resolve) => own.once("ready", () => resolve()));
    await redis.client("KILL", "ID", clientId);
    await back;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && (await subscribers(keys.jobEvents("job_5")))[0] !== 1)
      await new Promise((r) => setTimeout(r, 20));
    expect(await subscribers(keys.jobEvents("job_5"))).toEqual([1]);
    await redis.publish(keys.jobEvents("job_5"), "job_5 running");
    const until = Date.now() + 10_000;
    while (Date.now() < until && heard.length === 0) await new Promise((r) => setTimeout(r, 20));
    expect(heard).toEqual(["running"]);
    l.stop();
    own.disconnect();
  });
});
