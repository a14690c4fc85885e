import type { Redis } from "ioredis";

/**
 * What a queue run left of BullMQ's queue "q" under `prefix`, to compare two runs key by key:
 * the job hashes (the run's own times masked), the completed set, the keys, the events stream's
 * events in order and the meta hash.
 */
export async function bullSnapshot(redis: Redis, prefix: string, ids: readonly string[]) {
  const q = `${prefix}:q:`;
  const jobs: Record<string, Record<string, string>> = {};
  for (const id of ids) {
    const h = await redis.hgetall(q + id);
    // Times are the run's own; everything else must be the same.
    for (const f of ["timestamp", "processedOn", "finishedOn"]) if (h[f]) h[f] = "t";
    jobs[id] = h;
  }
  const events = (await redis.xrange(`${q}events`, "-", "+")).map(([, f]) =>
    f.filter((_, i) => i % 2 === 0 || f[i - 1] !== "timestamp"),
  );
  return {
    jobs,
    // By finishedOn: jobs finished in the same millisecond tie, so the order is the run's own.
    completed: (await redis.zrange(`${q}completed`, 0, -1)).sort(),
    // Not the marker: whether a wake-up is left in it depends on when the worker's blocking
    // wait last ran before it closed.
    keys: (await redis.keys(`${q}*`))
      .map((k) => k.slice(q.length))
      .filter((k) => k !== "marker")
      .sort(),
    events,
    meta: await redis.hgetall(`${q}meta`),
  };
}
